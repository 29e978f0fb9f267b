"""The weekly report model: one ISO week (in `[sync] timezone`) for the whole organisation, a team
or a service, computed only through the analytics API, so every number equals what
`analytics.metrics.metrics` and `analytics.views` give for the same week and scope.

The scope's days for the twelve weeks ending with the report's week are read once from the
rollups (`analytics.rollups.load`) and cut into local ISO weeks by `analytics.slices.slices`, the
one slicing of every surface; each week's metrics are `analytics.metrics.compute` over that week's
days with that week's scope, which is exactly what `analytics.metrics.metrics` computes for the
week (the tests hold them equal). The lists (failed changes,
incidents, drift, violations, quality gates, notable items) are the dashboard's views for the week's scope.

`period` is the headline every surface shows (`period_metrics`, as `cdmetrics metrics` computes it
without --since/--until): for the last complete week (the default report) the default period of
`analytics.scope`, its twelve trend weeks plus the current partial week; for an earlier week, its
twelve trend weeks. Its days are the same single read, reaching to the period's end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from analytics import rollups, views
from analytics.dora import STAGES
from analytics.metrics import compute, sliced
from analytics.rollups import Rollup
from analytics.rules import FailureRules
from analytics.scope import Scope, UnknownName, default_until
from analytics.slices import slices
from analytics.views import notable
from config.settings import Target
from reports.week import ReportError, Week, last_complete_week

TREND_WEEKS = 12
WAITING = "merged_not_in_production"  # at the week's end (dora.merged_not_in_production)
# key, label, path into the metrics JSON, unit (count, hours, ratio), which way is better,
# and the (numerator, denominator) paths shown beside a rate
HEADLINE: tuple[tuple[str, str, tuple[str, ...], str, str, tuple[str, str] | None], ...] = (
    ("deployments", "Production deployments", ("deployment_frequency", "deployments"), "count", "up", None),
    ("deployment_days", "Deployment days", ("deployment_frequency", "deployment_days"), "count", "up", None),
    ("lead_time_median", "Lead time, median", ("lead_time", "median_hours"), "hours", "down", None),
    ("lead_time_p90", "Lead time, p90", ("lead_time", "p90_hours"), "hours", "down", None),
    ("change_failure_rate", "Change failure rate", ("change_failure_rate", "rate"), "ratio", "down",
     ("failed", "deployments")),
    ("recovery_median", "Recovery time, median", ("recovery_time", "median_hours"), "hours", "down", None),
    ("rework_rate", "Rework rate", ("rework_rate", "rate"), "ratio", "down", ("rework", "deployments")),
    ("deployment_failure_rate", "Deployment failure rate", ("deployment_failure_rate", "rate"), "ratio",
     "down", ("failed", "attempts")),
    ("pipeline_failure_rate", "Pipeline failure rate", ("build", "failure_rate"), "ratio", "down",
     ("failed", "pipelines")),
    ("incidents", "Incidents opened", ("recovery_time", "incidents"), "count", "down", None),
    ("merged_not_in_production", "Merged MRs not in production", ("lead_time", WAITING, "count"),
     "count", "down", None),
    ("merged_not_in_production_oldest", "Oldest of them, age", ("lead_time", WAITING, "oldest_age_hours"),
     "hours", "down", None),
    ("requirement_lead_time_median", "Requirement lead time, median",
     ("requirement_lead_time", "median_hours"), "hours", "down", None),
    ("bug_escape_rate", "Bug escape rate", ("bug_escape_rate", "rate"), "ratio", "down",
     ("escaped", "bugs")),
)  # fmt: skip
LEVELS = {"deployment_days": "deployment_frequency", "lead_time_median": "lead_time"}
LEVELS |= {"change_failure_rate": "change_failure_rate", "recovery_median": "recovery_time"}


@dataclass
class WeeklyReport:
    """Everything a weekly report shows; renderers only format it."""

    week: Week
    scope: Scope
    label: str
    generated_at: datetime
    metrics: dict[str, Any]
    previous_metrics: dict[str, Any]
    headline: list[dict[str, Any]]
    trend: list[dict[str, Any]]
    services: list[dict[str, Any]]
    environments: list[dict[str, Any]]
    stages: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    violations: list[dict[str, Any]]
    notable: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # per service, the SonarQube gate of the week's production deployments (views.quality_gates)
    quality_gates: list[dict[str, Any]] = field(default_factory=list)
    warehouse_empty: bool = False
    period: Scope | None = None
    period_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"Weekly delivery report {self.week.key}: {self.label}"


def value_at(metrics: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path` in the metrics JSON."""
    value: Any = metrics
    for key in path:
        value = value[key]
    return value


