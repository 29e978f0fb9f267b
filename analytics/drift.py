"""Image drift between adjacent environments of the promotion path (DESIGN.md section 5).

Environment state: what a service runs in an environment at an instant — its last successful
application deployment at or before then, unless a cluster shows a newer rollout that no recorded
deployment accounts for (analytics.observed: an unrecorded change), which wins.
Drift between an upstream and a downstream environment: their digests differ. For each service and
adjacent pair: how many commits the downstream is behind, how long it has been drifting, and
whether the downstream's digest ever ran upstream. Where a deployment has no digest, its commit
stands in for its image (as in `analytics.derive`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import Connection, and_, func, select

from analytics.ancestry import CommitGraph
from analytics.observed import unrecorded
from warehouse.schema import (
    Deployment,
    DeploymentChain,
    DriftSnapshot,
    Environment,
    Image,
    Service,
)
from warehouse.upsert import upsert


@dataclass(frozen=True)
class Running:
    """What runs in one environment: the deployment, its image and commit, since when."""

    deployment_id: int | None  # None: an unrecorded change seen in a cluster
    image: str  # digest, or "commit:<sha>" where the source gave none
    sha: str | None
    since: datetime


@dataclass
class Drift:
    """One row of `cdmetrics drift --format json`."""

    service: str
    upstream: str
    downstream: str
    upstream_digest: str | None
    downstream_digest: str | None
    in_sync: bool
    commits_behind: int | None
    drift_age_hours: float | None
    downstream_ever_upstream: bool | None


def _image(digest: str | None, sha: str | None) -> str:
    return digest or f"commit:{sha}"


def _shown(image: str | None) -> str | None:
    return None if image is None or image.startswith("commit:") else image


def environment_state(
    conn: Connection, at: datetime, services: list[str] | None = None
) -> dict[tuple[str, str], Running]:
    """(service, environment) -> what ran there at `at`."""
    latest = (
        select(
            DeploymentChain.service_id,
            DeploymentChain.environment_id,
            func.max(DeploymentChain.finished_at).label("finished"),
        )
        .where(DeploymentChain.finished_at <= at)
        .group_by(DeploymentChain.service_id, DeploymentChain.environment_id)
        .subquery()
    )
    query = (
        select(
            Service.name,
            Environment.name,
            Deployment.id,
            Deployment.image_digest,
            Deployment.sha,
            DeploymentChain.finished_at,
        )
        .select_from(DeploymentChain)
        .join(
            latest,
            and_(
                latest.c.service_id == DeploymentChain.service_id,
                latest.c.environment_id == DeploymentChain.environment_id,
                latest.c.finished == DeploymentChain.finished_at,
            ),
        )
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .join(Service, Service.id == DeploymentChain.service_id)
        .join(Environment, Environment.id == DeploymentChain.environment_id)
        .order_by(Deployment.id)
    )
    if services:
        query = query.where(Service.name.in_(services))
    state: dict[tuple[str, str], Running] = {}
    for service, env, dep_id, digest, sha, finished in conn.execute(query):
        # ordered by deployment id: the last id wins a tie
        state[(service, env)] = Running(dep_id, _image(digest, sha), sha, finished)
    _observed_changes(conn, at, state, services)
    return state


def _observed_changes(
    conn: Connection,
    at: datetime,
    state: dict[tuple[str, str], Running],
    services: list[str] | None,
) -> None:
    """A rollout no recorded deployment accounts for, newer than the recorded state, wins it."""
    found = unrecorded(conn, None, at)
    if not found:
        return
    names = dict(conn.execute(select(Service.id, Service.name)).all())
    envs = dict(conn.execute(select(Environment.id, Environment.name)).all())
    revisions = dict(
        conn.execute(
            select(Image.digest, Image.revision).where(
                Image.digest.in_(sorted({r.digest for r in found if r.digest}))
            )
        ).all()
    )
    for r in found:  # oldest first: the newest wins
        key = (names[r.service_id], envs[r.environment_id])
        if services and key[0] not in services:
            continue
        current = state.get(key)
        if r.digest and (current is None or current.since < r.at):
            state[key] = Running(None, r.digest, revisions.get(r.digest), r.at)


def _history(conn: Connection, service: str, env: str, at: datetime) -> list[tuple[datetime, str]]:
    """(finished_at, image) of the service's successful deployments to `env` up to `at`, in order."""
    rows = conn.execute(
        select(DeploymentChain.finished_at, Deployment.image_digest, Deployment.sha)
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .join(Service, Service.id == DeploymentChain.service_id)
        .join(Environment, Environment.id == DeploymentChain.environment_id)
        .where(Service.name == service, Environment.name == env, DeploymentChain.finished_at <= at)
        .order_by(DeploymentChain.finished_at, Deployment.id)
    )
    return [(finished, _image(digest, sha)) for finished, digest, sha in rows]


