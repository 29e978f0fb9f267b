"""The promotion gate (DESIGN.md section 5): may this image go to that environment now?

Pre-deployment policies, evaluated against the warehouse:
- untested-image (error): the digest had no successful deployment, finished before now (and
  soaked `min_soak`), in the environment before the target on the promotion path;
- rebuilt-image (error): the upstream environment ran a different digest built from the same
  commit (build once, deploy many);
- unpinned-image (warn): the reference does not resolve to a digest;
- moved-tag (warn): the tag used pointed to different digests over time;
- non-release-ref (error, when a ref is given and the target is production): the ref is not the
  default branch, a tag, or an allowed pattern (`allowed_refs`, default release/*, hotfix/*).

Any error denies; warnings are reported and allow. A service the warehouse does not know cannot be
decided (the caller exits 2, failing closed unless told to fail open).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from analytics.observed import canonical
from warehouse.schema import (
    Deployment,
    DeploymentChain,
    Environment,
    Image,
    ImageTag,
    Repo,
    Service,
)

SEMVER_TAG = re.compile(r"^(refs/tags/.+|v?\d+\.\d+(\.\d+)?([-+].*)?)$")


@dataclass(frozen=True)
class GatePolicy:
    """Gate parameters (`[policies.<id>]` in the config)."""

    min_soak: timedelta = timedelta(0)
    allowed_refs: tuple[str, ...] = ("release/*", "hotfix/*")

    @classmethod
    def from_settings(cls, policies: dict[str, dict[str, Any]]) -> GatePolicy:
        untested = policies.get("untested-image", {})
        refs = policies.get("non-release-ref", {})
        soak = untested.get("min_soak_minutes", 0)
        return cls(
            timedelta(minutes=float(soak)), tuple(refs.get("allowed_refs", cls.allowed_refs))
        )


@dataclass
class Reason:
    policy: str
    severity: str
    message: str


@dataclass
class GateDecision:
    """The JSON contract of `cdmetrics gate --format json`."""

    decision: str  # allow | deny | error
    service: str
    image: str
    digest: str | None
    environment: str
    reasons: list[Reason] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class CannotDecide(Exception):
    """The gate cannot decide (unknown service or environment): exit 2 unless failing open."""


def error_decision(service: str, image: str, environment: str, message: str) -> GateDecision:
    """The decision `error` (cannot decide) with `message` as its one reason."""
    return GateDecision(
        "error", service, image, None, environment, [Reason("gate", "error", message)]
    )


def evaluate(
    conn: Connection,
    service: str,
    image: str,
    environment: str,
    promotion_path: list[str],
    ref: str | None = None,
    policy: GatePolicy | None = None,
    now: datetime | None = None,
) -> GateDecision:
    """Evaluate the pre-deployment policies for deploying `image` of `service` to `environment`."""
    policy = policy or GatePolicy()
    now = now or datetime.now(UTC)
    service_row = conn.execute(
        select(Service.id, Service.repo_id, Service.image_repository).where(Service.name == service)
    ).first()
    if service_row is None:
        raise CannotDecide(f"unknown service {service!r}: sync its source first, or check the name")
    tier = conn.execute(select(Environment.tier).where(Environment.name == environment)).scalar()
    if tier is None and environment not in promotion_path:
        raise CannotDecide(
            f"unknown environment {environment!r}; known: {', '.join(promotion_path)}"
        )
    decision = GateDecision("allow", service, image, None, environment)
    reasons = decision.reasons
    digest = _resolve(conn, image, now, reasons)
    if digest is not None:  # a platform manifest is its index's image
        digest = canonical(conn, [digest])[digest]
    decision.digest = digest
    upstream = _upstream(environment, promotion_path)
    if upstream is not None:
        if digest is None:
            reasons.append(
                Reason(
                    "untested-image",
                    "error",
                    f"{image} does not resolve to a digest, so it cannot be shown to have passed "
                    f"{upstream}: deploy by digest (repo@sha256:...)",
                )
            )
        else:
            _untested(conn, service_row.id, digest, upstream, environment, now, policy, reasons)
            _rebuilt(conn, service_row.id, digest, upstream, reasons)
    if ref is not None and (tier == "production" or environment == promotion_path[-1]):
        _release_ref(conn, service_row.repo_id, ref, policy, reasons)
    if any(r.severity == "error" for r in reasons):
        decision.decision = "deny"
    return decision


def _upstream(environment: str, path: list[str]) -> str | None:
    return (
        path[path.index(environment) - 1]
        if environment in path and path.index(environment) > 0
        else None
    )


def _resolve(conn: Connection, image: str, now: datetime, reasons: list[Reason]) -> str | None:
    """The digest of an image reference (a tag through its history), with unpinned-image and
    moved-tag warnings."""
    if "@" in image:
        return image.split("@", 1)[1]
    if image.startswith("sha256:"):
        return image
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = image, "latest"
    history = conn.execute(
        select(ImageTag.digest, ImageTag.seen_at)
        .where(ImageTag.repository == repository, ImageTag.tag == tag, ImageTag.seen_at <= now)
        .order_by(ImageTag.seen_at)
    ).all()
    if not history:
        reasons.append(
            Reason(
                "unpinned-image",
                "warn",
                f"{image} is a tag the warehouse has never seen: deploy by digest (repo@sha256:...)",
            )
        )
        return None
    if len({d for d, _ in history}) > 1:
        reasons.append(
            Reason(
                "moved-tag",
                "warn",
                f"tag {tag} of {repository} pointed to {len({d for d, _ in history})} digests over "
                f"time; resolved to {history[-1][0]} — deploy by digest to be sure",
            )
        )
    return str(history[-1][0])


def _ran(
    conn: Connection, service_id: int, environment: str, before: datetime
) -> list[tuple[str | None, datetime]]:
    index = func.coalesce(Image.index_digest, Deployment.image_digest)
    return [
        (d, f)
        for d, f in conn.execute(
            select(index, DeploymentChain.finished_at)
            .select_from(DeploymentChain)
            .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
            .join(Environment, Environment.id == DeploymentChain.environment_id)
            .outerjoin(Image, Image.digest == Deployment.image_digest)
            .where(
                DeploymentChain.service_id == service_id,
                Environment.name == environment,
                DeploymentChain.finished_at < before,
            )
        )
    ]


def _untested(
    conn: Connection,
    service_id: int,
    digest: str,
    upstream: str,
    environment: str,
    now: datetime,
    policy: GatePolicy,
    reasons: list[Reason],
) -> None:
    index = (
        conn.execute(select(Image.index_digest).where(Image.digest == digest)).scalar() or digest
    )
    passed = [
        f
        for d, f in _ran(conn, service_id, upstream, now)
        if d == index and f <= now - policy.min_soak
    ]
    if not passed:
        soak = f" and soak {policy.min_soak}" if policy.min_soak else ""
        reasons.append(
            Reason(
                "untested-image",
                "error",
                f"{digest} never ran successfully in {upstream}: deploy {digest[:19]} to {upstream} "
                f"first{soak}, then promote it to {environment}",
            )
        )


def _rebuilt(
    conn: Connection, service_id: int, digest: str, upstream: str, reasons: list[Reason]
) -> None:
    revision = conn.execute(select(Image.revision).where(Image.digest == digest)).scalar()
    if revision is None:
        return
    built = dict(
        conn.execute(select(Image.digest, Image.revision).where(Image.revision == revision)).all()
    )
    upstream_same_commit = {
        d
        for d, _ in _ran(conn, service_id, upstream, datetime.max.replace(tzinfo=UTC))
        if d in built and d != digest
    }
    if upstream_same_commit:
        other = sorted(upstream_same_commit)[0]
        reasons.append(
            Reason(
                "rebuilt-image",
                "error",
                f"{digest[:19]} was rebuilt from commit {revision[:12]}, but {upstream} ran "
                f"{other[:19]}: build once, deploy many — promote {other} instead",
            )
        )


def _release_ref(
    conn: Connection, repo_id: int | None, ref: str, policy: GatePolicy, reasons: list[Reason]
) -> None:
    default = (
        conn.execute(select(Repo.default_branch).where(Repo.id == repo_id)).scalar()
        if repo_id
        else None
    )
    name = ref.removeprefix("refs/heads/")
    if (
        name == (default or "main")
        or SEMVER_TAG.match(ref)
        or any(fnmatch.fnmatch(name, p) for p in policy.allowed_refs)
    ):
        return
    reasons.append(
        Reason(
            "non-release-ref",
            "error",
            f"{ref} is not the default branch ({default or 'main'}), a tag or an allowed ref "
            f"({', '.join(policy.allowed_refs)}): release from {default or 'main'} or a release branch",
        )
    )
