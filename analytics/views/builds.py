"""Views of build health: default branches (red since when) and failing test suites."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, and_, case, func, select, type_coerce

from analytics import rollups
from analytics.rules import TEST_RUN_PIPELINE
from analytics.scope import Scope
from analytics.views._common import as_dicts
from warehouse.schema import (
    Pipeline,
    Repo,
    RollupSuiteDay,
    Service,
    Team,
    TestRun,
)
from warehouse.types import UTCDateTime


def default_branches(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Per service, the latest finished default-branch pipeline of the period: its status, its
    link, and since when the branch is red (the first failure after the last success)."""
    on_default = and_(
        Pipeline.ref == Repo.default_branch,
        Pipeline.status.in_(("success", "failed")),
        scope.period(Pipeline.finished_at),
    )
    # each repository's latest by its (repo, ref, finished) index, read backwards from the
    # period's end (of equal finish times the later pipeline): grouping the period's pipelines
    # by repository read every one of them (0.19 s against 0.01 s on a large organisation)
    latest = (
        select(Pipeline.id)
        .where(Pipeline.repo_id == Repo.id, on_default)
        .order_by(Pipeline.finished_at.desc(), Pipeline.id.desc())
        .limit(1)
        .correlate(Repo)
        .scalar_subquery()
    )
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            Pipeline.repo_id,
            Pipeline.ref.label("branch"),
            Pipeline.status,
            Pipeline.finished_at,
            Pipeline.web_url,
        )
        .select_from(Repo)
        .join(Pipeline, Pipeline.id == latest),
        on=Service.repo_id == Repo.id,
    )
    rows = {r["service"]: r for r in as_dicts(conn.execute(query.order_by(Service.name)))}
    red = {r["repo_id"] for r in rows.values() if r["status"] == "failed"}
    since = _red_since(conn, on_default, red) if red else {}
    for r in rows.values():
        repo_id = r.pop("repo_id")
        r["red_since"] = since.get(repo_id) if r["status"] == "failed" else None
    return list(rows.values())


def _red_since(conn: Connection, on_default: Any, repos: set[int]) -> dict[int, Any]:
    """Repository -> the first failure after its last success in the period (red repos only)."""
    history = conn.execute(
        select(Pipeline.repo_id, Pipeline.status, Pipeline.finished_at)
        .join(Repo, Repo.id == Pipeline.repo_id)
        .where(on_default, Pipeline.repo_id.in_(repos))
        .order_by(Pipeline.repo_id, Pipeline.finished_at, Pipeline.id)
    )
    since: dict[Any, Any] = {}
    for repo_id, status, finished_at in history:
        if status == "success":
            since.pop(repo_id, None)
        else:
            since.setdefault(repo_id, finished_at)
    return since


def failing_tests(conn: Connection, scope: Scope, limit: int = 50) -> list[dict[str, Any]]:
    """Test suites with failed tests in the period's pipelines, most failures first: the stored
    suite days (`rollup_suite_day`, derive's) of the local days wholly inside the period and the
    test runs of its partial first and last day; every run from the rows when the rollups cannot
    answer (no derive yet, another time zone)."""
    span = rollups.stored_span(conn, scope)
    if span is None:
        parts = [_suites_of_runs(conn, scope)]
    else:
        first, after = span
        parts = [
            _stored_suites(conn, scope, first, after),
            *(_suites_of_runs(conn, edge) for edge in rollups.edges(scope, first, after)),
        ]
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for rows in parts:
        for r in rows:
            found = totals.setdefault((r["service"], r["suite"]), r)
            if found is r:
                continue
            for count in ("failed_tests", "failing_runs", "runs"):
                found[count] += r[count]
            if r["last_failed_at"] is not None and (
                found["last_failed_at"] is None or r["last_failed_at"] > found["last_failed_at"]
            ):
                found["last_failed_at"] = r["last_failed_at"]
    failing = [t for t in totals.values() if t["failed_tests"] > 0]
    failing.sort(key=lambda t: (-t["failed_tests"], t["service"], t["suite"]))
    return failing[:limit]


def _suites_of_runs(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Per service and suite, the test runs of the period's pipelines summed."""
    failing = TestRun.failed > 0
    query = scope.owned(
        select(
            Service.name.label("service"),
            TestRun.suite,
            func.sum(TestRun.failed).label("failed_tests"),
            func.sum(case((failing, 1), else_=0)).label("failing_runs"),
            func.count().label("runs"),
            type_coerce(func.max(case((failing, Pipeline.finished_at))), UTCDateTime()).label(
                "last_failed_at"
            ),
        )
        .select_from(TestRun)
        .join(Pipeline, TEST_RUN_PIPELINE),
        on=Service.repo_id == Pipeline.repo_id,
    ).where(scope.period(Pipeline.finished_at))
    return as_dicts(conn.execute(query.group_by(Service.name, TestRun.suite)))


def _stored_suites(
    conn: Connection, scope: Scope, first: date, after: date
) -> list[dict[str, Any]]:
    """Per service and suite, the stored suite days of the local days [first, after) summed."""
    day = RollupSuiteDay
    query = scope.owned(
        select(
            Service.name.label("service"),
            day.suite,
            func.sum(day.failed_tests).label("failed_tests"),
            func.sum(day.failing_runs).label("failing_runs"),
            func.sum(day.runs).label("runs"),
            type_coerce(func.max(day.last_failed_at), UTCDateTime()).label("last_failed_at"),
        ).select_from(day),
        on=Service.repo_id == day.repo_id,
    ).where(day.day >= first, day.day < after)
    return as_dicts(conn.execute(query.group_by(Service.name, day.suite)))
