"""What the clusters showed running (table `observed_workload`, one row per rollout revision of a
workload), set against the deployments other sources recorded (DESIGN.md sections 3 and 5).

A recorded deployment and a rollout match when they are of the same service and environment, the
rollout began while the deployment ran (from `BEFORE` ahead of its start to `AFTER` past its
finish: a deploy job applies the manifest, then waits for the rollout) and the deployment comes
from another source than the cluster itself (a cluster in `deployments = "record"` mode writes its
rollouts as deployments too). A matched rollout tells which digest the deployment really rolled out
(image resolution `observed`); a successful rollout that no recorded deployment of its digest
accounts for is an unrecorded change (policy `unrecorded-change`) and, being newer, wins the
environment state (analytics.drift).

Digests are compared as images: a platform manifest digest counts as its index (`canonical`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from warehouse.schema import Deployment, Image, ObservedWorkload

BEFORE = timedelta(minutes=2)
AFTER = timedelta(minutes=10)
SLACK = timedelta(days=1)  # no deployment runs longer than this


@dataclass(frozen=True)
class Rollout:
    id: int
    source_id: int | None
    cluster: str
    namespace: str
    workload: str
    revision: str | None
    service_id: int
    environment_id: int
    at: datetime
    status: str
    digest: str | None  # the image it ran (an index digest where the registry knows one)


def canonical(
    conn: Connection, digests: Iterable[str | None], memo: dict[str, str] | None = None
) -> dict[str, str]:
    """digest -> the image's digest: platform manifests map to their index; others to themselves.
    `memo`: the answers already read in this unit of work (a policy scan), read only once."""
    wanted = sorted({d for d in digests if d})
    if memo is not None:
        memo.update(canonical(conn, [d for d in wanted if d not in memo]))
        return {d: memo[d] for d in wanted}
    out = {d: d for d in wanted}
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        for digest, index in conn.execute(
            select(Image.digest, Image.index_digest).where(
                Image.digest.in_(part), Image.index_digest.is_not(None)
            )
        ):
            out[digest] = str(index)
    return out


def rollouts(
    conn: Connection,
    service_ids: Iterable[int] | None = None,
    until: datetime | None = None,
    since: datetime | None = None,
    successful: bool = False,
) -> list[Rollout]:
    """Rollouts of known services in known environments that began in [since, until] (each bound
    optional; only the successful ones if asked), oldest first."""
    w = ObservedWorkload
    query = select(
        w.id,
        w.source_id,
        w.cluster,
        w.namespace,
        w.workload,
        w.revision,
        w.service_id,
        w.environment_id,
        w.observed_at,
        w.status,
        w.digests,
    ).where(w.service_id.is_not(None), w.environment_id.is_not(None))
    if service_ids is not None:
        query = query.where(w.service_id.in_(sorted(set(service_ids)) or [-1]))
    if until is not None:
        query = query.where(w.observed_at <= until)
    if since is not None:
        query = query.where(w.observed_at >= since)
    if successful:
        query = query.where(w.status == "success")
    rows = conn.execute(query.order_by(w.observed_at, w.id)).all()
    images = canonical(conn, (d for r in rows for d in (r.digests or [])[:1]))
    return [
        Rollout(
            r.id,
            r.source_id,
            r.cluster,
            r.namespace,
            r.workload,
            r.revision,
            r.service_id,
            r.environment_id,
            r.observed_at,
            r.status,
            images.get(r.digests[0]) if r.digests else None,
        )
        for r in rows
    ]


def from_elsewhere(rollout: Rollout, deployment: Any) -> bool:
    """A deployment can account for a rollout unless the cluster recorded it itself."""
    return rollout.source_id is None or rollout.source_id != deployment.source_id


class Matcher:
    """Rollouts by service and environment, for matching recorded deployments in time."""

    def __init__(self, found: list[Rollout]) -> None:
        self.by_place: dict[tuple[int, int], list[Rollout]] = defaultdict(list)
        for r in found:
            self.by_place[(r.service_id, r.environment_id)].append(r)
        self.times = {k: [r.at for r in v] for k, v in self.by_place.items()}

    def __bool__(self) -> bool:
        return bool(self.by_place)

    def during(self, d: Any) -> list[Rollout]:
        """The rollouts that began while deployment `d` ran, oldest first.

        `d` has service_id, environment_id, source_id, start and finished_at."""
        key = (d.service_id, d.environment_id)
        if key not in self.by_place or d.start is None:
            return []
        low, high = d.start - BEFORE, (d.finished_at or d.start) + AFTER
        found = self.by_place[key]
        hits = []
        for i in range(bisect_left(self.times[key], low), len(found)):
            if found[i].at > high:
                break
            if from_elsewhere(found[i], d):
                hits.append(found[i])
        return hits

    def assign(self, deployments: Iterable[Any]) -> dict[int, Rollout]:
        """deployment id -> the rollout it began, one each, in start order (two deploy jobs that
        overlap roll out in the order they started). A deployment sure of its image (`explicit`,
        `observed`) takes the rollout of that image, or none; another prefers the rollout of the
        digest it was resolved to, else the earliest free one.

        Each deployment has id, image_digest and image_resolution besides what `during` reads."""
        taken: set[int] = set()
        out: dict[int, Rollout] = {}
        for d in sorted(deployments, key=lambda d: (d.start is None, d.start, d.id)):
            free = [r for r in self.during(d) if r.id not in taken]
            same = [r for r in free if r.digest == d.image_digest]
            sure = d.image_resolution in ("explicit", "observed")
            pick = same[0] if same else (None if sure or not free else free[0])
            if pick is not None:
                taken.add(pick.id)
                out[d.id] = pick
        return out


def unrecorded(conn: Connection, since: datetime | None, until: datetime) -> list[Rollout]:
    """Successful rollouts that began in [since, until) (since: from the first) with a digest that
    no deployment recorded by another source put there while it ran (the same service,
    environment and image)."""
    found = [
        r
        for r in rollouts(conn, until=until, since=since, successful=True)
        if r.at < until and r.digest is not None
    ]
    if not found:
        return []
    since = min(r.at for r in found)
    start = func.coalesce(
        Deployment.started_at, Deployment.created_at, type_=Deployment.started_at.type
    )
    recorded: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for row in conn.execute(
        select(
            Deployment.service_id,
            Deployment.environment_id,
            Deployment.source_id,
            Deployment.image_digest,
            Deployment.finished_at,
            start.label("start"),
        )
        .where(
            Deployment.service_id.in_(sorted({r.service_id for r in found})),
            Deployment.image_digest.is_not(None),
            start >= since - SLACK,
            start <= until + BEFORE,
        )
        .order_by(start)
    ):
        recorded[(row.service_id, row.environment_id)].append(row)
    images = canonical(conn, (d.image_digest for rows in recorded.values() for d in rows))
    out = []
    for r in found:
        if not any(
            images[d.image_digest] == r.digest
            and from_elsewhere(r, d)
            and d.start - BEFORE <= r.at <= (d.finished_at or d.start) + AFTER
            for d in recorded[(r.service_id, r.environment_id)]
        ):
            out.append(r)
    return out


__all__ = [
    "AFTER",
    "BEFORE",
    "SLACK",
    "Matcher",
    "Rollout",
    "canonical",
    "from_elsewhere",
    "rollouts",
    "unrecorded",
]
