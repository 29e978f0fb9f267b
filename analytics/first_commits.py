"""When each merge request's work started (`merge_request.first_commit_at`), maintained by derive.

`first_commit_at` is the earliest authored time of the MR's commits (`FIRST_COMMIT`, the
definition): where a squash commit's lead time and the MR's coding stage start, and where a
feature branch's life begins (`analytics.branching`). Readers read the column; computed per read,
it cost a lookup in `mr_commit` and one in `commit` for every MR commit of the rows read (30,000
merged MRs for 12 weeks of the large organisation: 0.5 s of the Policies page).

Incremental (`refresh`): only the MRs whose value may have moved are recomputed, and only the rows
whose value changed are written: the MRs written since the last derive, those with MR commits
written since, and those holding a commit written since (a commit's row may arrive after the MR
commit naming it, or be corrected). The progress is the `derive_state` row named `first_commits`;
without one (a warehouse just migrated), or with `derive --full`, every MR is recomputed. Derive
runs it before the chains, whose squash commits' lead times read it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select

from analytics.rules import MR_COMMIT
from warehouse.schema import Commit, DeriveState, MergeRequest, MrCommit
from warehouse.upsert import set_by_id, upsert

STATE = "first_commits"  # derive_state row of the last refresh
BATCH = 500  # MRs one refresh statement recomputes

# the definition: the earliest authored time of the MR's commits, a scalar subquery correlated to
# `merge_request` (a recompute finds its MRs first, by id)
FIRST_COMMIT = (
    select(func.min(Commit.authored_at))
    .select_from(MrCommit)
    .join(Commit, and_(Commit.repo_id == MrCommit.repo_id, Commit.sha == MrCommit.sha))
    .where(MR_COMMIT)
    .scalar_subquery()
)


def refresh(conn: Connection, started_at: datetime, after: datetime | None) -> int:
    """Bring `merge_request.first_commit_at` up to date with the rows written at or after `after`
    (None, or no refresh recorded: every MR); records `started_at` (the derive's start) as its
    progress and returns the MRs whose value changed."""
    recorded = conn.execute(
        select(DeriveState.started_at).where(DeriveState.name == STATE)
    ).scalar()
    conditions: list[Any]
    if after is None or recorded is None:
        conditions = [MergeRequest.id.is_not(None)]
    else:
        ids = sorted(_moved(conn, after))
        conditions = [
            MergeRequest.id.in_(ids[start : start + BATCH]) for start in range(0, len(ids), BATCH)
        ]
    changed = sum(_recompute(conn, condition) for condition in conditions)
    upsert(
        conn,
        DeriveState,
        [{"name": STATE, "started_at": started_at, "finished_at": datetime.now(UTC)}],
    )
    return changed


def _moved(conn: Connection, after: datetime) -> set[int]:
    """The MRs whose first commit rows written at or after `after` may have moved, each read
    from a `changed_at` index (the few rows of one sync) then by indexed lookups."""
    moved = set(
        conn.execute(select(MergeRequest.id).where(MergeRequest.changed_at >= after)).scalars()
    )
    moved.update(
        conn.execute(
            select(MergeRequest.id).join(MrCommit, MR_COMMIT).where(MrCommit.changed_at >= after)
        ).scalars()
    )
    # the commits first, then their MR commits a repository at a time: joined, SQLite drove the
    # read from every MR commit (0.3 s on the large organisation, with nothing new)
    shas: dict[int, list[str]] = {}
    for repo_id, sha in conn.execute(
        select(Commit.repo_id, Commit.sha).where(Commit.changed_at >= after)
    ):
        shas.setdefault(repo_id, []).append(sha)
    for repo_id, found in shas.items():
        for start in range(0, len(found), BATCH):
            moved.update(
                conn.execute(
                    _HOLDING, {"repo": repo_id, "shas": found[start : start + BATCH]}
                ).scalars()
            )
    return moved


# the MRs of a repository holding one of the commits `shas`, by the (repo, sha) MR commit index:
# `changed_at` is selected so that the unique (repo, iid, sha) index does not cover the read, which
# SQLite (no statistics) then took for `repo_id =` alone, every MR commit of the repository
_HOLDING = (
    select(MergeRequest.id, MrCommit.changed_at)
    .select_from(MrCommit)
    .join(MergeRequest, MR_COMMIT)
    .where(
        MrCommit.repo_id == bindparam("repo"),
        MrCommit.sha.in_(bindparam("shas", expanding=True)),
    )
)


def _recompute(conn: Connection, condition: Any) -> int:
    """Recompute first_commit_at of the MRs matching `condition` (one select), writing the
    changed."""
    moved = conn.execute(
        select(MergeRequest.id, FIRST_COMMIT).where(
            condition, MergeRequest.first_commit_at.is_distinct_from(FIRST_COMMIT)
        )
    )
    return set_by_id(conn, MergeRequest, "first_commit_at", moved.all())


__all__ = ["FIRST_COMMIT", "STATE", "refresh"]
