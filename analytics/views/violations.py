"""Policy violations as scans recorded them (`policy_violation`, analytics.policies.run.store):
the one select every surface reads (the dashboard's Policies and Environments pages, the weekly
report, the API's `GET /api/v1/violations`, and `policy scan` reading back what it stored), and the
one rule of what is new.

**New this week** (DESIGN.md section 9): a violation is new when it *occurred* (`occurred_at`, not
when a scan first found it) in the period's last ISO week, counted in the scope's time zone, before
the period's end; so a first scan over months does not make months of violations new. For the
weekly report's scope (one ISO week) that is the week itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, case, or_, select

from analytics import stats
from analytics.scope import Scope
from analytics.views._common import as_dicts
from warehouse.schema import Environment, PolicyViolation, Service, Team

# which violations of the period: open at some time in it, occurred in it, or new (above)
During = Literal["open", "occurred", "new"]


def new_since(scope: Scope) -> datetime:
    """When "new this week" starts for `scope`: Monday 00:00 (in the scope's time zone) of the
    ISO week holding the period's last moment."""
    last_day = stats.local_day(scope.until - timedelta(microseconds=1), scope.zone)
    monday = last_day - timedelta(days=last_day.weekday())
    return datetime.combine(monday, time(0), tzinfo=scope.zone)


def select_violations(
    conn: Connection,
    scope: Scope,
    *,
    during: During = "open",
    policies: Sequence[str] = (),
    severities: Sequence[str] = (),
    unresolved: bool = False,
    by_severity: bool = False,
) -> list[dict[str, Any]]:
    """The violations of the scope's teams and services (its environment only when one is named)
    `during` the period: `open` at some time in it (occurred before its end, not resolved before
    its start), `occurred` in it, or `new` (`new_since`); only `policies` and `severities` when
    given, only unresolved ones if asked. The latest to occur first (worst first `by_severity`).

    Each row: policy, severity, service, team, environment, subject, message, url, occurred_at,
    first_seen_at, resolved_at, `new` (occurred at or after `new_since(scope)`) and `open` (not
    resolved)."""
    query = (
        select(
            PolicyViolation.policy,
            PolicyViolation.severity,
            Service.name.label("service"),
            Team.name.label("team"),
            Environment.name.label("environment"),
            PolicyViolation.subject,
            PolicyViolation.message,
            PolicyViolation.url,
            PolicyViolation.occurred_at,
            PolicyViolation.first_seen_at,
            PolicyViolation.resolved_at,
        )
        .select_from(PolicyViolation)
        .outerjoin(Service, Service.id == PolicyViolation.service_id)
        .outerjoin(Team, Team.id == Service.team_id)
        .outerjoin(Environment, Environment.id == PolicyViolation.environment_id)
    )
    fresh = new_since(scope)
    if during == "open":
        query = query.where(
            PolicyViolation.occurred_at < scope.until,
            or_(PolicyViolation.resolved_at.is_(None), PolicyViolation.resolved_at >= scope.since),
        )
    else:
        start = scope.since if during == "occurred" else fresh
        query = query.where(
            PolicyViolation.occurred_at >= start, PolicyViolation.occurred_at < scope.until
        )
    if scope.services:
        query = query.where(Service.name.in_(scope.services))
    if scope.teams:
        query = query.where(Team.name.in_(scope.teams))
    if scope.environment is not None:
        query = query.where(Environment.name == scope.environment)
    if policies:
        query = query.where(PolicyViolation.policy.in_(policies))
    if severities:
        query = query.where(PolicyViolation.severity.in_(severities))
    if unresolved:
        query = query.where(PolicyViolation.resolved_at.is_(None))
    order: list[Any] = [PolicyViolation.occurred_at.desc(), PolicyViolation.policy]
    if by_severity:
        worst = case({"error": 0, "warn": 1, "info": 2}, value=PolicyViolation.severity, else_=3)
        order.insert(0, worst)
    rows = as_dicts(conn.execute(query.order_by(*order, PolicyViolation.subject)))
    for r in rows:
        r["new"] = r["occurred_at"] >= fresh
        r["open"] = r["resolved_at"] is None
    return rows
