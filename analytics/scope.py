"""The scope every metric is computed over: a period, teams, services and an environment."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from difflib import get_close_matches
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_

from warehouse.schema import DeploymentChange, Environment, Service, Team


@dataclass(frozen=True)
class Scope:
    """Period [since, until), optional team and service names, an environment (None: every
    environment of tier production) and the time zone days and weeks are counted in."""

    since: datetime
    until: datetime
    teams: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    environment: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("scope since/until must be timezone-aware")
        if self.until <= self.since:
            raise ValueError(
                f"empty period: until {self.until.isoformat()} is not after since {self.since.isoformat()}"
            )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "teams": list(self.teams),
            "services": list(self.services),
            "environment": self.environment or "production (tier)",
            "timezone": self.timezone,
        }

    def owned(self, query: Any, service_id: Any = None, on: Any = None) -> Any:
        """`query` joined to its service (by `service_id`, or the join condition `on`) and team,
        filtered to the scope's services and teams."""
        condition = on if on is not None else Service.id == service_id
        query = query.join(Service, condition).outerjoin(Team, Team.id == Service.team_id)
        if self.services:
            query = query.where(Service.name.in_(self.services))
        if self.teams:
            query = query.where(Team.name.in_(self.teams))
        return query

    def environment_filter(self, environment_id: Any, is_production: Any = None) -> Any:
        """The environment condition: the named canonical environment, or the production tier."""
        if self.environment is not None:
            return and_(Environment.id == environment_id, Environment.name == self.environment)
        if is_production is not None:
            return is_production
        return and_(Environment.id == environment_id, Environment.tier == "production")

    def first_change(self) -> Any:
        """The condition that a deployment_change row is where its commit first reached the
        scope's environment: for the production tier, its first deployment to any production
        environment (a change shipped to two regions counts once); for a named environment, its
        first deployment there."""
        if self.environment is None:
            return DeploymentChange.first_in_production
        return DeploymentChange.first_in_environment

    def period(self, column: Any) -> Any:
        return and_(column >= self.since, column < self.until)


class UnknownName(ValueError):
    """A scope names a team, service or environment the warehouse does not know; the message
    names it and the closest known ones."""


SHOWN_KNOWN = 20  # names listed after "known:" before "..."


def unknown_names(kind: str, asked: Iterable[str], known: Sequence[str]) -> str | None:
    """The message for the names of `asked` not in `known` (None when all are known): each
    unknown name with its closest known ones (difflib's ratio, the usual "did you mean"), then
    the known names, so a typo and a wrong guess both say what to write instead."""
    missing = sorted(set(asked) - set(known))
    if not missing:
        return None
    hints = []
    for name in missing:
        close = get_close_matches(name, known, n=3, cutoff=0.6)
        if close:
            hints.append(f"closest to {name}: {', '.join(close)}")
    shown = ", ".join(known[:SHOWN_KNOWN]) + (" ..." if len(known) > SHOWN_KNOWN else "")
    hints.append(f"known: {shown or 'none (run cdmetrics sync first)'}")
    return f"no {kind} named {', '.join(missing)} in the warehouse; {'; '.join(hints)}"


__all__ = ["SHOWN_KNOWN", "Scope", "UnknownName", "unknown_names"]
