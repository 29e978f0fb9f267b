"""Image resolution (DESIGN.md section 3): which commit built an image, and which digest a
deployment rolled out, recorded with how it was found.

An image's `revision` (source commit) here comes from the tag naming convention
(`[metrics] tag_revision_pattern`: a tag that is the commit's full or 7-12 character short sha,
optionally prefixed `v` or `sha-`), matched against the commits of the service whose image
repository it is. Labels, provenance and the pushing build (stronger evidence) are set by the
collectors that see them and are never overwritten here.

A deployment's digest, by trust: `explicit` (the source named it; kept as collected), `observed`
(a cluster's rollout that ran while the deployment ran, analytics.observed; it replaces a digest
found by tag or revision), `tag` (its image reference's tag, through the tag history as it was when
the deployment started), `revision` (the one image built from the deployed commit in the
repositories linked to the deployment's service, `warehouse.image_repositories`; when the deployment
names a repository of its service, only that repository's; two candidates are ambiguous and resolve
to nothing, `candidates` names them), else `none`. A platform manifest digest is recorded as its
index's digest (the image), the platform digest the source named staying in `image_ref`.

A deployment whose digest changes after its chain was derived loses its chain rows, so the next
step of `derive` re-derives that chain from it (rollbacks are detected by digest).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import aliased

from analytics.observed import SLACK, Matcher, rollouts
from config.settings import TAG_REVISION_PATTERN
from warehouse.image_repositories import Configured, link_repositories
from warehouse.schema import (
    Commit,
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Image,
    ImageRepository,
    ImageTag,
    Service,
)

# a repository with this many short commit names or fewer to look up (an incremental derive's
# new images) reads the commits of each prefix, a range of the (repo, sha) index, rather than
# all of its commits (a first derive's thousands)
PREFIX_RANGES = 64
# more revisions read from tags than this (a registry's first sync): every pending deployment is
# read rather than those of the revisions (one value list, under SQLite's variable limit)
LOOKUPS = 2000


@dataclass
class ResolutionSummary:
    revisions: int = 0
    deployments: int = 0
    # deployments whose derived links were dropped (their image or repository changed): derive
    # chains them again (their changed_at stays the sync's)
    unchained: set[int] = field(default_factory=set)


def resolve_images(
    conn: Connection,
    tag_revision_pattern: str = TAG_REVISION_PATTERN,
    image_repositories: Configured | None = None,
    changed_after: datetime | None = None,
) -> ResolutionSummary:
    """Link repositories to services (`image_repositories`: service name -> configured names or
    globs), fill image revisions from tags, then digests of deployments that have none, and again
    of those resolved by tag or revision that images or tags changed at or after `changed_after`
    (late image data) may resolve otherwise; returns how many of each it filled."""
    summary = ResolutionSummary()
    relinked = link_repositories(conn, image_repositories, changed_after)
    revised = _revisions_from_tags(conn, re.compile(tag_revision_pattern))
    summary.revisions = sum(len(digests) for digests in revised.values())
    reopened = _reopen_late(conn, changed_after, set(revised))
    changed = _platforms_to_index(conn) | _observed(conn)
    since = None if relinked else changed_after
    summary.deployments = len(changed) + _deployment_digests(conn, _resolvable(since, set(revised)))
    changed |= _redigested(conn, reopened)
    _unchain(conn, changed)
    summary.unchained = changed | _repositories_from_images(conn)
    return summary


def _repositories_from_images(conn: Connection) -> set[int]:
    """A deployment that knows no repository, of a service that has none (a deploy job naming a
    service no code source knows, with no checkout of its own), gets the repository of the service
    whose image repository holds its image: that is the code the image was built from. Returns
    those deployments (unchained: derived without their commits)."""
    owner = (
        select(Service.repo_id)
        .join(ImageRepository, ImageRepository.service_id == Service.id)
        .join(Image, Image.repository == ImageRepository.repository)
        .where(Image.digest == Deployment.image_digest, Service.repo_id.is_not(None))
        .limit(1)
        .scalar_subquery()
    )
    repo_less = select(Service.id).where(Service.repo_id.is_(None))
    found = conn.execute(
        select(Deployment.id, owner.label("repo_id")).where(
            Deployment.repo_id.is_(None),
            Deployment.image_digest.is_not(None),
            Deployment.service_id.in_(repo_less),
        )
    ).all()
    updates = [{"target": d, "repo": repo} for d, repo in found if repo is not None]
    if updates:
        conn.execute(
            update(Deployment)
            .where(Deployment.id == bindparam("target"))
            .values(repo_id=bindparam("repo")),
            updates,
        )
    unchained = {u["target"] for u in updates}
    _unchain(conn, unchained)
    return unchained


def _platforms_to_index(conn: Connection) -> set[int]:
    """Deployments naming a platform manifest get its index's digest (one image, one digest)."""
    platform = aliased(Image)  # looked up from the platform images (an index), not the deployments
    platforms = select(platform.digest).where(platform.index_digest.is_not(None))
    rows = conn.execute(
        select(Deployment.id, Deployment.image_digest, Deployment.image_ref, Image.index_digest)
        .join(Image, Image.digest == Deployment.image_digest)
        .where(Deployment.image_digest.in_(platforms), Image.index_digest.is_not(None))
    ).all()
    for target, digest, ref, index in rows:
        conn.execute(
            update(Deployment)
            .where(Deployment.id == target)
            .values(image_digest=index, image_ref=ref or digest)
        )
    return {r.id for r in rows}


