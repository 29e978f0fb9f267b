"""Policy scan (DESIGN.md section 5, docs/POLICIES.md): every policy over a period, stored in
`policy_violation` with when it was first seen, so a report can say what is new.

Each policy is a function of the connection and the scan returning violations; parameters come
from `[policies.<id>]`. Deployment policies look at successful deployments that finished in the
period; merge-request policies at MRs merged in it; branch policies at the state at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from analytics.images import candidates
from analytics.observed import canonical, unrecorded
from analytics.promotion import (
    rebuilt_from,
    rebuilt_message,
    release_ref_allowed,
    skipped_environments,
    stage_name,
    successful_runs,
    untested_message,
    upstream_of,
)
from analytics.unmerged import unmerged_branches
from config.settings import PoliciesSettings
from warehouse.schema import (
    Branch,
    Commit,
    CommitParent,
    Deployment,
    Environment,
    Image,
    ImageTag,
    MergeRequest,
    MrCommit,
    Pipeline,
    PolicyViolation,
    Repo,
    Service,
)
from warehouse.upsert import upsert

SEVERITIES = ("error", "warn", "info")


@dataclass
class Violation:
    """One row of `cdmetrics policy scan --format json`."""

    policy: str
    severity: str
    service: str | None
    environment: str | None
    subject: str
    message: str
    url: str | None = None
    occurred_at: datetime | None = None  # when the offending event happened
    first_seen: datetime | None = None  # when a scan first found it (set by `store`)

    def as_json(self) -> dict[str, Any]:
        """The violation as JSON, times as ISO 8601."""
        return {
            **asdict(self),
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
        }


@dataclass
class Scan:
    since: datetime
    until: datetime
    promotion_path: list[str]
    params: PoliciesSettings = field(default_factory=PoliciesSettings)


Policy = Callable[[Connection, Scan], list[Violation]]
POLICIES: dict[str, tuple[str, Policy]] = {}


def policy(policy_id: str, severity: str) -> Callable[[Policy], Policy]:
    def register(check: Policy) -> Policy:
        POLICIES[policy_id] = (severity, check)
        return check

    return register


# -- deployments -----------------------------------------------------------------------------


def _deployments(conn: Connection, scan: Scan, environments: list[str] | None = None) -> list[Any]:
    query = (
        select(
            Deployment.id,
            Deployment.source_id,
            Deployment.external_id,
            Deployment.service_id,
            Service.name.label("service"),
            Environment.name.label("environment"),
            Environment.position,
            Environment.tier,
            Deployment.image_digest,
            Deployment.image_ref,
            Deployment.sha,
            Deployment.ref,
            Deployment.url,
            Deployment.kind,
            Deployment.schema_version,
            func.coalesce(
                Deployment.started_at, Deployment.created_at, Deployment.finished_at
            ).label("start"),
            Deployment.finished_at,
        )
        .join(Service, Service.id == Deployment.service_id)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(
            Deployment.status == "success",
            Deployment.finished_at >= scan.since,
            Deployment.finished_at < scan.until,
        )
    )
    rows = conn.execute(query.order_by(Deployment.finished_at, Deployment.id)).all()
    path = scan.promotion_path
    staged = [_Staged(r, stage_name(r.environment, r.position, path)) for r in rows]
    return [d for d in staged if environments is None or d.stage in environments]


class _Staged:
    """A deployment row with `stage`: the promotion-path name its environment stands for (a
    production region stands where production does)."""

    def __init__(self, row: Any, stage: str) -> None:
        self._row, self.stage = row, stage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def _subject(d: Any) -> str:
    return f"deployment {d.source_id}:{d.external_id}"


@policy("untested-image", "error")
def untested_image(conn: Connection, scan: Scan) -> list[Violation]:
    """Application deployments to an environment after the first of the promotion path whose image
    skipped an environment before it (analytics.promotion.skipped_environments, as the gate)."""
    params, path = scan.params.untested_image, scan.promotion_path
    deployments = [d for d in _deployments(conn, scan, path[1:]) if d.kind == "app"]
    images = canonical(conn, [d.image_digest for d in deployments if d.image_digest])
    runs = successful_runs(conn, {d.service_id for d in deployments}, path[:-1])
    found = []
    for d in deployments:
        image = images[d.image_digest] if d.image_digest else f"commit:{d.sha}"
        skipped = skipped_environments(runs, d.service_id, image, d.stage, d.start, path, params)
        if skipped:
            message = untested_message(image, d.environment, skipped, params.min_soak_minutes)
            found.append(
                Violation(
                    "untested-image",
                    "error",
                    d.service,
                    d.environment,
                    _subject(d),
                    message,
                    d.url,
                    occurred_at=d.finished_at,
                )
            )
    return found


@policy("rebuilt-image", "error")
def rebuilt_image(conn: Connection, scan: Scan) -> list[Violation]:
    """Deployments to an environment after the first of the promotion path whose image was rebuilt
    from a commit the environment before it ran as another image (analytics.promotion, as the
    gate), by the deployment's finish."""
    path = scan.promotion_path
    deployments = [d for d in _deployments(conn, scan, path[1:]) if d.image_digest]
    digests = {d.image_digest for d in deployments}
    images = canonical(conn, digests)
    revisions = dict(
        conn.execute(
            select(Image.digest, Image.revision).where(Image.digest.in_(digests or {""}))
        ).all()
    )
    runs = successful_runs(conn, {d.service_id for d in deployments}, path[:-1])
    found = []
    for d in deployments:
        upstream, image, revision = (
            upstream_of(d.stage, path, "previous")[0],
            images[d.image_digest],
            revisions.get(d.image_digest),
        )
        other = rebuilt_from(runs, d.service_id, image, revision, upstream, d.finished_at)
        if revision and other:
            found.append(
                Violation(
                    "rebuilt-image",
                    "error",
                    d.service,
                    d.environment,
                    _subject(d),
                    rebuilt_message(image, revision, upstream, other),
                    d.url,
                    occurred_at=d.finished_at,
                )
            )
    return found


