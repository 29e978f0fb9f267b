"""The SonarQube quality gate of what went to production (dashboard Policies page, weekly
report, API): per service, the production deployments of the period whose commit had a green
gate, a red one or none, by the rule of the quality-gate policies
(analytics.policies.quality_gate: the commit's latest analysis on an allowed branch made before
the deployment started); and the deployments that went out red."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

import analytics.policies.quality_gate as rule
from analytics.policies.period import Scan
from analytics.scope import Scope
from config.settings import PROMOTION_PATH, PoliciesSettings
from warehouse.schema import Service, Team


def _in_scope(conn: Connection, scope: Scope) -> set[str] | None:
    """The services the scope's team and service filters keep (None: every one)."""
    if not scope.teams and not scope.services:
        return None
    query = select(Service.name).outerjoin(Team, Team.id == Service.team_id)
    if scope.teams:
        query = query.where(Team.name.in_(scope.teams))
    if scope.services:
        query = query.where(Service.name.in_(scope.services))
    return set(conn.execute(query).scalars())


def quality_gates(
    conn: Connection,
    scope: Scope,
    promotion_path: Sequence[str] = PROMOTION_PATH,
    policies: PoliciesSettings | None = None,
) -> dict[str, Any]:
    """`{"services": [...], "red": [...], "total": {...}}`: per service (worst share first) the
    production deployments of the period (`deployments`), how many had a green gate (`green`),
    a red one (`red`), no deciding analysis (`missing`) and the green share (None without
    deployments); `red` lists the deployments that went out red, newest first."""
    params = (policies or PoliciesSettings()).quality_gate_failed
    scan = Scan(scope.since, scope.until, list(promotion_path))
    kept = _in_scope(conn, scope)
    per: dict[str, dict[str, int]] = {}
    red: list[dict[str, Any]] = []
    if not rule.analysed(conn):  # no analysis to find: every gate is missing, counted in SQL
        for name, count in rule.guarded_per_service(conn, scan).items():
            if kept is None or name in kept:
                per[name] = {"deployments": count, "green": 0, "red": 0, "missing": count}
        return _summed(per, red)
    found = [(d, c) for d, c in rule.guarded(conn, scan) if kept is None or d.service in kept]
    analyses = rule.analyses_of(conn, [c for _, c in found if c])
    for d, commit in found:
        v = rule.verdict(analyses.get(commit or "", []), d.start, params)
        counts = per.setdefault(d.service, {"deployments": 0, "green": 0, "red": 0, "missing": 0})
        counts["deployments"] += 1
        key = {rule.PASSED: "green", rule.FAILED: "red"}.get(v.status, "missing")
        counts[key] += 1
        if v.status == rule.FAILED:
            red.append(
                {
                    "service": d.service,
                    "environment": d.environment,
                    "finished_at": d.finished_at,
                    "commit": commit,
                    "conditions": rule.describe_conditions(v.failing),
                    "analysis_url": v.analysis.url,
                    "deployment_url": d.url,
                }
            )
    return _summed(per, red)


def _summed(per: dict[str, dict[str, int]], red: list[dict[str, Any]]) -> dict[str, Any]:
    """The view's answer from the counts per service and the red deployments."""
    services = [{"service": name, **c, "share_green": _share(c)} for name, c in per.items()]
    services.sort(
        key=lambda r: (r["share_green"] if r["share_green"] is not None else 2, r["service"])
    )
    total = {k: sum(c[k] for c in per.values()) for k in ("deployments", "green", "red", "missing")}
    red.sort(key=lambda r: r["finished_at"], reverse=True)
    return {"services": services, "red": red, "total": {**total, "share_green": _share(total)}}


def _share(counts: dict[str, int]) -> float | None:
    return counts["green"] / counts["deployments"] if counts["deployments"] else None
