"""merge-without-green-pipeline (error): a merge request merged while the latest pipeline of its
head (created by the merge) was not a success."""

from __future__ import annotations

from sqlalchemy import Connection

from analytics.policies.period import Scan, merged, of_merge_request
from analytics.policies.violation import Violation
from config.settings import PolicySettings

ID = "merge-without-green-pipeline"
SEVERITY = "error"
Params = PolicySettings  # `[policies.merge-without-green-pipeline]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Merge requests merged in the period without a green pipeline of their head (the latest
    one by the merge: `head_status` of `analytics.policies.period.merged`)."""
    return [
        of_merge_request(
            ID,
            SEVERITY,
            mr,
            f"!{mr.iid} was merged while the latest pipeline of its head was "
            f"{mr.head_status or 'missing'}: require a green pipeline to merge",
        )
        for mr in merged(conn, scan)
        if mr.head_status != "success"
    ]
