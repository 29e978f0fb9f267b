"""stale-branch (info): an unmerged branch with no commit for `stale_days` at the end of the
period."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, exists, select

from analytics.policies.period import Scan
from analytics.policies.violation import Violation
from config.settings import StaleBranchPolicy
from warehouse.schema import Branch, MergeRequest, Service

ID = "stale-branch"
SEVERITY = "info"
Params = StaleBranchPolicy  # `[policies.stale-branch]` (config.settings)


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Branches no merged or closed merge request came from, without a commit for `stale_days`
    at the end of the period."""
    stale = timedelta(days=scan.params.stale_branch.stale_days)
    decided = exists().where(  # on ix_merge_request_repo_source_branch
        MergeRequest.repo_id == Branch.repo_id,
        MergeRequest.source_branch == Branch.name,
        MergeRequest.state.in_(("merged", "closed")),
    )
    rows = conn.execute(
        select(Branch.repo_id, Branch.name, Branch.last_commit_at, Service.name)
        .join(Service, Service.repo_id == Branch.repo_id)
        .where(
            Branch.is_default.is_(False),
            Branch.last_commit_at < scan.until - stale,
            ~decided,
        )
        .order_by(Branch.id)  # the order SQLite's scan of the table gave, on PostgreSQL too
    )
    return [
        Violation(
            ID,
            SEVERITY,
            service,
            None,
            f"branch {repo_id}:{name}",
            f"{name} has had no commit since {last:%Y-%m-%d}: merge or delete it",
            occurred_at=last + stale if last else None,
        )
        for repo_id, name, last, service in rows
    ]
