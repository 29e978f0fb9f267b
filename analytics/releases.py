"""When each merged MR reached production (`merge_request.released_at`), maintained by derive.

`released_at` is the first finish of a deployment to a production-tier environment (any region)
whose repository (`DEPLOYMENT_REPO`) is the MR's and that brought its merge or squash commit (a
fast-forward merge: its head), or, the warehouse knowing no history before a chain's first
deployment, the first such chain baseline finishing at or after the merge; None while neither
exists. `analytics.selects.unreleased` reads it for the production tier with indexed range reads;
for a named environment it calls `release_times` over that environment, one query for the scope.

Both are set-based: the MRs' commits are matched to `deployment_change` through its `sha` index
(one row per MR and commit kind, never an OR across the three), the baselines are a small set
joined by repository, and one `GROUP BY` takes the earliest.

Incremental (`refresh`): only the MRs that may have moved are recomputed, and only the rows whose
value changed are written: MRs changed since the last refresh (a new merge, a late merge commit),
and in each repository with chains derive re-derived from `since`, its merged MRs not released
before `since` (a deployment finishing earlier is unchanged, so an earlier release stands). The
progress is the `derive_state` row named `released`; without one (a warehouse just migrated), or
with `derive --full`, every MR is recomputed. Not noticed: a deployment whose finish, repository or
environment changes after the derive that chained it, or a service whose repository moves (run
`cdmetrics derive --full`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, false, func, select, union_all
from sqlalchemy.orm import aliased

from analytics.rules import DEPLOYMENT_REPO
from warehouse.schema import (
    Deployment,
    DeploymentChain,
    DeploymentChange,
    DeriveState,
    Environment,
    MergeRequest,
    Service,
)
from warehouse.upsert import set_by_id, upsert

STATE = "released"  # derive_state row of the last refresh
BATCH = 500  # changed MRs one refresh statement recomputes


def release_times(environment: str | None, merge_requests: Any) -> Any:
    """A select of (merge_request_id, released_at) for the merged MRs matching the condition
    `merge_requests` that reached `environment` (None: any production-tier environment), with the
    first finish of a deployment there that brought their merge or squash commit (fast-forward:
    their head), or of a chain's baseline finishing at or after their merge. MRs that reached it
    by neither are left out."""
    mr = (
        select(
            MergeRequest.id,
            MergeRequest.repo_id,
            MergeRequest.merged_at,
            MergeRequest.merge_commit_sha,
            MergeRequest.squash_commit_sha,
            MergeRequest.head_sha,
        )
        .where(MergeRequest.state == "merged", merge_requests)
        .cte("released_mr")
    )
    landed = _landed(mr)
    brought = _deployed(
        select(landed.c.id, DeploymentChain.finished_at)
        .select_from(landed)
        .join(DeploymentChange, DeploymentChange.sha == landed.c.sha)
        .join(DeploymentChain, DeploymentChain.deployment_id == DeploymentChange.deployment_id),
        environment,
    ).where(landed.c.repo_id == DEPLOYMENT_REPO)
    baselines = _deployed(
        select(DEPLOYMENT_REPO.label("repo_id"), DeploymentChain.finished_at).where(
            DeploymentChain.baseline
        ),
        environment,
    ).subquery("baselines")
    history = (
        select(mr.c.id, baselines.c.finished_at)
        .select_from(mr)
        .join(
            baselines,
            and_(baselines.c.repo_id == mr.c.repo_id, baselines.c.finished_at >= mr.c.merged_at),
        )
    )
    found = union_all(brought, history).subquery("found")
    return select(
        found.c.id.label("merge_request_id"), func.min(found.c.finished_at).label("released_at")
    ).group_by(found.c.id)


def _landed(mr: Any) -> Any:
    """(id, repo_id, sha) of each commit an MR of `mr` landed as: its squash commit, its merge
    commit, or, merged by fast-forward (neither), its head. One row per commit, not an OR over
    three columns, so each is matched through deployment_change's index on sha."""
    return union_all(
        select(mr.c.id, mr.c.repo_id, mr.c.squash_commit_sha.label("sha")).where(
            mr.c.squash_commit_sha.is_not(None)
        ),
        select(mr.c.id, mr.c.repo_id, mr.c.merge_commit_sha).where(
            mr.c.merge_commit_sha.is_not(None)
        ),
        select(mr.c.id, mr.c.repo_id, mr.c.head_sha).where(
            mr.c.merge_commit_sha.is_(None),
            mr.c.squash_commit_sha.is_(None),
            mr.c.head_sha.is_not(None),
        ),
    ).subquery("landed")


