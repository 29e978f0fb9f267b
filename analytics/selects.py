"""The selects of a scope's rows: one per part of `ScopeData` (`analytics.rows`), run by
`load(conn, scope, rules, parts)`.

Each select reads the scope's rows narrowed to the columns its metrics need (the scope's filters,
joins and period run in the database) and returns typed rows; Python then counts, buckets into
the configured time zone's days and ISO weeks (`analytics.slices`; SQLite has no time zones) and
computes the figures (`analytics.dora`, `analytics.build_health`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, func, literal, or_, select, union_all

from analytics import releases, requirements
from analytics.rows import (
    PARTS,
    AttemptRow,
    ChangeRow,
    DeploymentRow,
    IncidentRow,
    MergeRequestRow,
    PipelineRow,
    Row,
    ScopeData,
    UnreleasedRow,
)
from analytics.rules import (
    DEPLOYMENT_REPO,
    TEST_RUN_PIPELINE,
    FailureRules,
    merged,
)
from analytics.scope import Scope
from warehouse.schema import (
    ChangeFailure,
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Environment,
    Incident,
    MergeRequest,
    Pipeline,
    Repo,
    Service,
    Team,
    TestRun,
)

R = TypeVar("R", bound=Row)


def load(
    conn: Connection,
    scope: Scope,
    rules: FailureRules | None = None,
    parts: Iterable[str] = PARTS,
) -> ScopeData:
    """Select the rows of `parts` (default: every part) of `scope`; the other parts empty."""
    wanted = set(parts)
    unknown = wanted - set(PARTS)
    if unknown:
        raise ValueError(
            f"no part {', '.join(sorted(unknown))!r} of the scope's rows; use one of "
            f"{', '.join(PARTS)}"
        )
    rules = rules or FailureRules()
    selects: dict[str, Callable[[], list[Any]]] = {
        "deployments": lambda: deployments(conn, scope, rules),
        "changes": lambda: changes(conn, scope),
        "merge_requests": lambda: merge_requests(conn, scope),
        "attempts": lambda: attempts(conn, scope),
        "pipelines": lambda: pipelines(conn, scope),
        "incidents": lambda: incidents(conn, scope),
        "unreleased": lambda: unreleased(conn, scope),
        "requirements": lambda: requirements.requirements(conn, scope),
        "bugs": lambda: requirements.bugs(conn, scope),
    }
    return ScopeData(scope, **{name: selects[name]() for name in PARTS if name in wanted})


def _rows(result: Any, kind: type[R]) -> list[R]:
    """Rows of a select whose labels are `kind`'s fields (the labels read once, not per row)."""
    keys = tuple(result.keys())
    return [kind(**dict(zip(keys, row, strict=True))) for row in result]


def scoped_chain(scope: Scope, query: Any) -> Any:
    """`query` over deployment_chain restricted to the scope (services, teams, environment, period)."""
    query = scope.owned(query, DeploymentChain.service_id)
    if scope.environment is not None:
        query = query.join(Environment, Environment.id == DeploymentChain.environment_id).where(
            Environment.name == scope.environment
        )
    else:
        query = query.where(DeploymentChain.is_production)
    return query.where(scope.period(DeploymentChain.finished_at))


def deployments(conn: Connection, scope: Scope, rules: FailureRules) -> list[DeploymentRow]:
    query = scoped_chain(
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
            ChangeFailure.deployment_id.label("failed_id"),
            ChangeFailure.recovered_at,
        )
        .select_from(DeploymentChain)
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .outerjoin(ChangeFailure, ChangeFailure.deployment_id == DeploymentChain.deployment_id),
    )
    rows = _rows(conn.execute(query), DeploymentRow)
    _mark_rework(conn, scope, rows, rules)
    return rows


