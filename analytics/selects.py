"""DORA metrics and build health over a scope (definitions: DESIGN.md section 4, docs/METRICS.md).

Each metric is one SQL select of the scope's rows, narrowed to the columns it needs (the scope's
filters, joins and period run in the database); Python then counts, buckets into the configured
time zone's days and ISO weeks (SQLite has no time zones) and takes percentiles exactly as
PostgreSQL's percentile_cont would. Every rate comes with its numerator and denominator.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, union_all
from sqlalchemy.orm import aliased

from analytics.derive import DEPLOYMENT_REPO, FailureRules
from analytics.scope import Scope
from warehouse.schema import (
    ChangeFailure,
    Commit,
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Environment,
    Incident,
    MergeRequest,
    MrCommit,
    Pipeline,
    Repo,
    Service,
    Team,
    TestRun,
)

SLICES = ("week", "month", "team", "service")
STAGES = ("coding", "pickup", "review", "deploy", "cycle")


@dataclass
class Row:
    """One in-scope fact with what slicing needs (service, team, when)."""

    service: str
    team: str | None
    at: datetime
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScopeData:
    """The scope's rows, selected once; metrics are computed from any subset of them."""

    scope: Scope
    deployments: list[Row]
    changes: list[Row]
    merge_requests: list[Row]
    attempts: list[Row]
    pipelines: list[Row]
    incidents: list[Row] = field(default_factory=list)
    unreleased: list[Row] = field(default_factory=list)  # merged, not in production at the end

    def subset(self, keep: Callable[[Row], bool]) -> ScopeData:
        parts = (
            self.deployments,
            self.changes,
            self.merge_requests,
            self.attempts,
            self.pipelines,
            self.incidents,
            self.unreleased,
        )
        return ScopeData(self.scope, *([r for r in rows if keep(r)] for rows in parts))


# -- selects ---------------------------------------------------------------------------------


def load(conn: Connection, scope: Scope, rules: FailureRules | None = None) -> ScopeData:
    """Select every row the metrics of `scope` need."""
    rules = rules or FailureRules()
    return ScopeData(
        scope,
        _deployments(conn, scope, rules),
        _changes(conn, scope),
        _merge_requests(conn, scope),
        _attempts(conn, scope),
        _pipelines(conn, scope),
        _incidents(conn, scope),
        unreleased(conn, scope),
    )


def _rows(result: Any, at: str = "at") -> list[Row]:
    """Rows of a select labelled `service`, `team` and `at`; the other columns become values."""
    keys = list(result.keys())
    service, team, when = keys.index("service"), keys.index("team"), keys.index(at)
    rest = [(k, i) for i, k in enumerate(keys) if i not in (service, team, when)]
    return [Row(r[service], r[team], r[when], {k: r[i] for k, i in rest}) for r in result]


def _chain_in_scope(scope: Scope, query: Any) -> Any:
    query = scope.owned(query, DeploymentChain.service_id)
    if scope.environment is not None:
        query = query.join(Environment, Environment.id == DeploymentChain.environment_id).where(
            Environment.name == scope.environment
        )
    else:
        query = query.where(DeploymentChain.is_production)
    return query.where(scope.period(DeploymentChain.finished_at))


def _deployments(conn: Connection, scope: Scope, rules: FailureRules) -> list[Row]:
    query = _chain_in_scope(
        scope,
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            DeploymentChain.finished_at.label("at"),
            DeploymentChain.deployment_id,
            DeploymentChain.service_id,
            DeploymentChain.environment_id,
            DeploymentChain.rollback,
            Deployment.ref,
            ChangeFailure.incident,
            ChangeFailure.rollback.label("failed_rollback"),
            ChangeFailure.hotfix,
            ChangeFailure.deployment_id.label("failed"),
            ChangeFailure.recovered_at,
        )
        .select_from(DeploymentChain)
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .outerjoin(ChangeFailure, ChangeFailure.deployment_id == DeploymentChain.deployment_id),
    )
    rows = _rows(conn.execute(query))
    _mark_rework(conn, scope, rows, rules)
    return rows