def headline(
    current: dict[str, Any], previous: dict[str, Any], targets: dict[str, Target] | None = None
) -> list[dict[str, Any]]:
    """One row per headline metric: value, last week's, the change, its level, the counts
    behind a rate, and its target (`[targets]`) with whether this week's value meets it."""
    rows = []
    targets = targets or {}
    for key, label, path, unit, better, counts in HEADLINE:
        value, before = value_at(current, path), value_at(previous, path)
        section = current[path[0]]
        target = targets.get(key)
        rows.append(
            {
                "key": key,
                "label": label,
                "unit": unit,
                "better": better,
                "value": value,
                "previous": before,
                "change": value - before if value is not None and before is not None else None,
                "numerator": section[counts[0]] if counts else None,
                "denominator": section[counts[1]] if counts else None,
                "level": current[LEVELS[key]]["level"] if key in LEVELS else None,
                "target": target.text if target else None,
                "target_met": target.met(value) if target else None,
            }
        )
    return rows


def report_period(
    week: Week,
    teams: tuple[str, ...],
    services: tuple[str, ...],
    now: datetime,
    weeks: int = TREND_WEEKS,
) -> Scope:
    """The report's headline period: the `weeks` weeks ending with `week`, plus the current
    partial week when `week` is the last complete one at `now` (then it is the default period
    of every surface, `analytics.scope.parse_period`)."""
    first = week.shifted(-(weeks - 1))
    until = week.until
    if last_complete_week(now, week.timezone) == week:
        until = default_until(week.timezone, now)
    return Scope(first.since, until, teams, services, None, week.timezone)


def weekly_metrics(
    conn: Connection,
    week: Week,
    teams: tuple[str, ...],
    services: tuple[str, ...],
    rules: FailureRules,
    weeks: int = TREND_WEEKS,
    span: Scope | None = None,
) -> tuple[list[tuple[Week, Rollup, dict[str, Any]]], Rollup]:
    """For each of the `weeks` weeks ending with `week`: the week, its days (its slice,
    `analytics.slices`, over the week's own scope) and `analytics.metrics.compute` of them; and
    the days of the whole `span` (default: those weeks), read once (`analytics.rollups.load`)."""
    first = week.shifted(-(weeks - 1))
    span = span or Scope(first.since, week.until, teams, services, None, week.timezone)
    data = rollups.load(conn, span, rules)
    by_key = {s.key: s for s in slices(data, "week")}
    out = []
    for offset in range(-(weeks - 1), 1):
        w = week.shifted(offset)
        part = by_key[w.key].data
        out.append((w, part, compute(part)))
    return out, data


def _label(teams: tuple[str, ...], services: tuple[str, ...]) -> str:
    if services:
        return f"service {', '.join(services)}"
    if teams:
        return f"team {', '.join(teams)}"
    return "whole organisation"


