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
the deployment started), `revision` (the one image built from the deployed commit; two candidates
are ambiguous and resolve to nothing), else `none`. A platform manifest digest is recorded as its
index's digest (the image), the platform digest the source named staying in `image_ref`.

A deployment whose digest changes after its chain was derived loses its chain rows, so the next
step of `derive` re-derives that chain from it (rollbacks are detected by digest).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, select, update

from analytics.observed import SLACK, Matcher, rollouts
from warehouse.schema import (
    Commit,
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Image,
    ImageTag,
    Service,
)

DEFAULT_TAG_REVISION = r"^(?:v|sha-)?(?P<sha>[0-9a-f]{7,12}|[0-9a-f]{40})$"


@dataclass
class ResolutionSummary:
    revisions: int = 0
    deployments: int = 0


def resolve_images(
    conn: Connection, tag_revision_pattern: str = DEFAULT_TAG_REVISION
) -> ResolutionSummary:
    """Fill image revisions from tags, then digests of deployments that have none."""
    summary = ResolutionSummary()
    summary.revisions = _revisions_from_tags(conn, re.compile(tag_revision_pattern))
    changed = _platforms_to_index(conn) | _observed(conn)
    summary.deployments = len(changed) + _deployment_digests(conn)
    _unchain(conn, changed)
    return summary


def _platforms_to_index(conn: Connection) -> set[int]:
    """Deployments naming a platform manifest get its index's digest (one image, one digest)."""
    rows = conn.execute(
        select(Deployment.id, Deployment.image_digest, Deployment.image_ref, Image.index_digest)
        .join(Image, Image.digest == Deployment.image_digest)
        .where(Image.index_digest.is_not(None))
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


def _unchain(conn: Connection, deployment_ids: set[int]) -> None:
    """Forget the derived links of deployments whose image changed: derive re-derives them."""
    ids = sorted(deployment_ids)
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        conn.execute(delete(DeploymentChange).where(DeploymentChange.deployment_id.in_(part)))
        conn.execute(delete(DeploymentChain).where(DeploymentChain.deployment_id.in_(part)))


def _revisions_from_tags(conn: Connection, pattern: re.Pattern[str]) -> int:
    rows = conn.execute(
        select(Image.digest, ImageTag.tag, Service.repo_id)
        .join(ImageTag, ImageTag.digest == Image.digest)
        .join(Service, Service.image_repository == Image.repository)
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
        by_prefix: dict[str, list[str]] = defaultdict(list)
        for sha in conn.execute(select(Commit.sha).where(Commit.repo_id == repo_id)).scalars():
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
    return len(updates)


def _deployment_digests(conn: Connection) -> int:
    """Resolve pending deployments set-wise: by tag for those naming an image, then by revision."""
    pending = and_(
        Deployment.image_digest.is_(None),
        func.coalesce(Deployment.image_resolution, "none") == "none",
    )
    updates: list[dict[str, object]] = []
    named = conn.execute(
        select(
            Deployment.id, Deployment.image_ref, Deployment.started_at, Deployment.created_at
        ).where(pending, Deployment.image_ref.is_not(None))
    ).all()
    for row in named:
        digest, how = _by_tag(conn, row)
        if digest is not None:
            updates.append({"target": row.id, "digest": digest, "how": how})
    # the one image (an index counts once with its platform images) built from the deployed commit
    image = func.coalesce(Image.index_digest, Image.digest)
    single = (
        select(Image.revision, Image.repository, func.min(image).label("digest"))
        .where(Image.revision.is_not(None))
        .group_by(Image.revision, Image.repository)
        .having(func.count(func.distinct(image)) == 1)
        .subquery()
    )
    taken = {u["target"] for u in updates}
    for target, digest in conn.execute(
        select(Deployment.id, single.c.digest)
        .join(Service, Service.id == Deployment.service_id)
        .join(
            single,
            and_(
                single.c.revision == Deployment.sha, single.c.repository == Service.image_repository
            ),
        )
        .where(pending)
    ):
        if target not in taken:
            updates.append({"target": target, "digest": digest, "how": "revision"})
    if updates:
        conn.execute(
            update(Deployment)
            .where(Deployment.id == bindparam("target"))
            .values(image_digest=bindparam("digest"), image_resolution=bindparam("how")),
            updates,
        )
    return len(updates)


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


__all__ = ["ResolutionSummary", "resolve_images"]