def _mark_rework(conn: Connection, scope: Scope, rows: list[Row], rules: FailureRules) -> None:
    """Rework: rollbacks, hotfix-ref deployments, and deployments inside the recovery of a failed
    change of the same service and environment (each production environment is its own chain)."""
    services = {r.values["service_id"] for r in rows}
    windows: dict[tuple[int, int], list[tuple[datetime, datetime | None]]] = defaultdict(list)
    if services:
        failed = conn.execute(
            select(
                DeploymentChain.service_id,
                DeploymentChain.environment_id,
                DeploymentChain.finished_at,
                ChangeFailure.recovered_at,
            )
            .join(ChangeFailure, ChangeFailure.deployment_id == DeploymentChain.deployment_id)
            .where(
                DeploymentChain.service_id.in_(services),
                DeploymentChain.is_production,
                DeploymentChain.finished_at < scope.until,
            )
        )
        for service_id, environment_id, finished, recovered in failed:
            windows[(service_id, environment_id)].append((finished, recovered))
    for r in rows:
        chain = (r.values["service_id"], r.values["environment_id"])
        inside = any(start < r.at and (end is None or r.at <= end) for start, end in windows[chain])
        r.values["rework"] = (
            bool(r.values["rollback"]) or rules.is_hotfix(r.values["ref"]) or inside
        )


def _changes(conn: Connection, scope: Scope) -> list[Row]:
    query = _chain_in_scope(
        scope,
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            DeploymentChain.finished_at.label("at"),
            DeploymentChange.started_at,
        )
        .select_from(DeploymentChange)
        .join(DeploymentChain, DeploymentChain.deployment_id == DeploymentChange.deployment_id)
        .where(scope.first_change(), DeploymentChange.is_merge.is_(False)),
    )
    return _rows(conn.execute(query))


def _merge_requests(conn: Connection, scope: Scope) -> list[Row]:
    """Merged MRs whose merge or squash commit (a fast-forward merge: its head) first reached the
    scope's environment in the period, with their stage timestamps. The repository is the
    deployment's (a deploy job may name a service no code source knows), else its service's."""
    first_commit = (
        select(func.min(Commit.authored_at))
        .select_from(MrCommit)
        .join(Commit, and_(Commit.repo_id == MrCommit.repo_id, Commit.sha == MrCommit.sha))
        .where(MrCommit.repo_id == MergeRequest.repo_id, MrCommit.iid == MergeRequest.iid)
        .scalar_subquery()
    )
    changes = (  # used three times, so materialised (SQLite and PostgreSQL do so by default)
        _chain_in_scope(
            scope,
            select(
                Service.name.label("service"),
                Team.name.label("team"),
                DeploymentChain.finished_at.label("at"),
                DEPLOYMENT_REPO.label("repo_id"),
                DeploymentChange.sha,
            )
            .select_from(DeploymentChain)
            .join(DeploymentChange, DeploymentChange.deployment_id == DeploymentChain.deployment_id)
            .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
            .where(scope.first_change()),
        ).cte("changes")
    )
    sha = changes.c.sha
    carriers = (  # one indexed equality per way an MR reaches the default branch
        MergeRequest.squash_commit_sha == sha,
        and_(MergeRequest.merge_commit_sha == sha, MergeRequest.squash_commit_sha.is_(None)),
        and_(
            MergeRequest.head_sha == sha,
            MergeRequest.merge_commit_sha.is_(None),
            MergeRequest.squash_commit_sha.is_(None),
        ),
    )
    parts = [
        select(
            changes.c.service,
            changes.c.team,
            changes.c.at,
            first_commit.label("first_commit_at"),
            MergeRequest.created_at,
            MergeRequest.first_review_at,
            MergeRequest.merged_at,
        ).join(
            MergeRequest,
            and_(
                MergeRequest.repo_id == changes.c.repo_id, carrier, MergeRequest.state == "merged"
            ),
        )
        for carrier in carriers
    ]
    return _rows(conn.execute(union_all(*parts)))


def _attempts(conn: Connection, scope: Scope) -> list[Row]:
    """Finished deployment attempts (success or failed) in every environment, for failure rates."""
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            Deployment.finished_at.label("at"),
            Environment.name.label("environment"),
            Environment.tier,
            Deployment.status,
        )
        .select_from(Deployment)
        .join(Environment, Environment.id == Deployment.environment_id),
        Deployment.service_id,
    )
    query = query.where(
        scope.period(Deployment.finished_at),
        Deployment.status.in_(("success", "failed")),
        Deployment.kind == "app",  # schema deployments are tracked apart (docs/METRICS.md)
    )
    return _rows(conn.execute(query))


