"""References to dimension rows, and the one resolver that turns them into ids.

Rows name their dimensions (source, repository, service, environment) by *reference*: a mapping or
a normaliser cannot know their ids. `Refs.id` ensures the row a reference names (creating or
updating it) and returns its id; `Refs.resolve` does it for every reference in a row. The rules
live here once: a service's team is the configured owner (`Settings.team_of`), else the namespace
its source gives it; an environment is canonicalised by the configured aliases and regions and
placed on the promotion path. The event writer and the pull collectors (GitLab's services and
environments, Jenkins' services and environments, Kubernetes' environments, git's service) all
resolve through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from config.redaction import redact_url
from config.settings import PROMOTION_PATH, Settings
from warehouse.dimensions import ensure_environment, ensure_id, ensure_source
from warehouse.schema import Repo, Service, Team
from warehouse.vocabulary import DEFAULT_ALIASES, DEFAULT_REGIONS, EnvironmentMapper


@dataclass(frozen=True)
class SourceRef:
    """A `source` row by name (created with its kind and base URL when new)."""

    name: str
    kind: str
    base_url: str | None = None


@dataclass(frozen=True)
class RepoRef:
    """A `repo` row by (source, external id)."""

    source: SourceRef
    external_id: str
    path: str
    default_branch: str | None = None
    web_url: str | None = None


@dataclass(frozen=True)
class ServiceRef:
    """A `service` row by name; `namespace` is its team when no configured team owns it. `repo`
    is its code repository (a reference, or the id a collector already holds); `origin` and
    `image_repository` are written when given."""

    name: str
    repo: RepoRef | int | None = None
    namespace: str | None = None
    origin: str | None = None
    image_repository: str | None = None


@dataclass(frozen=True)
class EnvironmentRef:
    """A raw environment name (and the source's tier), canonicalised when written."""

    raw_name: str
    tier: str | None = None


Ref = SourceRef | RepoRef | ServiceRef | EnvironmentRef
REFS = (SourceRef, RepoRef, ServiceRef, EnvironmentRef)


class Refs:
    """Resolves references to ids. `known` holds ids whose creating transaction committed
    (`remember` them after the commit); thread-safe."""

    def __init__(
        self,
        *,
        team_of: Callable[[str], str | None] = lambda _: None,
        aliases: Mapping[str, Sequence[str]] = DEFAULT_ALIASES,
        regions: str = DEFAULT_REGIONS,
        promotion_path: Sequence[str] = PROMOTION_PATH,
    ) -> None:
        self.team_of = team_of
        self.mapper = EnvironmentMapper(aliases, regions)
        self.promotion_path = list(promotion_path)
        self.known: dict[Ref, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None) -> Refs:
        """A resolver with the configuration's teams, environment aliases and promotion path."""
        if settings is None:
            return cls()
        return cls(
            team_of=settings.team_of,
            aliases=settings.environments.aliases,
            regions=settings.environments.regions,
            promotion_path=settings.environments.promotion_path,
        )

    def remember(self, pending: Mapping[Ref, int]) -> None:
        """Keep the ids of a committed transaction for the next ones."""
        with self._lock:
            self.known.update(pending)

    def resolve(
        self, conn: Connection, row: dict[str, Any], pending: dict[Ref, int] | None = None
    ) -> dict[str, Any]:
        """`row` with every reference replaced by its id."""
        pending = {} if pending is None else pending
        return {
            key: self.id(conn, value, pending) if isinstance(value, REFS) else value
            for key, value in row.items()
        }

    def id(self, conn: Connection, ref: Ref, pending: dict[Ref, int] | None = None) -> int:
        """The id of the row `ref` names, ensured in `conn`'s transaction (`pending`: the ids
        ensured in it so far, not yet committed)."""
        pending = {} if pending is None else pending
        with self._lock:
            known = self.known.get(ref)
        if known is None:
            known = pending.get(ref)
        if known is not None:
            return known
        if isinstance(ref, SourceRef):
            base_url = redact_url(ref.base_url) if ref.base_url else None
            found = ensure_source(conn, ref.name, ref.kind, base_url)
        elif isinstance(ref, RepoRef):
            row = {
                "source_id": self.id(conn, ref.source, pending),
                "external_id": ref.external_id,
                "path": ref.path,
            }
            row.update(_present(default_branch=ref.default_branch, web_url=ref.web_url))
            found = ensure_id(conn, Repo, row)
        elif isinstance(ref, ServiceRef):
            found = ensure_id(conn, Service, self._service_row(conn, ref, pending))
        else:
            env = self.mapper.canonical(ref.raw_name, ref.tier)
            found = ensure_environment(conn, env, self.promotion_path, ref.raw_name)
        pending[ref] = found
        return found

    def _service_row(
        self, conn: Connection, ref: ServiceRef, pending: dict[Ref, int]
    ) -> dict[str, Any]:
        """The service's row: its repository when known, its team by the config's patterns, else
        the namespace the source names."""
        row: dict[str, Any] = {"name": ref.name}
        if isinstance(ref.repo, int):
            row["repo_id"] = ref.repo
        elif ref.repo is not None:
            row["repo_id"] = self.id(conn, ref.repo, pending)
        team = self.team_of(ref.name) or ref.namespace
        if team:
            row["team_id"] = ensure_id(conn, Team, {"name": team})
        row.update(_present(origin=ref.origin, image_repository=ref.image_repository))
        return row


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


__all__ = ["REFS", "EnvironmentRef", "Ref", "Refs", "RepoRef", "ServiceRef", "SourceRef"]
