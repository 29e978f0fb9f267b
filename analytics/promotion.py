"""The promotion path as the gate (analytics/gate.py) and the policies (analytics/policies/) read
it: the stage an environment stands for, the environments before it, the successful runs of each
service there, and an image's source commit. The policy rules themselves live in their policy's
module (analytics.policies.untested_image, rebuilt_image, non_release_ref).

An image is identified by its index digest (a platform manifest is its index's image), or
`commit:<sha>` when a deployment has no digest; its commit is one for the index and its platform
manifests (`revisions`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, or_, select
from sqlalchemy.orm import aliased

from analytics.observed import canonical
from warehouse.schema import Deployment, Environment, Image

CHUNK = 2000  # values in one IN list (SQLite allows 32,766 variables in a statement)


class Run(NamedTuple):
    """A successful application deployment: its image, finish and the image's source commit."""

    image: str
    finished: datetime
    revision: str | None


class Runs:
    """The successful application deployments of some services to some environments, indexed so
    that asking about one deployment costs a lookup, not a pass over every run of its service
    (the scan asks once per deployment in its period)."""

    def __init__(self) -> None:
        self._first: dict[tuple[int, str, str], datetime] = {}
        self._by_revision: dict[tuple[int, str, str], list[Run]] = defaultdict(list)

    def add(self, service_id: int, environment: str, run: Run) -> None:
        key = (service_id, environment, run.image)
        if key not in self._first or run.finished < self._first[key]:
            self._first[key] = run.finished
        if run.revision is not None:
            self._by_revision[(service_id, environment, run.revision)].append(run)

    def ran(self, service_id: int, environment: str, image: str, by: datetime) -> bool:
        """Whether `image` had a successful deployment to `environment` finished by `by`."""
        first = self._first.get((service_id, environment, image))
        return first is not None and first <= by

    def of_revision(self, service_id: int, environment: str, revision: str) -> list[Run]:
        """The runs in `environment` of images built from `revision`."""
        return self._by_revision.get((service_id, environment, revision), [])


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


def revisions(
    conn: Connection, digests: Iterable[str | None], memo: dict[str, str | None] | None = None
) -> dict[str, str]:
    """digest -> the source commit of its image, one for an index and its platform manifests:
    the index's own revision, else the first of its platform manifests' (a platform manifest's
    labels may name the commit while the index does not, or the other way round); digests whose
    image has no known commit are left out. `memo`: the answers (None: no commit) already read in
    this unit of work (a policy scan); each digest's answer depends on its image alone."""
    if memo is not None:
        asked = {d for d in digests if d}
        missing = asked - memo.keys()
        found = revisions(conn, missing)
        memo.update({d: found.get(d) for d in missing})
        return {d: c for d in asked if (c := memo[d])}
    images = canonical(conn, digests)  # a platform manifest -> its index
    wanted = sorted(set(images.values()))
    canonical_images = set(wanted)
    own: dict[str, str] = {}
    platforms: dict[str, list[str]] = defaultdict(list)
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        rows = conn.execute(
            select(Image.digest, Image.index_digest, Image.revision).where(
                Image.revision.is_not(None),
                or_(Image.digest.in_(part), Image.index_digest.in_(part)),
            )
        )
        for digest, index, revision in rows:
            if digest in canonical_images and index is None:
                own[digest] = str(revision)
            if index is not None:
                platforms[index].append(str(revision))
    commits = {i: own.get(i) or min(platforms.get(i, []), default=None) for i in wanted}
    return {d: c for d, image in images.items() if (c := commits[image])}


def built_from(conn: Connection, commits: Iterable[str]) -> set[str]:
    """The images (index digests, as `canonical` names them) with an index or a platform manifest
    built from one of `commits`: every image `revisions` may give one of them, and maybe more."""
    wanted, out = sorted(set(commits)), set[str]()
    for start in range(0, len(wanted), CHUNK):
        out.update(
            conn.scalars(
                select(func.coalesce(Image.index_digest, Image.digest)).where(
                    Image.revision.in_(wanted[start : start + CHUNK])
                )
            )
        )
    return out


def run_rows(
    conn: Connection, service_ids: Iterable[int] | None, environments: Iterable[str]
) -> list[Any]:
    """The rows behind `successful_runs`: (service_id, environment, digest, canonical digest, sha,
    finished) of the successful application deployments of those services (None: every service)
    to those environments."""
    platform = aliased(Image)
    image = func.coalesce(platform.index_digest, Deployment.image_digest)  # `canonical`, joined
    query = (
        select(
            Deployment.service_id,
            Environment.name,
            Deployment.image_digest,
            image,
            Deployment.sha,
            Deployment.finished_at,
        )
        .join(Environment, Environment.id == Deployment.environment_id)
        .outerjoin(platform, platform.digest == Deployment.image_digest)
        .where(
            Deployment.status == "success",
            Deployment.kind == "app",
            Deployment.finished_at.is_not(None),
            Environment.name.in_(list(environments)),
        )
    )
    if service_ids is not None:
        query = query.where(Deployment.service_id.in_(sorted(set(service_ids))))
    return list(conn.execute(query).all())


def successful_runs(
    conn: Connection,
    service_ids: Iterable[int],
    environments: Iterable[str],
    images: Iterable[str] | None = None,
    rows: list[Any] | None = None,
    memo: dict[str, str | None] | None = None,
) -> Runs:
    """The successful application deployments of those services to those environments (image and
    commit as in the module docstring); only those of `images` (digests as `canonical` names
    them, or `commit:<sha>`) when given, so a scan reads the runs that can answer it rather than
    every run of its services. `rows`: `run_rows` of these environments already read for more
    services (a policy scan reads them once for two policies); `memo`: `revisions`'."""
    out = Runs()
    ids, envs = set(service_ids), list(environments)
    if not ids or not envs:
        return out
    rows = run_rows(conn, ids, envs) if rows is None else [r for r in rows if r.service_id in ids]
    if images is not None:
        wanted = set(images)
        rows = [r for r in rows if (r[3] if r.image_digest else f"commit:{r.sha}") in wanted]
    commits = revisions(conn, {r.image_digest for r in rows if r.image_digest}, memo)
    for service_id, env, digest, canonical_digest, sha, finished in rows:
        if service_id is not None and finished is not None:
            name = canonical_digest if digest else f"commit:{sha}"
            out.add(service_id, env, Run(name, finished, commits.get(digest or "")))
    return out
