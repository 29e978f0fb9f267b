"""rebuilt-image (error): the environment before E ran another image built from the same commit
(build once, deploy many). An image's commit is one for an index and its platform manifests
(analytics.promotion.revisions). The gate (analytics.gate) and the scan both decide with
`rebuilt_from`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from analytics.observed import canonical
from analytics.policies.period import Scan, deployments, memo, of_deployment
from analytics.policies.violation import Violation
from analytics.promotion import (
    Runs,
    built_from,
    rebuilt_commits,
    revisions,
    successful_runs,
    upstream_of,
)
from config.settings import PolicySettings

ID = "rebuilt-image"
SEVERITY = "error"
Params = PolicySettings  # `[policies.rebuilt-image]`: the severity only


def rebuilt_from(
    runs: Runs,
    service_id: int,
    image: str,
    revision: str | None,
    upstream: str,
    before: datetime,
) -> str | None:
    """Another image built from `revision` that `upstream` ran successfully (finished by `before`):
    the image to promote instead of `image`; None when there is none or the commit is unknown."""
    if revision is None:
        return None
    others = sorted(
        r.image
        for r in runs.of_revision(service_id, upstream, revision)
        if r.image != image and r.finished <= before
    )
    return others[0] if others else None


def message(image: str, revision: str, upstream: str, other: str) -> str:
    """What a rebuilt-image violation says: the commit, what upstream ran, what to promote."""
    return (
        f"{image[:19]} was rebuilt from commit {revision[:12]}, but {upstream} ran {other[:19]}: "
        f"build once, deploy many — promote {other} instead"
    )


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Deployments to an environment after the first of the promotion path whose image was rebuilt
    from a commit the environment before it ran as another image, by the deployment's finish."""
    path = scan.promotion_path
    found = [d for d in deployments(conn, scan, path[1:]) if d.image_digest]
    images = canonical(conn, {d.image_digest for d in found}, memo(scan, "canonical"))
    # only an image of a commit more than one image was built from can have been rebuilt: the
    # period's deployments of one, and the runs upstream of that commit's images
    rebuilds = built_from(rebuilt_commits())
    candidates = set(conn.scalars(rebuilds))
    found = [d for d in found if images[d.image_digest] in candidates]
    commits = revisions(conn, {d.image_digest for d in found}, memo(scan, "revisions"))
    ids = {d.service_id for d in found}
    runs = successful_runs(conn, ids, path[:-1], rebuilds, memo(scan, "revisions"))
    violations = []
    for d in found:
        upstream, image = upstream_of(d.stage, path, "previous")[0], images[d.image_digest]
        revision = commits.get(d.image_digest)
        other = rebuilt_from(runs, d.service_id, image, revision, upstream, d.finished_at)
        if revision and other:
            violations.append(
                of_deployment(ID, SEVERITY, d, message(image, revision, upstream, other))
            )
    return violations
