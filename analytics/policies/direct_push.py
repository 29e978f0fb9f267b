"""direct-push (warn): a commit on the default branch's first-parent line that no merge request
brought (committed in the period).

One select for every repository: a recursive CTE walks each default branch's first-parent line
from its head; a commit of the line committed in the period that no merge request lists, merged or
squashed is a push (the line's root, without a parent, is not)."""

from __future__ import annotations

from sqlalchemy import Connection, and_, exists, select, tuple_
from sqlalchemy.orm import aliased

from analytics.policies.period import Scan
from analytics.policies.violation import Violation
from analytics.unmerged import first_parent_lines
from config.settings import PolicySettings
from warehouse.schema import Commit, CommitParent, MergeRequest, MrCommit, Service

ID = "direct-push"
SEVERITY = "warn"
Params = PolicySettings  # `[policies.direct-push]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Commits on the default branch's first-parent line that no merge request brought."""
    line = first_parent_lines()
    first, period = aliased(CommitParent), aliased(Commit)
    has_parent = exists().where(
        first.repo_id == period.repo_id, first.sha == period.sha, first.position == 0
    )
    listed = exists().where(MrCommit.repo_id == period.repo_id, MrCommit.sha == period.sha)
    merged, squashed = (
        exists().where(MergeRequest.repo_id == period.repo_id, column == period.sha)
        for column in (MergeRequest.merge_commit_sha, MergeRequest.squash_commit_sha)
    )
    # the commits of the period no merge request brought (a few thousand on the large sandbox,
    # from one pass over the commits) are the ones the line's commits are looked up in, rather
    # than each of the line's commits (130,000) in the commit table
    pushed = select(period.repo_id, period.sha).where(
        period.committed_at >= scan.since,
        period.committed_at < scan.until,
        ~listed,
        ~merged,
        ~squashed,
        has_parent,
    )
    rows = conn.execute(
        select(line.c.repo_id, line.c.sha, Commit.committed_at, Service.name)
        .join(Commit, and_(Commit.repo_id == line.c.repo_id, Commit.sha == line.c.sha))
        .join(Service, Service.repo_id == line.c.repo_id)
        .where(tuple_(line.c.repo_id, line.c.sha).in_(pushed))
        .order_by(Service.name, Commit.committed_at.desc(), line.c.sha)
    )
    return [
        Violation(
            ID,
            SEVERITY,
            service,
            None,
            f"commit {repo_id}:{sha}",
            f"{sha[:12]} was pushed straight to the default branch: protect it and merge through "
            "merge requests",
            occurred_at=committed_at,
        )
        for repo_id, sha, committed_at, service in rows
    ]