@policy("unpinned-image", "warn")
def unpinned_image(conn: Connection, scan: Scan) -> list[Violation]:
    found = [d for d in _deployments(conn, scan) if d.image_digest is None and d.kind == "app"]
    ambiguous = candidates(conn, [d.id for d in found])
    return [
        Violation(
            "unpinned-image",
            "warn",
            d.service,
            d.environment,
            _subject(d),
            f"no digest could be resolved for this deployment ({d.image_ref or 'no image reference'})"
            + (
                f": its commit was built in {', '.join(ambiguous[d.id])} and it names none of them"
                if d.id in ambiguous
                else ""
            )
            + ": deploy by digest (repo@sha256:...)",
            d.url,
            occurred_at=d.finished_at,
        )
        for d in found
    ]


@policy("moved-tag", "warn")
def moved_tag(conn: Connection, scan: Scan) -> list[Violation]:
    moved = {
        (r, t)
        for r, t in conn.execute(
            select(ImageTag.repository, ImageTag.tag)
            .group_by(ImageTag.repository, ImageTag.tag)
            .having(func.count(func.distinct(ImageTag.digest)) > 1)
        )
    }
    found = []
    for d in _deployments(conn, scan):
        if d.image_ref and "@" not in d.image_ref and tuple(d.image_ref.rsplit(":", 1)) in moved:
            found.append(
                Violation(
                    "moved-tag",
                    "warn",
                    d.service,
                    d.environment,
                    _subject(d),
                    f"{d.image_ref} is a tag that pointed to different images over time: deploy by digest",
                    d.url,
                    occurred_at=d.finished_at,
                )
            )
    return found


@policy("non-release-ref", "error")
def non_release_ref(conn: Connection, scan: Scan) -> list[Violation]:
    allowed = scan.params.non_release_ref.allowed_refs
    defaults = dict(
        conn.execute(
            select(Service.id, Repo.default_branch).join(Repo, Repo.id == Service.repo_id)
        ).all()
    )
    found = []
    for d in _deployments(conn, scan):
        if d.tier != "production" or not d.ref:
            continue
        if release_ref_allowed(d.ref, defaults.get(d.service_id), allowed):
            continue
        found.append(
            Violation(
                "non-release-ref",
                "error",
                d.service,
                d.environment,
                _subject(d),
                f"production was deployed from {d.ref}: release from the default branch, a tag or "
                f"{', '.join(allowed)}",
                d.url,
                occurred_at=d.finished_at,
            )
        )
    return found


@policy("schema-skipped-env", "error")
def schema_skipped_env(conn: Connection, scan: Scan) -> list[Violation]:
    found = []
    for upstream, env in zip(scan.promotion_path, scan.promotion_path[1:], strict=False):
        schema = [d for d in _deployments(conn, scan, [env]) if d.kind == "schema"]
        for d in schema:
            ran = conn.execute(
                select(func.count())
                .select_from(Deployment)
                .join(Environment, Environment.id == Deployment.environment_id)
                .where(
                    Deployment.service_id == d.service_id,
                    Deployment.kind == "schema",
                    Deployment.status == "success",
                    Environment.name == upstream,
                    Deployment.schema_version == d.schema_version,
                    Deployment.finished_at <= d.start,
                )
            ).scalar_one()
            if not ran:
                found.append(
                    Violation(
                        "schema-skipped-env",
                        "error",
                        d.service,
                        env,
                        _subject(d),
                        f"migration {d.schema_version} ran in {env} but never in {upstream}: "
                        f"apply it to {upstream} first",
                        d.url,
                        occurred_at=d.finished_at,
                    )
                )
    return found