def _observed(conn: Connection) -> set[int]:
    """Deployments not explicit about their image take the digest of the rollout they began
    (analytics.observed: `Matcher.assign`); returns those whose digest changed."""
    matcher = Matcher([r for r in rollouts(conn) if r.digest])
    if not matcher:
        return set()
    earliest = min(r.at for found in matcher.by_place.values() for r in found)
    start = func.coalesce(
        Deployment.started_at, Deployment.created_at, type_=Deployment.started_at.type
    ).label("start")
    deployments = conn.execute(
        select(
            Deployment.id,
            Deployment.service_id,
            Deployment.environment_id,
            Deployment.source_id,
            Deployment.image_digest,
            Deployment.image_resolution,
            Deployment.finished_at,
            start,
        ).where(
            Deployment.kind == "app",
            Deployment.service_id.in_(sorted({s for s, _ in matcher.by_place})),
            start >= earliest - SLACK,  # no deployment runs longer
        )
    ).all()
    assigned = matcher.assign(deployments)
    updates, changed = [], set()
    for d in deployments:
        rollout = assigned.get(d.id)
        if rollout is None or d.image_resolution not in ("none", "tag", "revision"):
            continue
        updates.append({"target": d.id, "digest": rollout.digest, "how": "observed"})
        if rollout.digest != d.image_digest:
            changed.add(d.id)
    if updates:
        conn.execute(
            update(Deployment)
            .where(Deployment.id == bindparam("target"))
            .values(image_digest=bindparam("digest"), image_resolution=bindparam("how")),
            updates,
        )
    return changed


def _reopen_late(
    conn: Connection, after: datetime | None, revised: set[str]
) -> dict[int, str | None]:
    """Make deployments resolved by tag or revision pending again when image data changed at or
    after `after` may resolve them otherwise: a tag history entry of the reference they name, seen
    by the time they started (a sync that failed on a repository's tags resolved them by
    revision), or an image built from the commit they deployed (an image synced since, or one
    whose revision this derive has just read from its tag: `revised`, commits). Returns their ids
    with the digest they had."""
    if after is None:
        return {}
    start = func.coalesce(Deployment.started_at, Deployment.created_at)
    late_tag = (
        select(ImageTag.id)
        .where(
            ImageTag.changed_at >= after,
            Deployment.image_ref == ImageTag.repository + ":" + ImageTag.tag,
            ImageTag.seen_at <= start,
        )
        .exists()
    )
    # the late references and revisions first (each read once, a small set): a deployment naming
    # none of them is passed over by a lookup, not by a scan of the late tags per deployment (a
    # late revision needs nothing more: the image it came from is late)
    resolved = select(Deployment.id, Deployment.image_digest).where(
        Deployment.image_resolution.in_(("tag", "revision"))
    )
    late = or_(
        and_(Deployment.image_ref.in_(_late_refs(after)), late_tag),
        Deployment.sha.in_(_late_revisions(after)),
    )
    reopened: dict[int, str | None] = dict(conn.execute(resolved.where(late)).all())
    shas = sorted(revised)
    for first in range(0, len(shas), 500):
        part = resolved.where(Deployment.sha.in_(shas[first : first + 500]))
        reopened.update(conn.execute(part).all())
    ids = sorted(reopened)
    for first in range(0, len(ids), 500):
        conn.execute(
            update(Deployment)
            .where(Deployment.id.in_(ids[first : first + 500]))
            .values(image_digest=None, image_resolution="none")
        )
    return reopened


def _late_refs(after: datetime) -> Select[Any]:
    """The image references (`repo:tag`) whose tag history was written at or after `after`."""
    return select(ImageTag.repository + ":" + ImageTag.tag).where(ImageTag.changed_at >= after)


def _late_revisions(after: datetime) -> Select[Any]:
    """The commits of the images written at or after `after`."""
    return select(Image.revision).where(Image.changed_at >= after, Image.revision.is_not(None))


