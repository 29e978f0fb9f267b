"""The promotion rules the gate (analytics/gate.py) and the scan (analytics/policies.py) share:
one predicate per policy, so a deployment the gate would deny is one the scan reports.

- untested-image: an image deployed to E must have run successfully (finished before the deployment
  started, and soaked `min_soak_minutes`) in every environment before E on the promotion path
  (`require = "all"`), or only in the adjacent one (`require = "previous"`);
- rebuilt-image: the environment before E ran another image built from the same commit (build
  once, deploy many);
- non-release-ref: production is deployed from the default branch, a tag or an allowed pattern.

An image is identified by its index digest (a platform manifest is its index's image), or
`commit:<sha>` when a deployment has no digest.
"""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, func, select

from config.settings import UntestedImagePolicy
from warehouse.schema import Deployment, Environment, Image

SEMVER_TAG = re.compile(r"^(refs/tags/.+|v?\d+\.\d+(\.\d+)?([-+].*)?)$")


class Run(NamedTuple):
    """A successful application deployment: its image, finish and the image's source commit."""

    image: str
    finished: datetime
    revision: str | None


# (service id, environment) -> the service's successful application deployments there
Runs = Mapping[tuple[int, str], list[Run]]


def stage_name(environment: str, position: int | None, path: Sequence[str]) -> str:
    """The promotion-path name `environment` stands for: itself, or, for an environment off the
    path with a position on it (a production region: `production-us` where `production` is),
    the name at that position."""
    if environment in path or position is None or not 0 <= position < len(path):
        return environment
    return path[position]


def stage_of(conn: Connection, environment: str, path: Sequence[str]) -> str:
    """`stage_name` of the stored environment `environment`."""
    position = conn.execute(
        select(Environment.position).where(Environment.name == environment)
    ).scalar()
    return stage_name(environment, position, path)


def upstream_of(environment: str, path: Sequence[str], require: str = "all") -> list[str]:
    """The environments an image must have passed before `environment`, in path order: every one
    before it (`all`) or the adjacent one (`previous`); [] off the path or at its start."""
    if environment not in path:
        return []
    before = list(path[: path.index(environment)])
    return before if require == "all" else before[-1:]


def successful_runs(
    conn: Connection, service_ids: Iterable[int], environments: Iterable[str]
) -> dict[tuple[int, str], list[Run]]:
    """(service id, environment) -> the successful application deployments of those services to
    those environments (image as in the module docstring)."""
    out: dict[tuple[int, str], list[Run]] = defaultdict(list)
    ids, envs = set(service_ids), list(environments)
    if not ids or not envs:
        return out
    image = func.coalesce(Image.index_digest, Deployment.image_digest)
    rows = conn.execute(
        select(
            Deployment.service_id,
            Environment.name,
            image,
            Deployment.sha,
            Deployment.finished_at,
            Image.revision,
        )
        .join(Environment, Environment.id == Deployment.environment_id)
        .outerjoin(Image, Image.digest == Deployment.image_digest)
        .where(
            Deployment.status == "success",
            Deployment.kind == "app",
            Deployment.finished_at.is_not(None),
            Environment.name.in_(envs),
            Deployment.service_id.in_(ids),
        )
    )
    for service_id, env, digest, sha, finished, revision in rows:
        if service_id is not None and finished is not None:
            out[(service_id, env)].append(Run(digest or f"commit:{sha}", finished, revision))
    return out


def skipped_environments(
    runs: Runs,
    service_id: int,
    image: str,
    environment: str,
    start: datetime,
    path: Sequence[str],
    policy: UntestedImagePolicy,
) -> list[str]:
    """The environments before `environment` (per `policy.require`) where `image` had no
    successful deployment finished by `start` minus the soak; [] when the image is tested."""
    soak = timedelta(minutes=policy.min_soak_minutes)
    return [
        upstream
        for upstream in upstream_of(environment, path, policy.require)
        if not any(
            r.image == image and r.finished <= start - soak
            for r in runs.get((service_id, upstream), [])
        )
    ]


def untested_message(image: str, environment: str, skipped: Sequence[str], soak: float) -> str:
    """What an untested-image violation says: the environments skipped and what to do."""
    wait = f" and let it soak {soak:g} minutes" if soak else ""
    return (
        f"{image[:19]} went to {environment} without a successful deployment to "
        f"{', '.join(skipped)} before it: deploy {image[:19]} to {skipped[0]} first{wait}, then "
        f"promote it to {environment}"
    )


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
        for r in runs.get((service_id, upstream), [])
        if r.revision == revision and r.image != image and r.finished <= before
    )
    return others[0] if others else None


def rebuilt_message(image: str, revision: str, upstream: str, other: str) -> str:
    """What a rebuilt-image violation says: the commit, what upstream ran, what to promote."""
    return (
        f"{image[:19]} was rebuilt from commit {revision[:12]}, but {upstream} ran {other[:19]}: "
        f"build once, deploy many — promote {other} instead"
    )


def release_ref_allowed(ref: str, default_branch: str | None, allowed: Iterable[str]) -> bool:
    """Whether production may be deployed from `ref`: the default branch (main when unknown), a
    tag or version, or a ref matching an allowed glob pattern."""
    name = ref.removeprefix("refs/heads/")
    return (
        name == (default_branch or "main")
        or bool(SEMVER_TAG.match(ref))
        or any(fnmatch.fnmatch(name, p) for p in allowed)
    )
