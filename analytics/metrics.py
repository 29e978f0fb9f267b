"""The metrics JSON of DESIGN.md section 6 (`cdmetrics metrics --format json`): every metric
family (`analytics.dora`, `analytics.build_health`) over a scope's days (`analytics.rollups`:
stored per service, environment and local day by derive), whole or per slice
(`analytics.slices`).

    rollups.load -> rollups.Rollup -> slices.slices -> figures (compute) -> CLI, dashboard,
    weekly report, HTTP API
    selects.load -> rows.ScopeData -> rollups.of_rows -> the same figures (drill-downs, notebooks)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection

from analytics import rollups, stats
from analytics.build_health import build_health
from analytics.dora import (
    change_failure_rate,
    deployment_failure_rate,
    deployment_frequency,
    lead_time,
    recovery_time,
    rework_rate,
)
from analytics.requirements import bug_escape_rate, requirement_lead_time
from analytics.rollups import Rollup
from analytics.rows import ScopeData
from analytics.rules import FailureRules
from analytics.scope import Scope
from analytics.slices import SLICES, slices

# the parts of the scope's rows each metric of the JSON contract reads
NEEDS = {
    "deployment_frequency": ("deployments",),
    "lead_time": ("changes", "merge_requests", "unreleased"),
    "change_failure_rate": ("deployments",),
    "recovery_time": ("deployments", "incidents"),
    "rework_rate": ("deployments",),
    "deployment_failure_rate": ("attempts",),
    "build": ("pipelines",),
    "requirement_lead_time": ("requirements",),
    "bug_escape_rate": ("bugs",),
}


FIGURES: dict[str, Callable[[Rollup, list[str]], dict[str, Any]]] = {
    "deployment_frequency": lambda data, weeks: deployment_frequency(data, weeks),
    "lead_time": lambda data, weeks: lead_time(data),
    "change_failure_rate": lambda data, weeks: change_failure_rate(data),
    "recovery_time": lambda data, weeks: recovery_time(data),
    "rework_rate": lambda data, weeks: rework_rate(data),
    "deployment_failure_rate": lambda data, weeks: deployment_failure_rate(data),
    "build": lambda data, weeks: build_health(data),
    "requirement_lead_time": lambda data, weeks: requirement_lead_time(data),
    "bug_escape_rate": lambda data, weeks: bug_escape_rate(data),
}


def compute(
    data: ScopeData | Rollup, weeks: list[str] | None = None, names: Iterable[str] | None = None
) -> dict[str, Any]:
    """Every metric object of the JSON contract for `data` (rows are rolled up into days first),
    or only those `names`; the deployment-frequency median runs over `weeks` (default: every ISO
    week of the scope)."""
    if isinstance(data, ScopeData):
        data = rollups.of_rows(data)
    scope = data.scope
    if weeks is None:
        weeks = stats.weeks_between(scope.since, scope.until, scope.zone)
    wanted = FIGURES if names is None else set(names)
    return {name: figure(data, weeks) for name, figure in FIGURES.items() if name in wanted}


def sliced(
    data: ScopeData | Rollup, by: str, names: Iterable[str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The metrics (or only those `names`) per week, month, team or service
    (`analytics.slices.slices`: every week or month of the period, each over its own scope)."""
    if isinstance(data, ScopeData):
        data = rollups.of_rows(data)
    return [(s.key, compute(s.data, s.weeks, names)) for s in slices(data, by)]


def metrics(
    conn: Connection, scope: Scope, by: str | None = None, rules: FailureRules | None = None
) -> dict[str, Any]:
    """`cdmetrics metrics` as JSON: the scope, every metric, and with `by` one row per slice
    (by week: with `partial`, the week cut by the period or the clock)."""
    with rollups.collector_paused():
        data = rollups.load(conn, scope, rules)
        result: dict[str, Any] = {"scope": scope.as_json(), **compute(data)}
        if by is not None:
            result["rows"] = [{by: key, **values} for key, values in sliced(data, by)]
    if by == "week":  # a week the period or the clock cuts: not comparable with whole ones
        for row in result["rows"]:
            row["partial"] = scope.partial(row["week"])
    return result


HEADLINE = {  # the figures every surface leads with: name -> path into the metrics JSON
    "deployments": ("deployment_frequency", "deployments"),
    "deploy_days_per_week": ("deployment_frequency", "median_days_per_week"),
    "change_failure_rate": ("change_failure_rate", "rate"),
    "lead_time_median_hours": ("lead_time", "median_hours"),
    "recovery_median_hours": ("recovery_time", "median_hours"),
}


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The headline of a metrics JSON (`metrics`, `compute`, the API's answer): production
    deployments, median deployment days per week, change failure rate, lead time p50 and
    failed-deployment recovery time p50, in hours and shares, unrounded."""
    return {name: figures[metric][field] for name, (metric, field) in HEADLINE.items()}


__all__ = ["FIGURES", "HEADLINE", "NEEDS", "SLICES", "compute", "headline", "metrics", "sliced"]
