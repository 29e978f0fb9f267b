"""Views of notable items for the weekly report: branches (open merge requests) living longest at
the end of the period and pipelines failing most in it (the week's new policy violations are
analytics.views.violations.select_violations).

Each is one select with its filters, grouping, ordering and limit in the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, type_coerce

from analytics import stats
from analytics.scope import Scope
from analytics.views._common import as_dicts
from warehouse.schema import MergeRequest, Pipeline, Service
from warehouse.types import UTCDateTime


def longest_lived_branches(conn: Connection, scope: Scope, limit: int = 10) -> list[dict[str, Any]]:
    """Merge requests open at the end of the period (created before it, not merged or closed
    before it), oldest first, with their age in days at the end of the period."""
    still_open = and_(
        MergeRequest.created_at < scope.until,
        or_(MergeRequest.merged_at.is_(None), MergeRequest.merged_at >= scope.until),
        or_(MergeRequest.closed_at.is_(None), MergeRequest.closed_at >= scope.until),
        MergeRequest.state != "locked",
    )
    query = scope.owned(
        select(
            Service.name.label("service"),
            MergeRequest.iid,
            MergeRequest.title,
            MergeRequest.source_branch.label("branch"),
            MergeRequest.author,
            MergeRequest.created_at,
            MergeRequest.web_url,
        ).select_from(MergeRequest),
        on=Service.repo_id == MergeRequest.repo_id,
    ).where(still_open)
    order = (MergeRequest.created_at, Service.name, MergeRequest.iid)
    rows = as_dicts(conn.execute(query.order_by(*order).limit(limit)))
    for r in rows:
        r["age_days"] = stats.hours(scope.until - r["created_at"]) / 24
    return rows


def failing_pipelines(conn: Connection, scope: Scope, limit: int = 10) -> list[dict[str, Any]]:
    """Per service and ref (and Jenkins job), pipelines finished in the period that failed, most
    failures first, with the decided ones (success + failed), the rate and the last failure."""
    failed = Pipeline.status == "failed"
    failures = func.sum(case((failed, 1), else_=0))
    decided = func.sum(case((Pipeline.status.in_(("success", "failed")), 1), else_=0))
    query = scope.owned(
        select(
            Service.name.label("service"),
            Pipeline.ref,
            Pipeline.job_name,
            failures.label("failed"),
            decided.label("pipelines"),
            type_coerce(func.max(case((failed, Pipeline.finished_at))), UTCDateTime()).label(
                "last_failed_at"
            ),
        ).select_from(Pipeline),
        on=Service.repo_id == Pipeline.repo_id,
    ).where(scope.period(Pipeline.finished_at))
    query = (
        query.group_by(Service.name, Pipeline.ref, Pipeline.job_name)
        .having(failures > 0)
        .order_by(failures.desc(), Service.name, Pipeline.ref)
        .limit(limit)
    )
    rows = as_dicts(conn.execute(query))
    for r in rows:
        r["failure_rate"] = stats.ratio(r["failed"], r["pipelines"])
    return rows
