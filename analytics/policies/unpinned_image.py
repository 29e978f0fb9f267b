"""unpinned-image (warn): an application deployment with no resolvable digest (a mutable tag, or a
commit built into several images and naming none of them)."""

from __future__ import annotations

from sqlalchemy import Connection

from analytics.images import candidates
from analytics.policies.period import Scan, deployments, of_deployment
from analytics.policies.violation import Violation
from config.settings import PolicySettings

ID = "unpinned-image"
SEVERITY = "warn"
Params = PolicySettings  # `[policies.unpinned-image]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Application deployments in the period without a digest."""
    found = [d for d in deployments(conn, scan) if d.image_digest is None and d.kind == "app"]
    ambiguous = candidates(conn, [d.id for d in found])
    return [
        of_deployment(
            ID,
            SEVERITY,
            d,
            f"no digest could be resolved for this deployment ({d.image_ref or 'no image reference'})"
            + (
                f": its commit was built in {', '.join(ambiguous[d.id])} and it names none of them"
                if d.id in ambiguous
                else ""
            )
            + ": deploy by digest (repo@sha256:...)",
        )
        for d in found
    ]
