"""The metrics JSON of DESIGN.md section 6 (`cdmetrics metrics --format json`), computed from the
scope's rows (`analytics.metrics.load`), whole or sliced by week, month, team or service."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from analytics import stats
from analytics.derive import FailureRules
from analytics.metrics import SLICES, STAGES, Row, ScopeData, load
from analytics.scope import Scope


def deployment_frequency(data: ScopeData, weeks: list[str]) -> dict[str, Any]:
    """Production deployments, distinct deployment days, and the median of days per week over
    every week of the period (weeks without a deployment count as zero)."""
    zone = data.scope.zone
    days = {stats.local_day(r.at, zone) for r in data.deployments}
    per_week = Counter(stats.week_key(d) for d in days)
    median = stats.percentile([per_week.get(w, 0) for w in weeks], 0.5) if weeks else None
    return {
        "deployments": len(data.deployments),
        "deployment_days": len(days),
        "median_days_per_week": median,
        "level": stats.frequency_level(median, len(days), data.scope.days)
        if data.deployments
        else None,
    }


def lead_time(data: ScopeData) -> dict[str, Any]:
    """Median and p90 hours from change start to its first production deployment, with the
    merge-request stage breakdown (median hours) and the negative spans dropped per stage."""
    hours = [
        stats.hours(r.at - r.values["started_at"]) for r in data.changes if r.values["started_at"]
    ]
    stages, dropped = _stages(data.merge_requests)
    median = stats.percentile(hours, 0.5)
    return {
        "changes": len(hours),
        "median_hours": median,
        "p90_hours": stats.percentile(hours, 0.9),
        "level": stats.lead_time_level(median),
        "stages": {name: stats.percentile(values, 0.5) for name, values in stages.items()},
        "merge_requests": len(data.merge_requests),
        "negative_spans_dropped": dropped,
        "merged_not_in_production": merged_not_in_production(data),
    }


def merged_not_in_production(data: ScopeData, until: datetime | None = None) -> dict[str, Any]:
    """{count, median_age_hours, oldest_age_hours} of the merged MRs not in production at `until`
    (default: the scope's end) among `data.unreleased` (`metrics.unreleased`); ages from the merge
    to `until`, or to now when `until` is still to come."""
    until = until or data.scope.until
    end = min(until, datetime.now(UTC))
    ages = [
        stats.hours(end - r.at)
        for r in data.unreleased
        if r.at < until and (r.values["released_at"] is None or r.values["released_at"] >= until)
    ]
    return {
        "count": len(ages),
        "median_age_hours": stats.percentile(ages, 0.5),
        "oldest_age_hours": max(ages, default=None),
    }


def _stages(rows: list[Row]) -> tuple[dict[str, list[float]], dict[str, int]]:
    spans: dict[str, list[float]] = {name: [] for name in STAGES}
    dropped: dict[str, int] = dict.fromkeys(STAGES, 0)
    for r in rows:
        v = r.values
        points = {
            "coding": (v["first_commit_at"], v["created_at"]),
            "pickup": (v["created_at"], v["first_review_at"]),
            "review": (v["first_review_at"], v["merged_at"]),
            "deploy": (v["merged_at"], r.at),
            "cycle": (v["first_commit_at"], r.at),
        }
        for name, (start, end) in points.items():
            if start is None or end is None:
                continue
            span = stats.hours(end - start)
            if span < 0:
                dropped[name] += 1
            else:
                spans[name].append(span)
    return spans, dropped


def change_failure_rate(data: ScopeData) -> dict[str, Any]:
    """Failed changes over production deployments, with the failed changes per reason."""
    failed = [r for r in data.deployments if r.values["failed"] is not None]
    rate = stats.ratio(len(failed), len(data.deployments))
    return {
        "failed": len(failed),
        "deployments": len(data.deployments),
        "rate": rate,
        "level": stats.failure_level(rate),
        "reasons": {
            "incident": sum(1 for r in failed if r.values["incident"]),
            "rollback": sum(1 for r in failed if r.values["failed_rollback"]),
            "hotfix": sum(1 for r in failed if r.values["hotfix"]),
        },
    }


def recovery_time(data: ScopeData) -> dict[str, Any]:
    """Hours from a failed change to its recovery; unrecovered ones counted, not in the median.
    Incidents' time to restore (median hours) leaves out, and counts, those resolved before they
    were opened (clock skew, back-filled tickets)."""
    failed = [r for r in data.deployments if r.values["failed"] is not None]
    hours = [
        stats.hours(r.values["recovered_at"] - r.at) for r in failed if r.values["recovered_at"]
    ]
    median = stats.percentile(hours, 0.5)
    restore, backwards = _restore_hours(data.incidents)
    return {
        "failures": len(hours),
        "unrecovered": len(failed) - len(hours),
        "incidents": len(data.incidents),
        "incidents_open": len(data.incidents) - len(restore) - backwards,
        "incidents_resolved_before_opened": backwards,
        "incident_restore_median_hours": stats.percentile(restore, 0.5),
        "median_hours": median,
        "p90_hours": stats.percentile(hours, 0.9),
        "level": stats.recovery_level(median),
    }


def _restore_hours(incidents: list[Row]) -> tuple[list[float], int]:
    """The resolved incidents' times to restore in hours, and how many were resolved before they
    were opened (left out, like negative MR stage spans)."""
    restore, backwards = [], 0
    for r in incidents:
        resolved = r.values["resolved_at"]
        if resolved is None:
            continue
        if resolved < r.at:
            backwards += 1
        else:
            restore.append(stats.hours(resolved - r.at))
    return restore, backwards


def rework_rate(data: ScopeData) -> dict[str, Any]:
    rework = sum(1 for r in data.deployments if r.values["rework"])
    return {
        "rework": rework,
        "deployments": len(data.deployments),
        "rate": stats.ratio(rework, len(data.deployments)),
    }


def deployment_failure_rate(data: ScopeData) -> dict[str, Any]:
    """Failed attempts over finished attempts in the scope's environment (the production tier when
    none is named, like every other metric), and per environment (all of them)."""
    per_env: dict[str, Counter[str]] = defaultdict(Counter)
    for r in data.attempts:
        per_env[r.values["environment"]][r.values["status"]] += 1
    named = data.scope.environment
    in_scope = Counter(
        r.values["status"]
        for r in data.attempts
        if (r.values["environment"] == named if named else r.values["tier"] == "production")
    )
    failed, attempts = in_scope["failed"], in_scope["failed"] + in_scope["success"]
    return {
        "failed": failed,
        "attempts": attempts,
        "rate": stats.ratio(failed, attempts),
        "environments": {
            env: {
                "failed": c["failed"],
                "attempts": c["failed"] + c["success"],
                "rate": stats.ratio(c["failed"], c["failed"] + c["success"]),
            }
            for env, c in sorted(per_env.items())
        },
    }


def build_health(data: ScopeData) -> dict[str, Any]:
    """Pipeline failure rate (canceled and skipped counted apart), durations, queue time,
    default-branch red time and failing tests."""
    by_status = Counter(r.values["status"] for r in data.pipelines)
    durations = [
        r.values["duration_s"] for r in data.pipelines if r.values["duration_s"] is not None
    ]
    queued = [r.values["queued_s"] for r in data.pipelines if r.values["queued_s"] is not None]
    decided = by_status["success"] + by_status["failed"]
    return {
        "pipelines": len(data.pipelines),
        "failed": by_status["failed"],
        "failure_rate": stats.ratio(by_status["failed"], decided),
        "canceled": by_status["canceled"],
        "skipped": by_status["skipped"],
        "median_duration_s": stats.percentile(durations, 0.5),
        "p90_duration_s": stats.percentile(durations, 0.9),
        "median_queue_s": stats.percentile(queued, 0.5),
        "default_branch_red_share": _red_share(data),
        "failed_tests": sum(int(r.values["failed_tests"] or 0) for r in data.pipelines),
        "pipelines_with_failed_tests": sum(1 for r in data.pipelines if r.values["failed_tests"]),
    }


def _red_share(data: ScopeData) -> float | None:
    """Share of the period the latest finished default-branch pipeline was failed, over repos
    (time before a repository's first finished pipeline in the period is not counted)."""
    by_repo: dict[int, list[Row]] = defaultdict(list)
    for r in data.pipelines:
        if r.values["default_branch"] and r.values["status"] in ("success", "failed"):
            by_repo[r.values["repo_id"]].append(r)
    red = total = 0.0
    for rows in by_repo.values():
        rows.sort(key=lambda r: r.at)
        for current, following in zip(rows, [*rows[1:], None], strict=True):
            end: datetime = following.at if following else data.scope.until
            span = (end - current.at).total_seconds()
            total += span
            if current.values["status"] == "failed":
                red += span
    return red / total if total else None


def compute(data: ScopeData) -> dict[str, Any]:
    """Every metric object of the JSON contract for `data`."""
    weeks = stats.weeks_between(data.scope.since, data.scope.until, data.scope.zone)
    return {
        "deployment_frequency": deployment_frequency(data, weeks),
        "lead_time": lead_time(data),
        "change_failure_rate": change_failure_rate(data),
        "recovery_time": recovery_time(data),
        "rework_rate": rework_rate(data),
        "deployment_failure_rate": deployment_failure_rate(data),
        "build": build_health(data),
    }


def metrics(
    conn: Connection, scope: Scope, by: str | None = None, rules: FailureRules | None = None
) -> dict[str, Any]:
    """`cdmetrics metrics` as JSON: the scope, every metric, and with `by` one row per slice
    (by week: with `partial`, the week cut by the period or the clock)."""
    data = load(conn, scope, rules)
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


def sliced(data: ScopeData, by: str) -> list[tuple[str, dict[str, Any]]]:
    """The metrics per week, month, team or service (every week/month of the period appears)."""
    if by not in SLICES:
        raise ValueError(f"cannot slice by {by!r}; use one of {', '.join(SLICES)}")
    zone, scope = data.scope.zone, data.scope
    if by in ("week", "month"):
        key_of = stats.week_key if by == "week" else stats.month_key
        keys = (stats.weeks_between if by == "week" else stats.months_between)(
            scope.since, scope.until, zone
        )
        out = []
        for key in keys:
            part = data.subset(partial(_in_bucket, key_of=key_of, key=key, zone=zone))
            values = compute(part)
            values["deployment_frequency"] = deployment_frequency(
                part,
                [key]
                if by == "week"
                else [
                    w
                    for w in stats.weeks_between(scope.since, scope.until, zone)
                    if _week_in_month(w, key)
                ],
            )
            values["lead_time"]["merged_not_in_production"] = waiting_at_end(data, key)
            out.append((key, values))
        return out
    attribute = "service" if by == "service" else "team"
    names = sorted(
        {
            getattr(r, attribute) or "(no team)"
            for rows in (
                data.deployments,
                data.changes,
                data.merge_requests,
                data.attempts,
                data.pipelines,
            )
            for r in rows
        }
    )
    return [
        (name, compute(data.subset(partial(_owned_by, attribute=attribute, name=name))))
        for name in names
    ]


def waiting_at_end(data: ScopeData, key: str) -> dict[str, Any]:
    """merged_not_in_production at the end of a week or month slice (the scope's end at most)."""
    end = min(stats.bucket_end(key, data.scope.zone), data.scope.until)
    return merged_not_in_production(data, end)


def _in_bucket(r: Row, key_of: Callable[[date], str], key: str, zone: ZoneInfo) -> bool:
    return key_of(stats.local_day(r.at, zone)) == key


def _owned_by(r: Row, attribute: str, name: str) -> bool:
    return (getattr(r, attribute) or "(no team)") == name


def _week_in_month(week: str, month: str) -> bool:
    year, number = week.split("-W")
    monday = datetime.fromisocalendar(int(year), int(number), 1).date()
    return stats.month_key(monday) == month