def drift(
    conn: Connection,
    promotion_path: list[str],
    at: datetime | None = None,
    services: list[str] | None = None,
) -> list[Drift]:
    """The drift rows for every service and adjacent pair of `promotion_path` at `at` (now)."""
    at = at or datetime.now(UTC)
    state = environment_state(conn, at, services)
    repos = dict(conn.execute(select(Service.name, Service.repo_id)).all())
    graphs: dict[int, CommitGraph] = {}
    rows = []
    for service in sorted({s for s, _ in state}):
        for upstream, downstream in pairwise(promotion_path):
            up, down = state.get((service, upstream)), state.get((service, downstream))
            if up is None and down is None:
                continue
            rows.append(
                _pair(conn, service, upstream, downstream, up, down, at, repos.get(service), graphs)
            )
    return rows


def _pair(
    conn: Connection,
    service: str,
    upstream: str,
    downstream: str,
    up: Running | None,
    down: Running | None,
    at: datetime,
    repo_id: int | None,
    graphs: dict[int, CommitGraph],
) -> Drift:
    in_sync = up is not None and down is not None and up.image == down.image
    behind = None
    if up and down and up.sha and down.sha and repo_id is not None:
        graph = graphs.setdefault(repo_id, CommitGraph(conn, repo_id))
        behind = len(graph.new_since(up.sha, graph.ancestors(down.sha))[0])
    age = ever = None
    if up and not in_sync and up.deployment_id is None:  # a change by hand upstream
        age = (at - up.since).total_seconds() / 3600
    elif up and not in_sync:
        downstream_history = _history(conn, service, downstream, at)
        ran = [i for i, (_, image) in enumerate(downstream_history) if image == up.image]
        if ran and ran[-1] + 1 < len(downstream_history):  # it ran upstream's image, then moved on
            drifting_since = downstream_history[ran[-1] + 1][0]
        else:  # since the upstream image arrived upstream
            upstream_history = _history(conn, service, upstream, at)
            start = len(upstream_history) - 1
            while start > 0 and upstream_history[start - 1][1] == up.image:
                start -= 1
            drifting_since = upstream_history[start][0] if upstream_history else up.since
        age = (at - drifting_since).total_seconds() / 3600
    if down:
        ever = any(image == down.image for _, image in _history(conn, service, upstream, at))
    return Drift(
        service,
        upstream,
        downstream,
        _shown(up.image) if up else None,
        _shown(down.image) if down else None,
        in_sync,
        behind,
        age,
        ever,
    )


def snapshot(conn: Connection, rows: list[Drift], taken_at: datetime) -> int:
    """Store the drift rows as of `taken_at` (drift_snapshot); returns rows written."""
    services = dict(conn.execute(select(Service.name, Service.id)).all())
    envs = dict(conn.execute(select(Environment.name, Environment.id)).all())
    return upsert(
        conn,
        DriftSnapshot,
        [
            {
                "taken_at": taken_at,
                "service_id": services[r.service],
                "upstream_environment_id": envs[r.upstream],
                "downstream_environment_id": envs[r.downstream],
                "upstream_digest": r.upstream_digest,
                "downstream_digest": r.downstream_digest,
                "commits_behind": r.commits_behind,
                "drift_age_s": r.drift_age_hours * 3600 if r.drift_age_hours is not None else None,
                "downstream_ever_upstream": r.downstream_ever_upstream,
            }
            for r in rows
            if r.upstream in envs and r.downstream in envs
        ],
    )


def as_json(rows: list[Drift]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def record(engine: Any, promotion_path: list[str], at: datetime | None = None) -> int:
    """Compute drift now (or at `at`) and store it as a snapshot taken at the start of that hour."""
    at = at or datetime.now(UTC)
    with engine.begin() as conn:
        return snapshot(
            conn, drift(conn, promotion_path, at), at.replace(minute=0, second=0, microsecond=0)
        )
