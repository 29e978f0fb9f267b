"""merge-without-green-pipeline (error): a merge request merged while the latest pipeline of its
head (created by the merge) was not a success."""

from __future__ import annotations

from sqlalchemy import Connection, select

from analytics.policies.period import Scan, merged, of_merge_request
from analytics.policies.violation import Violation
from config.settings import PolicySettings
from warehouse.schema import Pipeline

ID = "merge-without-green-pipeline"
SEVERITY = "error"
Params = PolicySettings  # `[policies.merge-without-green-pipeline]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Merge requests merged in the period without a green pipeline of their head."""
    violations = []
    for mr in merged(conn, scan):
        status = conn.execute(
            select(Pipeline.status)
            .where(
                Pipeline.repo_id == mr.repo_id,
                Pipeline.sha == mr.head_sha,
                Pipeline.created_at <= mr.merged_at,
            )
            .order_by(Pipeline.created_at.desc(), Pipeline.id.desc())
            .limit(1)
        ).scalar()
        if status != "success":
            violations.append(
                of_merge_request(
                    ID,
                    SEVERITY,
                    mr,
                    f"!{mr.iid} was merged while the latest pipeline of its head was "
                    f"{status or 'missing'}: require a green pipeline to merge",
                )
            )
    return violations