def build_report(
    engine: Engine,
    week: Week,
    teams: tuple[str, ...] = (),
    services: tuple[str, ...] = (),
    rules: FailureRules | None = None,
    limit: int = 10,
    now: datetime | None = None,
    targets: dict[str, Target] | None = None,
) -> WeeklyReport:
    """The weekly report of `week` for the organisation, or the named teams or services, with
    `targets` (`TargetsSettings.for_teams`) beside the headline figures."""
    rules = rules or FailureRules()
    now = now or datetime.now(UTC)
    period = report_period(week, teams, services, now)
    with engine.connect() as conn, rollups.collector_paused():
        try:
            views.check_names(conn, teams, services)
        except UnknownName as exc:
            raise ReportError(str(exc)) from None
        series, span = weekly_metrics(conn, week, teams, services, rules, span=period)
        (_, data, current), (_, _, previous) = series[-1], series[-2]
        scope = data.scope
        return WeeklyReport(
            week=week,
            scope=scope,
            label=_label(teams, services),
            generated_at=now,
            metrics=current,
            previous_metrics=previous,
            headline=headline(current, previous, targets),
            trend=[_trend_row(w, m, d.scope.partial(w.key, now)) for w, d, m in series],
            services=_services(data),
            environments=views.deployments_by_service_environment(conn, scope, rules),
            stages=_stages(current, previous),
            failures=views.failed_changes(conn, scope),
            incidents=views.incidents(conn, scope),
            drift=sorted(
                views.drift_matrix(conn, scope, behind_only=True),
                key=lambda r: (-(r["drift_age_hours"] or -1.0), r["service"], r["position"] or 0),
            ),
            violations=views.select_violations(conn, scope, during="new", by_severity=True),
            notable={
                "slowest_merge_requests": slowest_merge_requests(conn, scope, limit),
                "longest_lived_branches": notable.longest_lived_branches(conn, scope, limit),
                "most_failing_pipelines": notable.failing_pipelines(conn, scope, limit),
            },
            quality_gates=views.quality_gates(conn, scope)["services"],
            warehouse_empty=not any(views.presence(conn).values()),
            period=period,
            period_metrics=compute(span),
        )


def missed_targets(report: WeeklyReport) -> list[dict[str, Any]]:
    """The headline rows whose value misses its target this week."""
    return [row for row in report.headline if row["target_met"] is False]


def _trend_row(week: Week, metrics: dict[str, Any], partial: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"week": week.key, "since": week.since, "partial": partial}
    for key, _, path, *_ in HEADLINE:
        row[key] = value_at(metrics, path)
    return row


SERVICE_FIGURES = (
    "deployment_frequency",
    "lead_time",
    "change_failure_rate",
    "recovery_time",
    "build",
)


def _services(data: Rollup) -> list[dict[str, Any]]:
    """Per service of the scope: its production figures this week (`analytics.metrics.sliced`
    by service)."""
    teams = {
        r.service: r.team for rows in data.parts().values() for r in rows if r.team is not None
    }
    rows = []
    for service, m in sliced(data, "service", SERVICE_FIGURES):
        rows.append(
            {
                "service": service,
                "team": teams.get(service),
                "deployments": m["deployment_frequency"]["deployments"],
                "deployment_days": m["deployment_frequency"]["deployment_days"],
                "lead_time_median_hours": m["lead_time"]["median_hours"],
                "failed_changes": m["change_failure_rate"]["failed"],
                "change_failure_rate": m["change_failure_rate"]["rate"],
                "recovery_median_hours": m["recovery_time"]["median_hours"],
                "pipelines": m["build"]["pipelines"],
                "pipeline_failure_rate": m["build"]["failure_rate"],
            }
        )
    return sorted(rows, key=lambda r: (-r["deployments"], r["service"]))


def _stages(current: dict[str, Any], previous: dict[str, Any]) -> list[dict[str, Any]]:
    now, before = current["lead_time"], previous["lead_time"]
    return [
        {
            "stage": stage,
            "median_hours": now["stages"][stage],
            "previous_median_hours": before["stages"][stage],
            "negative_spans_dropped": now["negative_spans_dropped"][stage],
        }
        for stage in STAGES
    ]


def slowest_merge_requests(conn: Connection, scope: Scope, limit: int = 10) -> list[dict[str, Any]]:
    """The merge requests (or, for a change no MR brought, the commit) deployed to production this
    week whose slowest change waited longest: `views.slowest_changes` grouped by merge request.
    A merge request's slowest change starts at its first commit, so this is its cycle time."""
    seen: dict[str, dict[str, Any]] = {}
    for change in views.slowest_changes(conn, scope, limit=limit * 5):
        key = f"{change['service']}|{change['merge_request'] or change['sha']}"
        if key not in seen:
            seen[key] = change
        if len(seen) == limit:
            break
    return list(seen.values())