# -- merge requests and branches -------------------------------------------------------------


def _merged(conn: Connection, scan: Scan) -> list[Any]:
    return list(
        conn.execute(
            select(
                MergeRequest.repo_id,
                MergeRequest.iid,
                MergeRequest.head_sha,
                MergeRequest.merged_at,
                MergeRequest.approvals,
                MergeRequest.web_url,
                Service.name.label("service"),
            )
            .join(Service, Service.repo_id == MergeRequest.repo_id)
            .where(
                MergeRequest.state == "merged",
                MergeRequest.merged_at >= scan.since,
                MergeRequest.merged_at < scan.until,
            )
        )
    )


@policy("merge-without-green-pipeline", "error")
def merge_without_green_pipeline(conn: Connection, scan: Scan) -> list[Violation]:
    found = []
    for mr in _merged(conn, scan):
        status = conn.execute(
            select(Pipeline.status)
            .where(
                Pipeline.repo_id == mr.repo_id,
                Pipeline.sha == mr.head_sha,
                Pipeline.created_at <= mr.merged_at,
            )
            .order_by(Pipeline.created_at.desc(), Pipeline.id.desc())
            .limit(1)
        ).scalar()
        if status != "success":
            found.append(
                Violation(
                    "merge-without-green-pipeline",
                    "error",
                    mr.service,
                    None,
                    f"merge request {mr.repo_id}!{mr.iid}",
                    f"!{mr.iid} was merged while the latest pipeline of its head was "
                    f"{status or 'missing'}: require a green pipeline to merge",
                    mr.web_url,
                    occurred_at=mr.merged_at,
                )
            )
    return found


@policy("merge-without-approval", "warn")
def merge_without_approval(conn: Connection, scan: Scan) -> list[Violation]:
    required = scan.params.merge_without_approval.required_approvals
    return [
        Violation(
            "merge-without-approval",
            "warn",
            mr.service,
            None,
            f"merge request {mr.repo_id}!{mr.iid}",
            f"!{mr.iid} was merged with {mr.approvals or 0} of {required} required approvals: "
            "require approvals in the project's merge request settings",
            mr.web_url,
            occurred_at=mr.merged_at,
        )
        for mr in _merged(conn, scan)
        if (mr.approvals or 0) < required
    ]


@policy("direct-push", "warn")
def direct_push(conn: Connection, scan: Scan) -> list[Violation]:
    """Commits on the default branch's first-parent line that no merge request brought."""
    found = []
    heads = conn.execute(
        select(Branch.repo_id, Branch.head_sha, Service.name)
        .join(Service, Service.repo_id == Branch.repo_id)
        .where(Branch.is_default)
    ).all()
    for repo_id, head, service in heads:
        first_parent = dict(
            conn.execute(
                select(CommitParent.sha, CommitParent.parent_sha).where(
                    CommitParent.repo_id == repo_id, CommitParent.position == 0
                )
            ).all()
        )
        brought = set(
            conn.execute(select(MrCommit.sha).where(MrCommit.repo_id == repo_id)).scalars()
        )
        for column in (MergeRequest.merge_commit_sha, MergeRequest.squash_commit_sha):
            brought.update(
                s
                for s in conn.execute(
                    select(column).where(MergeRequest.repo_id == repo_id)
                ).scalars()
                if s
            )
        committed = dict(
            conn.execute(
                select(Commit.sha, Commit.committed_at).where(
                    Commit.repo_id == repo_id,
                    Commit.committed_at >= scan.since,
                    Commit.committed_at < scan.until,
                )
            ).all()
        )
        sha = head
        while sha is not None:
            if (
                sha in committed and sha not in brought and sha in first_parent
            ):  # the root is not a push
                found.append(
                    Violation(
                        "direct-push",
                        "warn",
                        service,
                        None,
                        f"commit {repo_id}:{sha}",
                        f"{sha[:12]} was pushed straight to the default branch: protect it and "
                        "merge through merge requests",
                        occurred_at=committed[sha],
                    )
                )
            sha = first_parent.get(sha)
    return found


