"""The scope every metric is computed over: a period, teams, services and an environment; and the
one parser of periods every surface uses (CLI, HTTP API, dashboard, weekly report, notebooks).

The default period (DESIGN.md section 9) is the last `DEFAULT_WEEKS` complete ISO weeks plus the
current partial week, in `[sync] timezone`: from Monday 00:00 of the week twelve weeks before the
current one to tomorrow 00:00 (the end of today). A week of a weekly series is *partial* when the
period or the clock (`now`) cuts it (`Scope.partial`); surfaces mark it, never draw it as a drop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from difflib import get_close_matches
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, select

from analytics import stats
from warehouse.schema import DeploymentChange, Environment, Service, Team

DEFAULT_WEEKS = 12  # complete ISO weeks before the current, partial one
# periods lie within these bounds: wider than any delivery history, narrow enough that date
# arithmetic cannot overflow
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class PeriodError(ValueError):
    """A period that cannot be used (not a date, out of bounds, reversed or empty); the message
    names the value(s) and what to do. The CLI exits 2 with it, the HTTP API answers 422."""


def parse_moment(value: str, name: str, zone: ZoneInfo) -> datetime:
    """A date or ISO timestamp (naive: in `zone`, a date meaning its 00:00); PeriodError naming
    `name` when it is not one or lies outside [EARLIEST, LATEST]."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PeriodError(
            f"{name}: {value!r} is not a date or ISO timestamp; write it like 2026-11-30"
        ) from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    try:
        inside = EARLIEST <= parsed <= LATEST
    except OverflowError:  # a zone offset that moves the moment out of datetime's range
        inside = False
    if not inside:
        raise PeriodError(f"{name}: {value} is outside {EARLIEST.date()} .. {LATEST.date()} (UTC)")
    return parsed


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def default_until(timezone: str, now: datetime | None = None) -> datetime:
    """The default end of a period: tomorrow 00:00 in `timezone` (today is included)."""
    zone = ZoneInfo(timezone)
    today = (now or datetime.now(UTC)).astimezone(zone).date()
    return _midnight(today + timedelta(days=1), zone)


def default_since(until: datetime, timezone: str) -> datetime:
    """The default start of a period ending at `until`: Monday 00:00 of the ISO week
    `DEFAULT_WEEKS` weeks before the week holding `until`'s last moment."""
    zone = ZoneInfo(timezone)
    last = stats.local_day(until - timedelta(microseconds=1), zone)
    monday = last - timedelta(days=last.weekday(), weeks=DEFAULT_WEEKS)
    return _midnight(monday, zone)


def parse_period(
    since: str | None, until: str | None, timezone: str = "UTC", now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[since, until) from dates or ISO timestamps (naive ones in `timezone`; `until` exclusive).
    Missing ends take the default period's: until tomorrow 00:00, since the Monday twelve whole
    weeks before until's week. PeriodError when a value is not a moment, or the period is
    reversed or empty (the message names both dates)."""
    zone = ZoneInfo(timezone)
    end = parse_moment(until, "until", zone) if until else default_until(timezone, now)
    start = parse_moment(since, "since", zone) if since else default_since(end, timezone)
    if start > end:
        raise PeriodError(
            f"reversed period: since {start.isoformat()} is after until {end.isoformat()}; "
            "swap them (until is the exclusive end)"
        )
    if start == end:
        raise PeriodError(
            f"empty period: since {start.isoformat()} equals until {end.isoformat()}; "
            "until is exclusive, give a later until"
        )
    return start, end


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
            raise PeriodError(
                f"empty period: until {self.until.isoformat()} is not after since {self.since.isoformat()}"
            )

    @classmethod
    def parse(
        cls,
        since: str | None = None,
        until: str | None = None,
        teams: tuple[str, ...] | list[str] = (),
        services: tuple[str, ...] | list[str] = (),
        environment: str | None = None,
        timezone: str = "UTC",
        now: datetime | None = None,
    ) -> Scope:
        """The scope of a surface's filters: the period from `parse_period` (the default period
        for what is not given), the names as tuples. PeriodError for a bad period."""
        start, end = parse_period(since, until, timezone, now)
        return cls(start, end, tuple(teams), tuple(services), environment, timezone)

    @classmethod
    def default(
        cls,
        timezone: str = "UTC",
        teams: tuple[str, ...] = (),
        services: tuple[str, ...] = (),
        environment: str | None = None,
        now: datetime | None = None,
    ) -> Scope:
        """The default period (last 12 complete ISO weeks plus the current partial week)."""
        return cls.parse(None, None, teams, services, environment, timezone, now)

    def partial(self, week: str, now: datetime | None = None) -> bool:
        """Whether the ISO week `week` (`2026-W47`, local) or month (`2026-11`) is cut by the
        period or by `now` (default: the clock): a partial bucket's counts are not comparable
        with whole ones'."""
        start, end = stats.bucket_bounds(week, self.zone)  # local midnights, across DST
        clock = now or datetime.now(UTC)
        return start < self.since or end > self.until or end > clock

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400

    def slice_ends(self) -> list[datetime]:
        """The ends of the scope's time slices, ascending: each local ISO week's and month's end
        cut by the period, and the period's end (`analytics.slices`: the moments at which a slice
        counts what is still waiting)."""
        zone = self.zone
        keys = [
            *stats.weeks_between(self.since, self.until, zone),
            *stats.months_between(self.since, self.until, zone),
        ]
        return sorted({min(stats.bucket_end(k, zone), self.until) for k in keys} | {self.until})

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


__all__ = [
    "DEFAULT_WEEKS",
    "EARLIEST",
    "LATEST",
    "SHOWN_KNOWN",
    "PeriodError",
    "Scope",
    "UnknownName",
    "default_since",
    "default_until",
    "parse_moment",
    "parse_period",
    "unknown_names",
]


# -- the names a command asks for (the gate, the CLI, reports and dashboard filters) --------


def filter_options(conn: Connection) -> dict[str, list[Any]]:
    """Team names, service names and canonical environment names (promotion path order)."""
    return {
        "teams": list(conn.execute(select(Team.name).order_by(Team.name)).scalars()),
        "services": list(conn.execute(select(Service.name).order_by(Service.name)).scalars()),
        "environments": list(
            conn.execute(
                select(Environment.name).order_by(
                    Environment.position.is_(None), Environment.position, Environment.name
                )
            ).scalars()
        ),
    }


def check_names(
    conn: Connection,
    teams: Sequence[str] = (),
    services: Sequence[str] = (),
    environments: Sequence[str] = (),
    promotion_path: Sequence[str] = (),
) -> None:
    """Raise UnknownName naming every team, service or environment the warehouse does not know,
    with the closest known ones (an environment of `promotion_path` is known even before its
    first deployment)."""
    problem = name_problems(conn, teams, services, environments, promotion_path)
    if problem:
        raise UnknownName(problem)


def name_problems(
    conn: Connection,
    teams: Sequence[str] = (),
    services: Sequence[str] = (),
    environments: Sequence[str] = (),
    promotion_path: Sequence[str] = (),
) -> str | None:
    """The message of `check_names`, or None when every name is known."""
    options = filter_options(conn)
    options["environments"] += [e for e in promotion_path if e not in options["environments"]]
    problems = [
        unknown_names(kind, asked, options[f"{kind}s"])
        for kind, asked in (("team", teams), ("service", services), ("environment", environments))
    ]
    return "\n".join(p for p in problems if p) or None
