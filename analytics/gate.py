"""The promotion gate (DESIGN.md section 5): may this image go to that environment now?

Pre-deployment policies, evaluated against the warehouse:
- untested-image (error): the digest had no successful deployment, finished before now (and
  soaked `min_soak_minutes`), in every environment before the target on the promotion path (or the
  adjacent one, `require = "previous"`): analytics.policies.untested_image, the scan's predicate;
- rebuilt-image (error): the upstream environment ran a different digest built from the same
  commit (build once, deploy many), analytics.policies.rebuilt_image as in the scan;
- unpinned-image (warn): the reference does not resolve to a digest;
- moved-tag (warn): the tag used pointed to different digests over time;
- non-release-ref (error, when a ref is given and the target is production: its tier, or the
  last environment of the promotion path): the ref is not the default branch, a tag, or an
  allowed pattern (`allowed_refs`, default release/*, hotfix/*), analytics.policies.non_release_ref
  as in the scan;
- quality-gate-failed (error, when the target is what non-release-ref guards): the image's commit's
  latest SonarQube analysis on an allowed branch, made before now, failed the quality gate;
  quality-gate-missing (warn, when enabled): there is no such analysis, or the image's commit is
  unknown. analytics.policies.quality_gate decides, as in the scan; the JSON carries the analysis
  in a `quality_gate` block (null when the quality gate was not evaluated).

The digest is canonicalised first (a platform manifest is its index's image), as in the scan.

Each reason has its policy's severity (`[policies.<id>] severity` raises or lowers it, as in the
scan); any error denies; warnings are reported and allow. A service the warehouse does not know
cannot be decided (the caller exits 2, failing closed unless told to fail open).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, String, literal, select

from analytics.observed import canonical
from analytics.policies import (
    moved_tag,
    non_release_ref,
    quality_gate,
    quality_gate_failed,
    quality_gate_missing,
    rebuilt_image,
    unpinned_image,
    untested_image,
)
from analytics.promotion import built_from, revisions, stage_of, successful_runs, upstream_of
from analytics.scope import name_problems
from config.settings import PoliciesSettings
from warehouse.schema import (
    Environment,
    Repo,
    Service,
)

# the policies the gate evaluates, in the order its JUnit output lists them (non-release-ref only
# when a ref is given)
GATE_POLICIES = (
    untested_image.ID,
    rebuilt_image.ID,
    unpinned_image.ID,
    moved_tag.ID,
    non_release_ref.ID,
    quality_gate_failed.ID,
    quality_gate_missing.ID,
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
    # the SonarQube analysis that decided (analytics.policies.quality_gate.Verdict.as_json) and
    # `checked`, the quality-gate policies evaluated; None when the target is not guarded
    quality_gate: dict[str, Any] | None = None

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
    policy: PoliciesSettings | None = None,
    now: datetime | None = None,
) -> GateDecision:
    """The decision on deploying `image` of `service` to `environment` now, with its reasons;
    `policy` is the `[policies]` settings."""
    policy = policy or PoliciesSettings()
    now = now or datetime.now(UTC)
    service_row = conn.execute(
        select(Service.id, Service.repo_id, Service.image_repository).where(Service.name == service)
    ).first()
    tier = conn.execute(select(Environment.tier).where(Environment.name == environment)).scalar()
    if service_row is None or (tier is None and environment not in promotion_path):
        problem = name_problems(
            conn, services=[service], environments=[environment], promotion_path=promotion_path
        )
        raise CannotDecide(problem or f"unknown service {service!r}")
    decision = GateDecision("allow", service, image, None, environment)
    reasons = decision.reasons
    digest = _resolve(conn, image, now, reasons)
    if digest is not None:  # a platform manifest is its index's image
        digest = canonical(conn, [digest])[digest]
    decision.digest = digest
    stage = stage_of(conn, environment, promotion_path)  # a production region stands for production
    upstream = next(iter(upstream_of(stage, promotion_path, "previous")), None)
    if upstream is not None:
        if digest is None:
            reasons.append(
                Reason(
                    untested_image.ID,
                    untested_image.SEVERITY,
                    f"{image} does not resolve to a digest, so it cannot be shown to have passed "
                    f"{upstream}: deploy by digest (repo@sha256:...)",
                )
            )
        else:
            _untested(conn, service_row.id, digest, stage, promotion_path, now, policy, reasons)
            _rebuilt(conn, service_row.id, digest, upstream, now, reasons)
    if ref is not None and non_release_ref.guards(tier, stage, promotion_path):
        _release_ref(conn, service_row.repo_id, ref, policy, reasons)
    if non_release_ref.guards(tier, stage, promotion_path):
        decision.quality_gate = _quality_gate(conn, digest, now, policy, reasons)
    for r in reasons:  # `[policies.<id>] severity` raises or lowers a policy, as in the scan
        r.severity = policy.of(r.policy).severity or r.severity
    if any(r.severity == "error" for r in reasons):
        decision.decision = "deny"
    return decision


def _resolve(conn: Connection, image: str, now: datetime, reasons: list[Reason]) -> str | None:
    """The digest of an image reference (a tag through its history), with unpinned-image and
    moved-tag warnings."""
    tag = moved_tag.tag_of(image)
    if tag is None:
        return image.split("@", 1)[1] if "@" in image else image
    repository, name = tag
    history = moved_tag.histories(conn, [tag], now).get(tag, [])
    if not history:
        reasons.append(
            Reason(
                unpinned_image.ID,
                unpinned_image.SEVERITY,
                f"{image} is a tag the warehouse has never seen: deploy by digest (repo@sha256:...)",
            )
        )
        return None
    current = history[-1]
    if moved_tag.moved(history):
        reasons.append(
            Reason(
                moved_tag.ID,
                moved_tag.SEVERITY,
                f"tag {name} of {repository} pointed to {len(set(history))} digests over "
                f"time; resolved to {current} — deploy by digest to be sure",
            )
        )
    return current


def _untested(
    conn: Connection,
    service_id: int,
    digest: str,
    environment: str,
    path: list[str],
    now: datetime,
    policy: PoliciesSettings,
    reasons: list[Reason],
) -> None:
    params = policy.untested_image
    # the runs of this image only, as the scan reads the runs of its period's images
    runs = successful_runs(conn, [service_id], path, _one(digest), by_revision=False)
    skipped = untested_image.skipped_environments(
        runs, service_id, digest, environment, now, path, params
    )
    if skipped:
        message = untested_image.message(digest, environment, skipped, params.min_soak_minutes)
        reasons.append(Reason(untested_image.ID, untested_image.SEVERITY, message))


def _rebuilt(
    conn: Connection,
    service_id: int,
    digest: str,
    upstream: str,
    now: datetime,
    reasons: list[Reason],
) -> None:
    revision = revisions(conn, [digest]).get(digest)
    if revision is None:  # no commit known: no rebuild to find
        return
    # the runs upstream of the images built from its commit only, as the scan reads them
    runs = successful_runs(conn, [service_id], [upstream], built_from(_one(revision)))
    other = rebuilt_image.rebuilt_from(runs, service_id, digest, revision, upstream, now)
    if other:
        message = rebuilt_image.message(digest, revision, upstream, other)
        reasons.append(Reason(rebuilt_image.ID, rebuilt_image.SEVERITY, message))


def _one(value: str) -> Select[Any]:
    """A select of the one value `value` (the images or commits `successful_runs` reads from)."""
    return select(literal(value, String))


def _release_ref(
    conn: Connection,
    repo_id: int | None,
    ref: str,
    policy: PoliciesSettings,
    reasons: list[Reason],
) -> None:
    default = (
        conn.execute(select(Repo.default_branch).where(Repo.id == repo_id)).scalar()
        if repo_id
        else None
    )
    allowed = policy.non_release_ref.allowed_refs
    if non_release_ref.allowed(ref, default, allowed):
        return
    reasons.append(
        Reason(
            non_release_ref.ID,
            non_release_ref.SEVERITY,
            f"{ref} is not the default branch ({default or 'main'}), a tag or an allowed ref "
            f"({', '.join(allowed)}): release from {default or 'main'} or a release branch",
        )
    )


def _quality_gate(
    conn: Connection,
    digest: str | None,
    now: datetime,
    policy: PoliciesSettings,
    reasons: list[Reason],
) -> dict[str, Any]:
    """The `quality_gate` block of a decision on promoting `digest` now, adding the reasons of
    quality-gate-failed and (when enabled) quality-gate-missing."""
    commit = revisions(conn, [digest]).get(digest) if digest else None
    failed, missing = policy.quality_gate_failed, policy.quality_gate_missing
    analyses = quality_gate.analyses_of(conn, [commit]) if commit else {}
    verdict = quality_gate.verdict(analyses.get(commit or "", []), now, failed)
    if commit and verdict.status == quality_gate.FAILED:
        message = quality_gate.failed_message(commit, verdict)
        reasons.append(Reason(quality_gate_failed.ID, quality_gate_failed.SEVERITY, message))
    checked = [quality_gate_failed.ID]
    if missing.enabled:
        checked.append(quality_gate_missing.ID)
        seen = quality_gate.verdict(analyses.get(commit or "", []), now, missing)
        if seen.status == quality_gate.MISSING:
            message = quality_gate.missing_message(commit)
            reasons.append(Reason(quality_gate_missing.ID, quality_gate_missing.SEVERITY, message))
    return {**verdict.as_json(commit), "checked": checked}