def _redigested(conn: Connection, before: dict[int, str | None]) -> set[int]:
    """Of the deployments in `before` (id -> digest), those whose digest is now another."""
    ids = sorted(before)
    now: dict[int, str | None] = {}
    for first in range(0, len(ids), 500):
        query = select(Deployment.id, Deployment.image_digest)
        rows = conn.execute(query.where(Deployment.id.in_(ids[first : first + 500])))
        now.update((d, digest) for d, digest in rows)
    return {d for d, digest in now.items() if digest != before[d]}


def _unchain(conn: Connection, deployment_ids: set[int]) -> None:
    """Forget the derived links of deployments whose image changed: derive re-derives them."""
    ids = sorted(deployment_ids)
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        conn.execute(delete(DeploymentChange).where(DeploymentChange.deployment_id.in_(part)))
        conn.execute(delete(DeploymentChain).where(DeploymentChain.deployment_id.in_(part)))


def _revisions_from_tags(conn: Connection, pattern: re.Pattern[str]) -> dict[str, set[str]]:
    """Fill the revision of images whose tag names a commit of their service's repository;
    returns revision -> the digests it was given. Their `changed_at` stays the sync's: what a
    revision read here changes is reopened by this derive (`_reopen_late`), and a later derive
    must not take these images for late data and re-resolve their deployments again."""
    rows = conn.execute(
        select(Image.digest, ImageTag.tag, Service.repo_id)
        .join(ImageTag, ImageTag.digest == Image.digest)
        .join(ImageRepository, ImageRepository.repository == Image.repository)
        .join(Service, Service.id == ImageRepository.service_id)
        .where(Image.revision.is_(None), Service.repo_id.is_not(None))
    ).all()
    wanted: dict[tuple[Any, str], set[str]] = defaultdict(set)  # (repo, short sha) -> digests
    for digest, tag, repo_id in rows:
        match = pattern.match(tag)
        if match:
            wanted[(repo_id, match.group("sha"))].add(digest)
    per_repo: dict[Any, dict[str, set[str]]] = defaultdict(dict)
    for (repo_id, short), digests in wanted.items():
        per_repo[repo_id][short] = digests
    by_revision: dict[str, set[str]] = defaultdict(set)
    for repo_id, shorts in per_repo.items():
        query = select(Commit.sha).where(Commit.repo_id == repo_id)
        if len(shorts) <= PREFIX_RANGES:  # the commits of each prefix, a range of the index
            query = query.where(or_(*(and_(Commit.sha >= s, Commit.sha < s + "~") for s in shorts)))
        by_prefix: dict[str, list[str]] = defaultdict(list)
        for sha in conn.execute(query).scalars():
            by_prefix[sha[:7]].append(sha)
        for short, digests in shorts.items():
            matches = [sha for sha in by_prefix.get(short[:7], ()) if sha.startswith(short)]
            if len(matches) == 1:  # an unknown or ambiguous prefix names nothing
                by_revision[matches[0]] |= digests
    updates = [
        {"target": d, "revision": sha}
        for sha, digests in by_revision.items()
        for d in sorted(digests)
    ]
    if updates:
        conn.execute(
            update(Image)
            .where(Image.digest == bindparam("target"), Image.revision.is_(None))
            .values(revision=bindparam("revision"), revision_origin="tag"),
            updates,
        )
    return by_revision


def _resolvable(after: datetime | None, revised: set[str]) -> Any:
    """The pending deployments (no digest, resolved `none`) that data changed at or after `after`
    may resolve (every one when `after` is None: a first or full derive, or repository links
    changed): the deployments written since, those of a commit an image was built from or given a
    revision since (`revised`: this derive's), and those naming a reference whose tag history
    changed since (those `_reopen_late` made pending again are among them). A pending deployment
    none of these touch resolved to nothing last time from the same rows: reading it again finds
    nothing (a derive with nothing new read every pending commit-only deployment's builds: 5,162
    on the large organisation)."""
    pending = and_(
        Deployment.image_digest.is_(None),
        func.coalesce(Deployment.image_resolution, "none") == "none",
    )
    if after is None or len(revised) > LOOKUPS:
        return pending
    touched = [
        Deployment.changed_at >= after,
        Deployment.image_ref.in_(_late_refs(after)),
        Deployment.sha.in_(_late_revisions(after)),
    ]
    touched += [Deployment.sha.in_(sorted(revised))] if revised else []
    return and_(pending, or_(*touched))