def _deployed(query: Any, environment: str | None) -> Any:
    """`query` over deployment_chain joined to its deployment and service (for its repository),
    restricted to `environment` (None: the production tier)."""
    query = query.join(Deployment, Deployment.id == DeploymentChain.deployment_id).join(
        Service, Service.id == DeploymentChain.service_id
    )
    if environment is None:
        # not `is_production` bare: SQLite would drive the join from its index on
        # (is_production, finished_at), every production chain row times every MR
        return query.where(func.coalesce(DeploymentChain.is_production, false()))
    owner = aliased(Environment)
    return query.join(owner, owner.id == DeploymentChain.environment_id).where(
        owner.name == environment
    )


def last_refresh(conn: Connection) -> datetime | None:
    return conn.execute(select(DeriveState.started_at).where(DeriveState.name == STATE)).scalar()


def refresh(
    conn: Connection,
    started_at: datetime,
    rederived: Mapping[int, datetime] | None,
    clock_skew: timedelta = timedelta(0),
) -> int:
    """Bring `merge_request.released_at` up to date; `rederived`: repository -> the earliest
    finish from which derive re-derived a chain of it (None: recompute every MR). Records
    `started_at` (the derive's start) as its progress; returns the MRs whose value changed."""
    last = last_refresh(conn)
    conditions: list[Any]
    if rederived is None or last is None:
        conditions = [MergeRequest.id.is_not(None)]
    else:
        # the MRs changed since, by the changed_at index (few), then each recomputed by id: in one
        # statement SQLite would walk every merged MR by its state index and filter
        moved = set(
            conn.execute(
                select(MergeRequest.id).where(MergeRequest.changed_at >= last - clock_skew)
            ).scalars()
        )
        # in each repository with chains re-derived from `since`, the merged MRs not released
        # before `since`: read through the index on (state, released_at), not released or
        # released since the earliest `since` (one range each), kept by their repository's
        # `since`. Ids, so that every recompute is one statement compiled once (an OR over the
        # repositories was compiled anew each derive and read every unreleased MR once per
        # 200 repositories)
        earliest = min(rederived.values(), default=None)
        if earliest is not None:
            for released in (
                MergeRequest.released_at.is_(None),
                MergeRequest.released_at >= earliest,
            ):
                for mr_id, repo_id, released_at in conn.execute(
                    select(MergeRequest.id, MergeRequest.repo_id, MergeRequest.released_at).where(
                        MergeRequest.state == "merged", released
                    )
                ):
                    since = rederived.get(repo_id)
                    if since is not None and (released_at is None or released_at >= since):
                        moved.add(mr_id)
        ids = sorted(moved)
        conditions = [
            MergeRequest.id.in_(ids[start : start + BATCH]) for start in range(0, len(ids), BATCH)
        ]
    changed = 0
    for condition in conditions:
        changed += _recompute(conn, condition)
    upsert(
        conn,
        DeriveState,
        [{"name": STATE, "started_at": started_at, "finished_at": datetime.now(UTC)}],
    )
    return changed


def _recompute(conn: Connection, condition: Any) -> int:
    """Recompute released_at of the MRs matching `condition` (one select), writing the changed."""
    times = release_times(None, condition).subquery("times")
    moved = conn.execute(
        select(MergeRequest.id, times.c.released_at)
        .select_from(MergeRequest)
        .outerjoin(times, times.c.merge_request_id == MergeRequest.id)
        .where(condition, MergeRequest.released_at.is_distinct_from(times.c.released_at))
    )
    return set_by_id(conn, MergeRequest, "released_at", moved.all())


__all__ = ["STATE", "last_refresh", "refresh", "release_times"]
