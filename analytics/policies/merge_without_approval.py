"""merge-without-approval (warn): a merge request merged with fewer approvals than
`required_approvals`."""

from __future__ import annotations

from sqlalchemy import Connection

from analytics.policies.period import Scan, merged, of_merge_request
from analytics.policies.violation import Violation
from config.settings import MergeWithoutApprovalPolicy

ID = "merge-without-approval"
SEVERITY = "warn"
Params = MergeWithoutApprovalPolicy  # `[policies.merge-without-approval]` (config.settings)


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Merge requests merged in the period with too few approvals."""
    required = scan.params.merge_without_approval.required_approvals
    return [
        of_merge_request(
            ID,
            SEVERITY,
            mr,
            f"!{mr.iid} was merged with {mr.approvals or 0} of {required} required approvals: "
            "require approvals in the project's merge request settings",
        )
        for mr in merged(conn, scan)
        if (mr.approvals or 0) < required
    ]