@policy("long-lived-branch", "warn")
def long_lived_branch(conn: Connection, scan: Scan) -> list[Violation]:
    max_age = timedelta(days=scan.params.long_lived_branch.max_age_days)
    rows = conn.execute(
        select(
            MergeRequest.repo_id,
            MergeRequest.iid,
            MergeRequest.source_branch,
            MergeRequest.created_at,
            MergeRequest.web_url,
            Service.name,
        )
        .join(Service, Service.repo_id == MergeRequest.repo_id)
        .where(MergeRequest.state == "opened", MergeRequest.created_at < scan.until - max_age)
    )
    return [
        Violation(
            "long-lived-branch",
            "warn",
            service,
            None,
            f"branch {repo_id}:{branch}",
            f"{branch} (!{iid}) has been open since {created:%Y-%m-%d}: split it and merge within "
            f"{max_age.days} days",
            url,
            occurred_at=created + max_age if created else None,
        )
        for repo_id, iid, branch, created, url, service in rows
    ] + [  # branches without a merge request, by their first own commit (analytics.unmerged)
        Violation(
            "long-lived-branch",
            "warn",
            b.service,
            None,
            f"branch {b.repo_id}:{b.name}",
            f"{b.name} has unmerged commits since {b.since:%Y-%m-%d} and no merge request: open "
            f"one and merge within {max_age.days} days, or delete the branch",
            occurred_at=b.since + max_age,
        )
        for b in unmerged_branches(conn, scan.until - max_age)
    ]


@policy("stale-branch", "info")
def stale_branch(conn: Connection, scan: Scan) -> list[Violation]:
    stale = timedelta(days=scan.params.stale_branch.stale_days)
    merged = {
        (r, b)
        for r, b in conn.execute(
            select(MergeRequest.repo_id, MergeRequest.source_branch).where(
                MergeRequest.state.in_(("merged", "closed"))
            )
        )
    }
    rows = conn.execute(
        select(Branch.repo_id, Branch.name, Branch.last_commit_at, Service.name)
        .join(Service, Service.repo_id == Branch.repo_id)
        .where(Branch.is_default.is_(False), Branch.last_commit_at < scan.until - stale)
    )
    return [
        Violation(
            "stale-branch",
            "info",
            service,
            None,
            f"branch {repo_id}:{name}",
            f"{name} has had no commit since {last:%Y-%m-%d}: merge or delete it",
            occurred_at=last + stale if last else None,
        )
        for repo_id, name, last, service in rows
        if (repo_id, name) not in merged
    ]


@policy("unrecorded-change", "warn")
def unrecorded_change(conn: Connection, scan: Scan) -> list[Violation]:
    """Kubernetes ran a digest that no recorded deployment put there (analytics.observed)."""
    found = unrecorded(conn, scan.since, scan.until)
    names = dict(conn.execute(select(Service.id, Service.name)).all())
    envs = dict(conn.execute(select(Environment.id, Environment.name)).all())
    return [
        Violation(
            "unrecorded-change",
            "warn",
            names.get(r.service_id),
            envs.get(r.environment_id),
            f"rollout {r.cluster}/{r.namespace}/{r.workload}#{r.revision}",
            f"{r.cluster}/{r.namespace}/{r.workload} started running {(r.digest or '')[:19]} at "
            f"{r.at:%Y-%m-%d %H:%M} UTC and no recorded deployment put it there: deploy through "
            "the pipeline, or revert the change by hand",
            occurred_at=r.at,
        )
        for r in found
    ]


# -- the scan ---------------------------------------------------------------------------------


def scan(
    conn: Connection,
    since: datetime,
    until: datetime,
    promotion_path: list[str],
    params: PoliciesSettings | dict[str, dict[str, Any]] | None = None,
    only: list[str] | None = None,
) -> list[Violation]:
    """The violations of every policy (or those in `only`) over [since, until); `params` are the
    `[policies]` settings (a plain dict is validated as they are)."""
    if not isinstance(params, PoliciesSettings):
        params = PoliciesSettings.model_validate(params or {})
    s = Scan(since, until, promotion_path, params)
    found: list[Violation] = []
    for policy_id, (default, check) in POLICIES.items():
        if only and policy_id not in only:
            continue
        severity = params.of(policy_id).severity or default
        found.extend(Violation(**{**asdict(v), "severity": severity}) for v in check(conn, s))
    return found


def store(
    conn: Connection, violations: list[Violation], now: datetime | None = None
) -> list[Violation]:
    """Upsert violations into policy_violation (first_seen kept, occurred_at as the policy says,
    `now` for one that cannot say) and return them with first_seen."""
    now = now or datetime.now(UTC)
    services = dict(conn.execute(select(Service.name, Service.id)).all())
    envs = dict(conn.execute(select(Environment.name, Environment.id)).all())
    upsert(
        conn,
        PolicyViolation,
        [
            {
                "policy": v.policy,
                "subject": v.subject,
                "severity": v.severity,
                "service_id": services.get(v.service or ""),
                "environment_id": envs.get(v.environment or ""),
                "message": v.message,
                "url": v.url,
                "occurred_at": v.occurred_at or now,
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for v in violations
        ],
    )
    seen = dict(
        ((p, s), f)
        for p, s, f in conn.execute(
            select(PolicyViolation.policy, PolicyViolation.subject, PolicyViolation.first_seen_at)
        )
    )
    for v in violations:
        v.first_seen = seen.get((v.policy, v.subject))
    return violations
