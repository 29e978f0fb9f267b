"""untested-image (error): an image deployed to E must have run successfully (finished before the
deployment started, and soaked `min_soak_minutes`) in every environment before E on the promotion
path (`require = "all"`), or only in the adjacent one (`require = "previous"`). The gate
(analytics.gate) and the scan both decide with `skipped_environments`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection

from analytics.observed import canonical
from analytics.policies.period import Scan, deployments, memo, of_deployment, period_images
from analytics.policies.violation import Violation
from analytics.promotion import Runs, successful_runs, upstream_of
from config.settings import UntestedImagePolicy

ID = "untested-image"
SEVERITY = "error"
Params = UntestedImagePolicy  # `[policies.untested-image]`, validated at start (config.settings)


def skipped_environments(
    runs: Runs,
    service_id: int,
    image: str,
    environment: str,
    start: datetime,
    path: Sequence[str],
    params: Params,
) -> list[str]:
    """The environments before `environment` (per `params.require`) where `image` had no
    successful deployment finished by `start` minus the soak; [] when the image is tested."""
    soak = timedelta(minutes=params.min_soak_minutes)
    return [
        upstream
        for upstream in upstream_of(environment, path, params.require)
        if not runs.ran(service_id, upstream, image, start - soak)
    ]


def message(image: str, environment: str, skipped: Sequence[str], soak: float) -> str:
    """What an untested-image violation says: the environments skipped and what to do."""
    wait = f" and let it soak {soak:g} minutes" if soak else ""
    return (
        f"{image[:19]} went to {environment} without a successful deployment to "
        f"{', '.join(skipped)} before it: deploy {image[:19]} to {skipped[0]} first{wait}, then "
        f"promote it to {environment}"
    )


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Application deployments to an environment after the first of the promotion path whose image
    skipped an environment before it."""
    params, path = scan.params.untested_image, scan.promotion_path
    found = deployments(conn, scan, path[1:], kind="app")
    images = canonical(
        conn, [d.image_digest for d in found if d.image_digest], memo(scan, "canonical")
    )
    runs = successful_runs(
        conn,
        {d.service_id for d in found},
        path[:-1],
        period_images(scan),
        by_revision=False,
    )
    violations = []
    for d in found:
        image = images[d.image_digest] if d.image_digest else f"commit:{d.sha}"
        skipped = skipped_environments(runs, d.service_id, image, d.stage, d.start, path, params)
        if skipped:
            violations.append(
                of_deployment(
                    ID, SEVERITY, d, message(image, d.environment, skipped, params.min_soak_minutes)
                )
            )
    return violations
