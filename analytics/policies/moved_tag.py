"""moved-tag (warn): a deployment by a tag that pointed to different images over time."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from analytics.policies.period import Scan, deployments, of_deployment
from analytics.policies.violation import Violation
from config.settings import PolicySettings
from warehouse.schema import ImageTag

ID = "moved-tag"
SEVERITY = "warn"
Params = PolicySettings  # `[policies.moved-tag]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Deployments in the period by a tag (not a digest) that has had more than one digest."""
    moved = {
        (r, t)
        for r, t in conn.execute(
            select(ImageTag.repository, ImageTag.tag)
            .group_by(ImageTag.repository, ImageTag.tag)
            .having(func.count(func.distinct(ImageTag.digest)) > 1)
        )
    }
    violations = []
    for d in deployments(conn, scan):
        if d.image_ref and "@" not in d.image_ref and tuple(d.image_ref.rsplit(":", 1)) in moved:
            violations.append(
                of_deployment(
                    ID,
                    SEVERITY,
                    d,
                    f"{d.image_ref} is a tag that pointed to different images over time: deploy by digest",
                )
            )
    return violations