def _mark_rework(
    conn: Connection, scope: Scope, rows: list[DeploymentRow], rules: FailureRules
) -> None:
    """Rework: rollbacks, hotfix-ref deployments, and deployments inside the recovery of a failed
    change of the same service and environment (each production environment is its own chain)."""
    services = {r.service_id for r in rows}
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
        chain = (r.service_id, r.environment_id)
        inside = any(start < r.at and (end is None or r.at <= end) for start, end in windows[chain])
        r.rework = bool(r.rollback) or rules.is_hotfix(r.ref) or inside


def changes(conn: Connection, scope: Scope) -> list[ChangeRow]:
    query = scoped_chain(
        scope,
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            DeploymentChain.finished_at.label("at"),
            DeploymentChange.started_at,
            DeploymentChain.environment_id,
        )
        .select_from(DeploymentChange)
        .join(DeploymentChain, DeploymentChain.deployment_id == DeploymentChange.deployment_id)
        .where(scope.first_change(), DeploymentChange.is_merge.is_(False)),
    )
    return _rows(conn.execute(query), ChangeRow)


def merge_requests(conn: Connection, scope: Scope) -> list[MergeRequestRow]:
    """Merged MRs whose merge or squash commit (a fast-forward merge: its head) first reached the
    scope's environment in the period, with their stage timestamps. The repository is the
    deployment's (a deploy job may name a service no code source knows), else its service's."""
    changes = (  # used three times, so materialised (SQLite and PostgreSQL do so by default)
        scoped_chain(
            scope,
            select(
                Service.name.label("service"),
                Team.name.label("team"),
                DeploymentChain.finished_at.label("at"),
                DeploymentChain.environment_id,
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
            MergeRequest.first_commit_at,
            MergeRequest.created_at,
            MergeRequest.first_review_at,
            MergeRequest.merged_at,
            changes.c.environment_id,
        ).join(
            MergeRequest,
            and_(MergeRequest.repo_id == changes.c.repo_id, carrier, merged()),
        )
        for carrier in carriers
    ]
    return _rows(conn.execute(union_all(*parts)), MergeRequestRow)


def attempts(conn: Connection, scope: Scope) -> list[AttemptRow]:
    """Finished deployment attempts (success or failed) in every environment, for failure rates."""
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            Deployment.finished_at.label("at"),
            Environment.name.label("environment"),
            Environment.tier,
            Deployment.status,
            Deployment.environment_id,
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
    return _rows(conn.execute(query), AttemptRow)


def pipelines(conn: Connection, scope: Scope) -> list[PipelineRow]:
    """Pipelines finished in the period, with whether they ran on the default branch and how many
    tests failed in them (two selects: joining the test aggregate costs more than both)."""
    query = scope.owned(
        _pipeline_select(Service.name.label("service"), Team.name.label("team")),
        on=Service.repo_id == Pipeline.repo_id,
    )
    return _pipeline_rows(conn, query, scope.period(Pipeline.finished_at))


def repo_pipelines(
    conn: Connection, since: datetime, repo_ids: Iterable[int] | None = None
) -> list[PipelineRow]:
    """Every repository's (or `repo_ids`') pipelines finished at or after `since`, without their
    services (service "", team None): what derive rolls up per repository
    (`analytics.rollups`)."""
    period = and_(Pipeline.finished_at >= since, Pipeline.repo_id.is_not(None))
    if repo_ids is not None:
        period = and_(period, Pipeline.repo_id.in_(list(repo_ids)))
    query = _pipeline_select(literal("").label("service"), literal(None).label("team"))
    return _pipeline_rows(conn, query, period)


def _pipeline_select(service: Any, team: Any) -> Any:
    return (
        select(
            service,
            team,
            Pipeline.finished_at.label("at"),
            Pipeline.id,
            Pipeline.repo_id,
            Pipeline.status,
            Pipeline.duration_s,
            Pipeline.queued_s,
            (Pipeline.ref == Repo.default_branch).label("default_branch"),
        )
        .select_from(Pipeline)
        .join(Repo, Repo.id == Pipeline.repo_id)
    )


def _pipeline_rows(conn: Connection, query: Any, period: Any) -> list[PipelineRow]:
    found = conn.execute(query.where(period)).all()
    failed_tests = dict(
        conn.execute(
            select(Pipeline.id, func.sum(TestRun.failed))
            .join(Pipeline, TEST_RUN_PIPELINE)
            .where(period, TestRun.failed > 0)
            .group_by(Pipeline.id)
        ).all()
    )
    return [
        PipelineRow(
            **{k: v for k, v in r._mapping.items() if k != "id"},
            failed_tests=failed_tests.get(r.id, 0),
        )
        for r in found
    ]


def incidents(conn: Connection, scope: Scope) -> list[IncidentRow]:
    """Incidents opened in the period, for time to restore (opened -> resolved); one recorded by
    several sources counts once (`duplicate_of`, set by derive)."""
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            Incident.opened_at.label("at"),
            Incident.resolved_at,
        ).select_from(Incident),
        Incident.service_id,
    ).where(scope.period(Incident.opened_at), Incident.duplicate_of.is_(None))
    return _rows(conn.execute(query), IncidentRow)


