"""long-lived-branch (warn): an open merge request, or an unmerged branch without one (by its first
own commit, analytics.unmerged), older than `max_age_days` at the end of the period."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, select

from analytics.policies.period import Scan, commit_graph
from analytics.policies.violation import Violation
from config.settings import LongLivedBranchPolicy
from warehouse.schema import MergeRequest, Service

ID = "long-lived-branch"
SEVERITY = "warn"
Params = LongLivedBranchPolicy  # `[policies.long-lived-branch]` (config.settings)


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Merge requests open, and branches without one unmerged, for longer than `max_age_days` at
    the end of the period."""
    max_age = timedelta(days=scan.params.long_lived_branch.max_age_days)
    rows = conn.execute(
        select(
            MergeRequest.repo_id,
            MergeRequest.iid,
            MergeRequest.source_branch,
            MergeRequest.created_at,
            MergeRequest.web_url,
            Service.name,
        )
        .join(Service, Service.repo_id == MergeRequest.repo_id)
        .where(MergeRequest.state == "opened", MergeRequest.created_at < scan.until - max_age)
        .order_by(MergeRequest.id)  # open MRs have no released_at: `merged`'s order
    )
    return [
        Violation(
            ID,
            SEVERITY,
            service,
            None,
            f"branch {repo_id}:{branch}",
            f"{branch} (!{iid}) has been open since {created:%Y-%m-%d}: split it and merge within "
            f"{max_age.days} days",
            url,
            occurred_at=created + max_age if created else None,
        )
        for repo_id, iid, branch, created, url, service in rows
    ] + [  # branches without a merge request, by their first own commit (analytics.unmerged)
        Violation(
            ID,
            SEVERITY,
            service,
            None,
            f"branch {repo_id}:{name}",
            f"{name} has unmerged commits since {since:%Y-%m-%d} and no merge request: open "
            f"one and merge within {max_age.days} days, or delete the branch",
            occurred_at=since + max_age,
        )
        for repo_id, name, since, service, _ in commit_graph(conn, scan).unmerged
    ]
