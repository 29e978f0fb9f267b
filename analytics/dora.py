"""The DORA metrics of a scope's rows (`analytics.rows.ScopeData`): deployment frequency, lead
time for changes, change failure rate, failed deployment recovery time, deployment rework rate and
deployment failure rate. Each function computes one metric object of the metrics JSON
(DESIGN.md section 6) and links to its definition in docs/METRICS.md."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from analytics import stats
from analytics.rows import IncidentRow, MergeRequestRow, ScopeData

STAGES = ("coding", "pickup", "review", "deploy", "cycle")  # of an MR's lead time


def deployment_frequency(data: ScopeData, weeks: list[str]) -> dict[str, Any]:
    """Production deployments, distinct deployment days, and the median of days per week over
    `weeks` (weeks without a deployment count as zero).
    Definition: docs/METRICS.md#deployment-frequency"""
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
    merge-request stage breakdown (median hours) and the negative spans dropped per stage.
    Definition: docs/METRICS.md#lead-time-for-changes"""
    hours = [h for r in data.changes if (h := r.lead_time_hours) is not None]
    stages, dropped = _stages(data.merge_requests)
    return {
        "changes": len(hours),
        **stats.lead_time_figures(hours, stages),
        "merge_requests": len(data.merge_requests),
        "negative_spans_dropped": dropped,
        "merged_not_in_production": merged_not_in_production(data),
    }


def merged_not_in_production(data: ScopeData, until: datetime | None = None) -> dict[str, Any]:
    """{count, median_age_hours, oldest_age_hours} of the merged MRs not in production at `until`
    (default: the scope's end) among `data.unreleased` (`selects.unreleased`); ages from the merge
    to `until`, or to now when `until` is still to come.
    Definition: docs/METRICS.md#lead-time-for-changes"""
    until = until or data.scope.until
    end = min(until, datetime.now(UTC))
    ages = [
        stats.hours(end - r.at)
        for r in data.unreleased
        if r.at < until and (r.released_at is None or r.released_at >= until)
    ]
    return {
        "count": len(ages),
        "median_age_hours": stats.percentile(ages, 0.5),
        "oldest_age_hours": max(ages, default=None),
    }


def _stages(rows: list[MergeRequestRow]) -> tuple[dict[str, list[float]], dict[str, int]]:
    spans: dict[str, list[float]] = {name: [] for name in STAGES}
    dropped: dict[str, int] = dict.fromkeys(STAGES, 0)
    for r in rows:
        points = {
            "coding": (r.first_commit_at, r.created_at),
            "pickup": (r.created_at, r.first_review_at),
            "review": (r.first_review_at, r.merged_at),
            "deploy": (r.merged_at, r.at),
            "cycle": (r.first_commit_at, r.at),
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
    """Failed changes over production deployments, with the failed changes per reason.
    Definition: docs/METRICS.md#change-failure-rate"""
    failed = [r for r in data.deployments if r.failed]
    rate = stats.ratio(len(failed), len(data.deployments))
    return {
        "failed": len(failed),
        "deployments": len(data.deployments),
        "rate": rate,
        "level": stats.failure_level(rate),
        "reasons": {
            "incident": sum(1 for r in failed if r.incident),
            "rollback": sum(1 for r in failed if r.failed_rollback),
            "hotfix": sum(1 for r in failed if r.hotfix),
        },
    }


def recovery_time(data: ScopeData) -> dict[str, Any]:
    """Hours from a failed change to its recovery; unrecovered ones counted, not in the median.
    Incidents' time to restore (median hours) leaves out, and counts, those resolved before they
    were opened (clock skew, back-filled tickets).
    Definition: docs/METRICS.md#failed-deployment-recovery-time"""
    failed = [r for r in data.deployments if r.failed]
    hours = [stats.hours(r.recovered_at - r.at) for r in failed if r.recovered_at]
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


def _restore_hours(incidents: list[IncidentRow]) -> tuple[list[float], int]:
    """The resolved incidents' times to restore in hours, and how many were resolved before they
    were opened (left out, like negative MR stage spans)."""
    restore, backwards = [], 0
    for r in incidents:
        resolved = r.resolved_at
        if resolved is None:
            continue
        if resolved < r.at:
            backwards += 1
        else:
            restore.append(stats.hours(resolved - r.at))
    return restore, backwards


def rework_rate(data: ScopeData) -> dict[str, Any]:
    """Rework deployments (rollbacks, hotfixes, deployments inside a failure's recovery) over
    production deployments. Definition: docs/METRICS.md#deployment-rework-rate"""
    rework = sum(1 for r in data.deployments if r.rework)
    return {
        "rework": rework,
        "deployments": len(data.deployments),
        "rate": stats.ratio(rework, len(data.deployments)),
    }


def deployment_failure_rate(data: ScopeData) -> dict[str, Any]:
    """Failed attempts over finished attempts in the scope's environment (the production tier when
    none is named, like every other metric), and per environment (all of them).
    Definition: docs/METRICS.md#deployment-failure-rate"""
    per_env: dict[str, Counter[str]] = defaultdict(Counter)
    for r in data.attempts:
        per_env[r.environment][r.status] += 1
    named = data.scope.environment
    in_scope = Counter(
        r.status
        for r in data.attempts
        if (r.environment == named if named else r.tier == "production")
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


__all__ = [
    "STAGES",
    "change_failure_rate",
    "deployment_failure_rate",
    "deployment_frequency",
    "lead_time",
    "merged_not_in_production",
    "recovery_time",
    "rework_rate",
]
