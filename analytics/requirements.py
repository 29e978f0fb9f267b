"""Requirement lead time and bug escape rate (docs/METRICS.md#requirement-lead-time,
#bug-escape-rate): the selects of their rows and the figures.

A work item is linked to changes by `work_item_link` (the tracker's own links and the keys derive
found in MR titles, source branches and commit titles); a linked MR counts by the commit it
brought to the default branch (squash, else merge, else head), a linked commit by itself. A
change reaches production with the first production-tier deployment that brought it
(`deployment_change`, every production environment).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, String, and_, cast, func, literal, select, union_all

from analytics import stats
from analytics.rows import BugRow, RequirementRow, ScopeData
from analytics.scope import Scope

if TYPE_CHECKING:  # rollups read requirements' rows through analytics.selects
    from analytics.rollups import Rollup
from warehouse.schema import (
    DeploymentChain,
    DeploymentChange,
    MergeRequest,
    Repo,
    Service,
    Team,
    WorkItem,
    WorkItemLink,
)

STAGES = ("waiting", "delivery")  # created -> started -> first production deployment


def _first_in_production() -> Any:
    """(source_id, item, deployed_at): each linked work item's first production deployment of
    any of its changes."""
    mr_sha = func.coalesce(
        MergeRequest.squash_commit_sha, MergeRequest.merge_commit_sha, MergeRequest.head_sha
    )
    by_mr = (
        select(WorkItemLink.source_id, WorkItemLink.item, mr_sha.label("sha"))
        .join(Repo, Repo.path == WorkItemLink.repo_path)
        .join(
            MergeRequest,
            and_(
                MergeRequest.repo_id == Repo.id,
                cast(MergeRequest.iid, String) == WorkItemLink.target,
                MergeRequest.state == "merged",
            ),
        )
        .where(WorkItemLink.kind == "merge_request")
    )
    by_commit = select(
        WorkItemLink.source_id, WorkItemLink.item, WorkItemLink.target.label("sha")
    ).where(WorkItemLink.kind == "commit")
    linked = union_all(by_mr, by_commit).subquery("linked")
    return (
        select(
            linked.c.source_id,
            linked.c.item,
            func.min(DeploymentChain.finished_at).label("deployed_at"),
        )
        .join(DeploymentChange, DeploymentChange.sha == linked.c.sha)
        .join(DeploymentChain, DeploymentChain.deployment_id == DeploymentChange.deployment_id)
        .where(DeploymentChain.is_production)
        .group_by(linked.c.source_id, linked.c.item)
        .subquery("first_in_production")
    )


def _items(kind: str, *columns: Any) -> Any:
    return (
        select(Service.name.label("service"), Team.name.label("team"), *columns)
        .select_from(WorkItem)
        .where(WorkItem.kind == kind)
    )


def requirements(conn: Connection, scope: Scope) -> list[RequirementRow]:
    """Requirements whose first linked change reached production in the scope's period. A
    warehouse linking no work item to a change (no tracker) has none, and reads nothing more:
    the linked changes' first deployments walk every merged MR (0.13 s on the large
    organisation, which has no tracker)."""
    if conn.execute(select(WorkItemLink.id).limit(1)).first() is None:
        return []
    first = _first_in_production()
    query = _items(
        "requirement",
        first.c.deployed_at.label("at"),
        WorkItem.created_at,
        WorkItem.started_at,
    ).join(
        first, and_(first.c.source_id == WorkItem.source_id, first.c.item == WorkItem.external_id)
    )
    query = scope.owned(query, WorkItem.service_id).where(scope.period(first.c.deployed_at))
    return [RequirementRow(**r._mapping) for r in conn.execute(query)]


def bugs(conn: Connection, scope: Scope) -> list[BugRow]:
    """Bugs opened in the scope's period that are linked to a change, with when the first of
    their changes reached production (None: none has)."""
    first = _first_in_production()
    linked = select(WorkItemLink.source_id, WorkItemLink.item).distinct().subquery("linked_bugs")
    query = (
        _items(
            "bug",
            WorkItem.created_at.label("at"),
            first.c.deployed_at,
            literal(True).label("linked"),
        )
        .join(
            linked,
            and_(linked.c.source_id == WorkItem.source_id, linked.c.item == WorkItem.external_id),
        )
        .outerjoin(
            first,
            and_(first.c.source_id == WorkItem.source_id, first.c.item == WorkItem.external_id),
        )
    )
    query = scope.owned(query, WorkItem.service_id).where(scope.period(WorkItem.created_at))
    return [
        BugRow(**{k: v for k, v in r._mapping.items() if k != "linked"})
        for r in conn.execute(query)
    ]


def requirement_lead_time(data: ScopeData | Rollup) -> dict[str, Any]:
    """{items, median_hours, p90_hours, level, stages {waiting, delivery}}: hours from a
    requirement's creation to the finish of the first production deployment of a linked change;
    stages in median hours (a negative span, a requirement started after it shipped, is left out
    of its stage). Definition: docs/METRICS.md#requirement-lead-time"""
    hours = [stats.hours(r.at - r.created_at) for r in data.requirements]
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for r in data.requirements:
        if r.started_at is not None:
            for name, span in (
                ("waiting", r.started_at - r.created_at),
                ("delivery", r.at - r.started_at),
            ):
                if span.total_seconds() >= 0:
                    stages[name].append(stats.hours(span))
    return {"items": len(hours), **stats.lead_time_figures(hours, stages)}


def bug_escape_rate(data: ScopeData | Rollup) -> dict[str, Any]:
    """{escaped, bugs, rate}: of the bugs linked to a change, those opened after it was already
    in production. Definition: docs/METRICS.md#bug-escape-rate"""
    escaped = sum(1 for b in data.bugs if b.escaped)
    return {
        "escaped": escaped,
        "bugs": len(data.bugs),
        "rate": escaped / len(data.bugs) if data.bugs else None,
    }
