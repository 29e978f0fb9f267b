"""stale-branch (info): an unmerged branch with no commit for `stale_days` at the end of the
period."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, select

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
    merged = {
        (r, b)
        for r, b in conn.execute(
            select(MergeRequest.repo_id, MergeRequest.source_branch).where(
                MergeRequest.state.in_(("merged", "closed"))
            )
        )
    }
    rows = conn.execute(
        select(Branch.repo_id, Branch.name, Branch.last_commit_at, Service.name)
        .join(Service, Service.repo_id == Branch.repo_id)
        .where(Branch.is_default.is_(False), Branch.last_commit_at < scan.until - stale)
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
        if (repo_id, name) not in merged
    ]
