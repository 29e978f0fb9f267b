"""Views of build health: default branches (red since when) and failing test suites."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, type_coerce

from analytics.scope import Scope
from analytics.views._common import as_dicts
from warehouse.schema import (
    Pipeline,
    Repo,
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
    ranked = (
        select(
            Pipeline.repo_id,
            Pipeline.status,
            Pipeline.finished_at,
            Pipeline.web_url,
            Pipeline.ref,
            func.row_number()
            .over(
                partition_by=Pipeline.repo_id,
                order_by=(Pipeline.finished_at.desc(), Pipeline.id.desc()),
            )
            .label("rank"),
        )
        .join(Repo, Repo.id == Pipeline.repo_id)
        .where(on_default)
        .subquery()
    )
    green = (
        select(Pipeline.repo_id, func.max(Pipeline.finished_at).label("green_at"))
        .join(Repo, Repo.id == Pipeline.repo_id)
        .where(on_default, Pipeline.status == "success")
        .group_by(Pipeline.repo_id)
        .subquery()
    )
    red = (
        select(Pipeline.repo_id, func.min(Pipeline.finished_at).label("red_since"))
        .join(Repo, Repo.id == Pipeline.repo_id)
        .outerjoin(green, green.c.repo_id == Pipeline.repo_id)
        .where(
            on_default,
            Pipeline.status == "failed",
            or_(green.c.green_at.is_(None), Pipeline.finished_at > green.c.green_at),
        )
        .group_by(Pipeline.repo_id)
        .subquery()
    )
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            ranked.c.ref.label("branch"),
            ranked.c.status,
            ranked.c.finished_at,
            ranked.c.web_url,
            type_coerce(red.c.red_since, UTCDateTime()).label("red_since"),
        )
        .select_from(ranked)
        .outerjoin(red, red.c.repo_id == ranked.c.repo_id),
        on=Service.repo_id == ranked.c.repo_id,
    ).where(ranked.c.rank == 1)
    rows = as_dicts(conn.execute(query.order_by(Service.name)))
    for r in rows:
        if r["status"] != "failed":
            r["red_since"] = None
    return rows


def failing_tests(conn: Connection, scope: Scope, limit: int = 50) -> list[dict[str, Any]]:
    """Test suites with failed tests in the period's pipelines, most failures first."""
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
        .join(
            Pipeline,
            and_(
                Pipeline.source_id == TestRun.source_id,
                Pipeline.external_id == TestRun.pipeline_external_id,
            ),
        ),
        on=Service.repo_id == Pipeline.repo_id,
    ).where(scope.period(Pipeline.finished_at))
    query = (
        query.group_by(Service.name, TestRun.suite)
        .having(func.sum(TestRun.failed) > 0)
        .order_by(func.sum(TestRun.failed).desc(), Service.name, TestRun.suite)
        .limit(limit)
    )
    return as_dicts(conn.execute(query))