MAX_ENDS = 128  # slice ends `unreleased` names in SQL: two years of weeks and months


def unreleased(conn: Connection, scope: Scope) -> list[UnreleasedRow]:
    """Merged MRs, merged before the scope's end and not in production at its start, with when
    they reached it: `released_at`, the first finish of a deployment to the scope's environment
    (the production tier by default) that brought their merge or squash commit (a fast-forward
    merge: their head), None while none has. The warehouse knows no history before a chain's first
    deployment: an MR merged before its repository's first one is taken as carried by it. `at` is
    the merge.

    Of the MRs released within the period, only those waiting at the end of one of its time
    slices (`Scope.slice_ends`: merged before it, released at or after it) are read: the only
    rows `dora.merged_not_in_production` counts, over the scope or any week, month, team or
    service of it; most MRs reach production within the hour they merge, waiting at no end. A
    scope of more than `MAX_ENDS` ends (over about two years) reads every MR released in it: a
    condition per end would outgrow SQL's expression limits.

    The production tier reads `merge_request.released_at`, maintained by derive
    (`analytics.releases`), with two indexed range reads on (state, released_at): not released, or
    released after the scope's start. A named environment computes its release times in one
    set-based query (`releases.release_times`) over the scope's repositories."""
    merged_by_end = (MergeRequest.state == "merged", MergeRequest.merged_at < scope.until)
    ends = scope.slice_ends()

    def waits(released: Any) -> Any:
        if len(ends) > MAX_ENDS:
            return or_(released.is_(None), released > scope.since)
        return or_(
            released.is_(None),
            *(and_(MergeRequest.merged_at < end, released >= end) for end in ends),
        )

    columns = (Service.name.label("service"), Team.name.label("team"))
    if scope.environment is None:
        released = MergeRequest.released_at
        reads = [
            scope.owned(
                select(*columns, MergeRequest.merged_at.label("at"), released).select_from(
                    MergeRequest
                ),
                on=Service.repo_id == MergeRequest.repo_id,
            ).where(*merged_by_end, waiting)
            for waiting in (released.is_(None), and_(released > scope.since, waits(released)))
        ]
        return [row for read in reads for row in _rows(conn.execute(read), UnreleasedRow)]
    repos = scope.owned(select(Repo.id), on=Service.repo_id == Repo.id)
    times = releases.release_times(
        scope.environment, and_(*merged_by_end, MergeRequest.repo_id.in_(repos))
    ).subquery("times")
    query = scope.owned(
        select(
            *columns,
            MergeRequest.merged_at.label("at"),
            times.c.released_at,
        )
        .select_from(MergeRequest)
        .outerjoin(times, times.c.merge_request_id == MergeRequest.id),
        on=Service.repo_id == MergeRequest.repo_id,
    ).where(*merged_by_end, waits(times.c.released_at))
    return _rows(conn.execute(query), UnreleasedRow)


__all__ = [
    "attempts",
    "changes",
    "deployments",
    "incidents",
    "load",
    "merge_requests",
    "pipelines",
    "repo_pipelines",
    "unreleased",
]