def _deployment_digests(conn: Connection, pending: Any) -> int:
    """Resolve the deployments `pending` selects set-wise: by tag for those naming an image, then
    by revision; returns how many it resolved."""
    updates: list[dict[str, object]] = []
    named = conn.execute(
        select(
            Deployment.id,
            Deployment.service_id,
            Deployment.image_ref,
            Deployment.started_at,
            Deployment.created_at,
        ).where(pending, Deployment.image_ref.is_not(None))
    ).all()
    unresolved = []
    for row in named:
        digest, how = _by_tag(conn, row)
        if digest is not None:
            updates.append({"target": row.id, "digest": digest, "how": how})
        else:
            unresolved.append(row)
    names = _names(conn, unresolved)
    taken = {u["target"] for u in updates}
    for target, found in _builds_of_commit(conn, pending).items():
        if target in taken:
            continue
        repositories = _chosen(found, names.get(target))
        if len(repositories) == 1 and len(digests := found[repositories[0]]) == 1:
            updates.append({"target": target, "digest": next(iter(digests)), "how": "revision"})
    if updates:
        conn.execute(
            update(Deployment)
            .where(Deployment.id == bindparam("target"))
            .values(image_digest=bindparam("digest"), image_resolution=bindparam("how")),
            updates,
        )
    return len(updates)


def _builds_of_commit(conn: Connection, which: Any) -> dict[int, dict[str, set[str]]]:
    """Deployment id -> repository -> digests of the images (an index counts once with its
    platform images) built from the deployed commit in the repositories linked to its service,
    for the deployments `which` selects."""
    image = func.coalesce(Image.index_digest, Image.digest)
    rows = conn.execute(
        select(Deployment.id, Image.repository, image)
        .distinct()
        .join(ImageRepository, ImageRepository.service_id == Deployment.service_id)
        .join(
            Image,
            and_(Image.repository == ImageRepository.repository, Image.revision == Deployment.sha),
        )
        .where(which)
    )
    out: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for target, repository, digest in rows:
        out[target][repository].add(digest)
    return out


def _chosen(found: dict[str, set[str]], named: str | None) -> list[str]:
    """The candidate repositories holding a build: only the one the deployment names (none when
    it holds none), else all."""
    if named is not None:
        return [named] if named in found else []
    return sorted(found)


def _names(conn: Connection, rows: list[Any]) -> dict[int, str]:
    """Deployment id -> the repository its image reference names, for those of `rows` (id,
    service_id, image_ref) naming one of their service's repositories (another name, e.g. a
    host alias, says nothing about which of them)."""
    query = select(ImageRepository.service_id, ImageRepository.repository)
    owned = {(service, repository) for service, repository in conn.execute(query)}
    return {
        row.id: repository
        for row in rows
        if (repository := named_repository(row.image_ref)) is not None
        and (row.service_id, repository) in owned
    }


def named_repository(ref: str | None) -> str | None:
    """The repository an image reference names (`repo:tag`, `repo@sha256:...` or `repo`), or
    None when it names none."""
    if not ref:
        return None
    repository = ref.split("@", 1)[0]
    head, _, tag = repository.rpartition(":")
    if head and "/" not in tag:  # a tag, not a registry port
        repository = head
    return repository or None


def candidates(conn: Connection, deployment_ids: list[int]) -> dict[int, list[str]]:
    """Deployment id -> the repositories of its service holding a build of its commit, for those
    of `deployment_ids` left ambiguous by them (several repositories, none named)."""
    out: dict[int, list[str]] = {}
    for start in range(0, len(deployment_ids), 500):
        part = deployment_ids[start : start + 500]
        rows = conn.execute(
            select(Deployment.id, Deployment.service_id, Deployment.image_ref).where(
                Deployment.id.in_(part)
            )
        ).all()
        names = _names(conn, list(rows))
        for target, found in _builds_of_commit(conn, Deployment.id.in_(part)).items():
            repositories = _chosen(found, names.get(target))
            if len(repositories) > 1:
                out[target] = repositories
    return out


def _by_tag(conn: Connection, row: Any) -> tuple[str | None, str | None]:
    """The digest the deployment's tag pointed to when it started (tag history)."""
    ref = str(row.image_ref)
    if "@sha256:" in ref:
        return "sha256:" + ref.split("@sha256:", 1)[1], "explicit"
    repository, _, tag = ref.rpartition(":")
    if not repository or "/" in tag:
        return None, None
    at = row.started_at or row.created_at
    query = select(ImageTag.digest).where(ImageTag.repository == repository, ImageTag.tag == tag)
    if at is not None:
        query = query.where(ImageTag.seen_at <= at)
    digest = conn.execute(query.order_by(ImageTag.seen_at.desc()).limit(1)).scalar()
    return (digest, "tag") if digest else (None, None)


__all__ = ["ResolutionSummary", "candidates", "named_repository", "resolve_images"]
