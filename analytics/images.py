"""Image resolution (DESIGN.md section 3): which commit built an image, and which digest a
deployment rolled out, recorded with how it was found.

An image's `revision` (source commit) here comes from the tag naming convention
(`[metrics] tag_revision_pattern`: a tag that is the commit's full or 7-12 character short sha,
optionally prefixed `v` or `sha-`), matched against the commits of the service whose image
repository it is. Labels, provenance and the pushing build (stronger evidence) are set by the
collectors that see them and are never overwritten here.

A deployment without a digest gets one, in order: `tag` (its image reference's tag, through the
tag history as it was when the deployment started), `revision` (the one image built from the
deployed commit; two candidates are ambiguous and resolve to nothing), else `none`. `explicit`
and `observed` digests come from collectors and are kept.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

from warehouse.schema import Commit, Deployment, Image, ImageTag, Service

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
    summary.deployments = _deployment_digests(conn)
    return summary


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
    written = 0
    for (repo_id, short), digests in wanted.items():
        shas = (
            conn.execute(
                select(Commit.sha)
                .where(Commit.repo_id == repo_id, Commit.sha.startswith(short))
                .limit(2)
            )
            .scalars()
            .all()
        )
        if len(shas) != 1:  # unknown or ambiguous prefix
            continue
        written += conn.execute(
            update(Image)
            .where(Image.digest.in_(sorted(digests)), Image.revision.is_(None))
            .values(revision=shas[0], revision_origin="tag")
        ).rowcount
    return written


def _deployment_digests(conn: Connection) -> int:
    pending = conn.execute(
        select(
            Deployment.id,
            Deployment.sha,
            Deployment.image_ref,
            Deployment.started_at,
            Deployment.created_at,
            Service.image_repository,
        )
        .join(Service, Service.id == Deployment.service_id)
        .where(
            Deployment.image_digest.is_(None),
            func.coalesce(Deployment.image_resolution, "none") == "none",
        )
    ).all()
    resolved = 0
    for row in pending:
        digest, how = _by_tag(conn, row) if row.image_ref else (None, None)
        if digest is None and row.sha:
            digest, how = _by_revision(conn, row.sha, row.image_repository)
        if digest is not None:
            conn.execute(
                update(Deployment)
                .where(Deployment.id == row.id)
                .values(image_digest=digest, image_resolution=how)
            )
            resolved += 1
    return resolved


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


def _by_revision(
    conn: Connection, sha: str, repository: str | None
) -> tuple[str | None, str | None]:
    """The one image built from `sha` (platform images count as their index)."""
    query = (
        select(func.coalesce(Image.index_digest, Image.digest))
        .where(Image.revision == sha)
        .distinct()
    )
    if repository:
        query = query.where(Image.repository == repository)
    digests = conn.execute(query.limit(2)).scalars().all()
    return (digests[0], "revision") if len(digests) == 1 else (None, None)


__all__ = ["ResolutionSummary", "resolve_images"]
