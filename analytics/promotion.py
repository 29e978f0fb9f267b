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

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased

from analytics.observed import canonical
from warehouse.schema import Deployment, Environment, Image


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


def stage_column(path: Sequence[str]) -> ColumnElement[str]:
    """`stage_name` in SQL, over the joined `environment` row (a scan reads it with each
    deployment rather than wrapping each row in Python)."""
    if not path:
        return Environment.name.expression
    by_position = [(Environment.position == i, name) for i, name in enumerate(path)]
    return case(
        (Environment.name.in_(list(path)), Environment.name),
        *by_position,
        else_=Environment.name,
    )


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


def built_from(commits: Select[Any]) -> Select[Any]:
    """The images (index digests, as `canonical` names them) with an index or a platform manifest
    built from one of `commits` (a select of commits): every image `revisions` may give one of
    them, and maybe more."""
    return select(func.coalesce(Image.index_digest, Image.digest)).where(
        Image.revision.in_(commits)
    )


def rebuilt_commits() -> Select[Any]:
    """The commits more than one image (index digest, as `canonical` names it) was built from,
    by their index's or platform manifests' labels: every commit `revisions` gives two images,
    and maybe more; the only commits rebuilt-image can find a rebuild of. One pass over
    ix_image_revision, then the rows of the commits with several."""
    image = func.coalesce(Image.index_digest, Image.digest)
    several = (  # commits of more than one image row, from the index alone
        select(Image.revision)
        .where(Image.revision.is_not(None))
        .group_by(Image.revision)
        .having(func.count() > 1)
    )
    return (
        select(Image.revision)
        .where(Image.revision.in_(several))
        .group_by(Image.revision)
        .having(func.count(image.distinct()) > 1)
    )


def image_column(deployment: Any, platform: Any) -> ColumnElement[str]:
    """A deployment's image (module docstring) in SQL: its digest's index (`platform`, the image
    row of its digest, outer-joined), else its digest, else `commit:<sha>`."""
    return case(
        (deployment.image_digest.is_(None), literal("commit:", String) + deployment.sha),
        else_=func.coalesce(platform.index_digest, deployment.image_digest),
    )


# the aliases of `successful_runs`' reads, made once: an alias of a table of many columns makes a
# proxy of each (these five took 8 ms, four times the select, of each gate decision)
_RUN_ALIASES = (
    aliased(Deployment),
    aliased(Image),
    aliased(Image),
    aliased(Deployment),
    aliased(Deployment),
)


def successful_runs(
    conn: Connection,
    service_ids: Iterable[int] | None,
    environments: Iterable[str],
    images: Select[Any],
    memo: dict[str, str | None] | None = None,
    by_revision: bool = True,
) -> Runs:
    """The successful application deployments of those services (None: every service) to those
    environments of the images of `images` (a select of images as `image_column` names them;
    image and commit as in the module docstring), as the first finish of each image per service
    and environment, aggregated in SQL: whether an image ran by some time, or which images of a
    commit ran by then, is all the rules ask. Read from those images (their digest, their
    platform manifests' digests, their commit) rather than from every run of the services, so a
    scan or a gate reads the runs that can answer it. `by_revision`: index them by commit too
    (`memo`: `revisions`'), which rebuilt-image asks and untested-image does not."""
    out = Runs()
    envs = list(environments)
    ids = None if service_ids is None else sorted(set(service_ids))
    if ids == [] or not envs:
        return out
    in_envs = select(Environment.id).where(Environment.name.in_(envs))

    def succeeded(d: Any) -> list[ColumnElement[bool]]:
        where = [
            d.status == "success",
            d.kind == "app",
            d.finished_at.is_not(None),
            d.service_id.is_not(None),
            d.environment_id.in_(in_envs),
        ]
        # the service inside coalesce, so that SQLite (no statistics) looks the few images up
        # rather than walking every run of the services by their (service, environment,
        # finished) index (a gate's decision: 10 ms)
        return where + ([func.coalesce(d.service_id, 0).in_(ids)] if ids is not None else [])

    def run(d: Any, image: ColumnElement[str]) -> Select[Any]:
        return select(d.service_id, d.environment_id, image.label("image"), d.finished_at)

    wanted = images.distinct().cte("wanted")  # read once for the three ways to its runs
    image = wanted.c[0]
    own, own_image, manifest, of_manifest, of_commit = _RUN_ALIASES
    by_commit = literal("commit:", String) + of_commit.sha
    named = select(func.substr(image, len("commit:") + 1)).where(image.startswith("commit:"))
    runs = union_all(
        run(own, image)  # runs of the image's own digest
        .select_from(wanted)
        .join(own, own.image_digest == image)
        .outerjoin(own_image, own_image.digest == own.image_digest)
        .where(func.coalesce(own_image.index_digest, own.image_digest) == image)
        .where(*succeeded(own)),
        run(of_manifest, image)  # runs of one of its platform manifests
        .select_from(wanted)
        .join(manifest, manifest.index_digest == image)
        .join(of_manifest, of_manifest.image_digest == manifest.digest)
        .where(*succeeded(of_manifest)),
        run(of_commit, by_commit)  # runs without a digest, of its commit (by its sha index)
        .where(of_commit.image_digest.is_(None), of_commit.sha.in_(named))
        .where(*succeeded(of_commit)),
    )
    found = runs.subquery()
    rows = conn.execute(
        select(found.c.service_id, Environment.name, found.c.image, func.min(found.c.finished_at))
        .join(Environment, Environment.id == found.c.environment_id)
        .where(found.c.image.is_not(None))
        .group_by(found.c.service_id, Environment.name, found.c.image)
    ).all()
    commits = (
        revisions(conn, {r[2] for r in rows if not r[2].startswith("commit:")}, memo)
        if by_revision
        else {}
    )
    for service_id, env, name, finished in rows:
        out.add(service_id, env, Run(name, finished, commits.get(name)))
    return out
