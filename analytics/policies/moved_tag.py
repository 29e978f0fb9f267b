"""moved-tag (warn): a deployment by a tag that pointed to different images over time.

One rule for the gate and the scan: a reference by tag (`repo:tag`; `repo` alone means
`latest`) whose tag had been seen at more than one digest by the time of the check (the gate's
now, the end of the scan's period)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, select, tuple_

from analytics.policies.period import Scan, deployments, of_deployment
from analytics.policies.violation import Violation
from config.settings import PolicySettings
from warehouse.schema import ImageTag

ID = "moved-tag"
SEVERITY = "warn"
Params = PolicySettings  # `[policies.moved-tag]`: the severity only

Tag = tuple[str, str]  # (repository, tag)


def tag_of(image_ref: str) -> Tag | None:
    """The (repository, tag) an image reference names, or None for one by digest
    (`repo@sha256:...`, `sha256:...`). A reference without a tag means `latest`."""
    if "@" in image_ref or image_ref.startswith("sha256:"):
        return None
    repository, _, tag = image_ref.rpartition(":")
    if not repository or "/" in tag:  # `registry:5000/app` has a port, not a tag
        return image_ref, "latest"
    return repository, tag


def histories(conn: Connection, tags: Iterable[Tag], by: datetime) -> dict[Tag, list[str]]:
    """Each tag's digests in the order they were seen there, up to `by`: the last is where the
    tag pointed then; more than one distinct digest means the tag moved."""
    wanted = sorted(set(tags))
    found: dict[Tag, list[str]] = defaultdict(list)
    for chunk in (wanted[i : i + 500] for i in range(0, len(wanted), 500)):
        rows = conn.execute(
            select(ImageTag.repository, ImageTag.tag, ImageTag.digest)
            .where(
                tuple_(ImageTag.repository, ImageTag.tag).in_(chunk),
                ImageTag.seen_at <= by,
            )
            .order_by(ImageTag.seen_at, ImageTag.id)
        )
        for repository, tag, digest in rows:
            found[(repository, tag)].append(digest)
    return found


def moved(history: list[str]) -> bool:
    """Whether a tag's history (`histories`) holds more than one image."""
    return len(set(history)) > 1


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Deployments in the period by a tag that had been seen at more than one digest by the
    period's end."""
    by_tag = [
        (d, tag) for d in deployments(conn, scan) if d.image_ref and (tag := tag_of(d.image_ref))
    ]
    seen = histories(conn, (tag for _, tag in by_tag), scan.until)
    return [
        of_deployment(
            ID,
            SEVERITY,
            d,
            f"{d.image_ref} is a tag that pointed to different images over time: deploy by digest",
        )
        for d, tag in by_tag
        if moved(seen.get(tag, []))
    ]