def _pipelines(conn: Connection, scope: Scope) -> list[Row]:
    """Pipelines finished in the period, with whether they ran on the default branch and how many
    tests failed in them (two selects: joining the test aggregate costs more than both)."""
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            Pipeline.finished_at.label("at"),
            Pipeline.id,
            Pipeline.repo_id,
            Pipeline.status,
            Pipeline.duration_s,
            Pipeline.queued_s,
            (Pipeline.ref == Repo.default_branch).label("default_branch"),
        )
        .select_from(Pipeline)
        .join(Repo, Repo.id == Pipeline.repo_id),
        on=Service.repo_id == Pipeline.repo_id,
    )
    rows = _rows(conn.execute(query.where(scope.period(Pipeline.finished_at))))
    failed_tests = dict(
        conn.execute(
            select(Pipeline.id, func.sum(TestRun.failed))
            .join(
                Pipeline,
                and_(
                    Pipeline.source_id == TestRun.source_id,
                    Pipeline.external_id == TestRun.pipeline_external_id,
                ),
            )
            .where(scope.period(Pipeline.finished_at), TestRun.failed > 0)
            .group_by(Pipeline.id)
        ).all()
    )
    for r in rows:
        r.values["failed_tests"] = failed_tests.get(r.values.pop("id"), 0)
    return rows


def _incidents(conn: Connection, scope: Scope) -> list[Row]:
    """Incidents opened in the period, for time to restore (opened -> resolved)."""
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            Incident.opened_at.label("at"),
            Incident.resolved_at,
        ).select_from(Incident),
        Incident.service_id,
    ).where(scope.period(Incident.opened_at))
    return _rows(conn.execute(query))


__all__ = ["SLICES", "STAGES", "Row", "ScopeData", "load"]


def unreleased(conn: Connection, scope: Scope) -> list[Row]:
    """Merged MRs, merged before the scope's end and not in production at its start, with when
    they reached it: `released_at`, the first finish of a deployment to the scope's environment
    (the production tier by default) that brought their merge or squash commit (a fast-forward
    merge: their head), None while none has. The warehouse knows no history before a chain's first
    deployment: an MR merged before its repository's first one is taken as carried by it. `at` is
    the merge."""
    owner = aliased(Service)
    deployed = (
        select(func.min(DeploymentChain.finished_at))
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .join(Environment, Environment.id == DeploymentChain.environment_id)
        .join(owner, owner.id == DeploymentChain.service_id)
        .where(
            func.coalesce(Deployment.repo_id, owner.repo_id) == MergeRequest.repo_id,
            Environment.name == scope.environment
            if scope.environment is not None
            else DeploymentChain.is_production,
        )
    )
    sha = DeploymentChange.sha
    brought = deployed.join(
        DeploymentChange, DeploymentChange.deployment_id == DeploymentChain.deployment_id
    ).where(
        or_(
            sha == MergeRequest.squash_commit_sha,
            sha == MergeRequest.merge_commit_sha,
            and_(
                sha == MergeRequest.head_sha,
                MergeRequest.merge_commit_sha.is_(None),
                MergeRequest.squash_commit_sha.is_(None),
            ),
        )
    )
    history = deployed.where(
        DeploymentChain.baseline, DeploymentChain.finished_at >= MergeRequest.merged_at
    )
    brought_at, history_at = brought.scalar_subquery(), history.scalar_subquery()
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            MergeRequest.merged_at.label("at"),
            brought_at.label("brought_at"),
            history_at.label("history_at"),
        ).select_from(MergeRequest),
        on=Service.repo_id == MergeRequest.repo_id,
    ).where(
        MergeRequest.state == "merged",
        MergeRequest.merged_at < scope.until,
        or_(brought_at.is_(None), brought_at > scope.since),
        or_(history_at.is_(None), history_at > scope.since),
    )
    rows = _rows(conn.execute(query))
    for r in rows:
        times = [t for t in (r.values.pop("brought_at"), r.values.pop("history_at")) if t]
        r.values["released_at"] = min(times, default=None)
    return rows
