"""merge-without-green-pipeline (error): a merge request merged while the latest pipeline of its
head (created by the merge) was not a success."""

from __future__ import annotations

from sqlalchemy import Connection, select

from analytics.policies.period import Scan, merged, of_merge_request
from analytics.policies.violation import Violation
from config.settings import PolicySettings
from warehouse.schema import MergeRequest, Pipeline

ID = "merge-without-green-pipeline"
SEVERITY = "error"
Params = PolicySettings  # `[policies.merge-without-green-pipeline]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Merge requests merged in the period without a green pipeline of their head (one query: the
    latest pipeline of each head is a correlated subquery on ix_pipeline_repo_sha)."""
    head_status = (
        select(Pipeline.status)
        .where(
            Pipeline.repo_id == MergeRequest.repo_id,
            Pipeline.sha == MergeRequest.head_sha,
            Pipeline.created_at <= MergeRequest.merged_at,
        )
        .order_by(Pipeline.created_at.desc(), Pipeline.id.desc())
        .limit(1)
        .correlate(MergeRequest)
        .scalar_subquery()
        .label("head_status")
    )
    return [
        of_merge_request(
            ID,
            SEVERITY,
            mr,
            f"!{mr.iid} was merged while the latest pipeline of its head was "
            f"{mr.head_status or 'missing'}: require a green pipeline to merge",
        )
        for mr in merged(conn, scan, head_status)
        if mr.head_status != "success"
    ]
