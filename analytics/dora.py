"""The DORA metrics of a scope's days (`analytics.rollups.Rollup`): deployment frequency, lead
time for changes, change failure rate, failed deployment recovery time, deployment rework rate and
deployment failure rate. Each function computes one metric object of the metrics JSON
(DESIGN.md section 6) and links to its definition in docs/METRICS.md."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from analytics import stats
from analytics.rollups import STAGES, Rollup
from analytics.rows import IncidentRow


def deployment_frequency(data: Rollup, weeks: list[str]) -> dict[str, Any]:
    """Production deployments, distinct deployment days, and the median of days per week over
    `weeks` (weeks without a deployment count as zero).
    Definition: docs/METRICS.md#deployment-frequency"""
    zone = data.scope.zone
    deployments = sum(d.deployments for d in data.days)
    days = {stats.local_day(d.at, zone) for d in data.days if d.deployments}
    per_week = Counter(stats.week_key(d) for d in days)
    median = stats.percentile([per_week.get(w, 0) for w in weeks], 0.5) if weeks else None
    return {
        "deployments": deployments,
        "deployment_days": len(days),
        "median_days_per_week": median,
        "level": stats.frequency_level(median, len(days), data.scope.days) if deployments else None,
    }


def lead_time(data: Rollup) -> dict[str, Any]:
    """Median and p90 hours from change start to its first production deployment, with the
    merge-request stage breakdown (median hours) and the negative spans dropped per stage.
    Definition: docs/METRICS.md#lead-time-for-changes"""
    hours = list(chain.from_iterable(d.lead_hours for d in data.days))
    released = [d for d in data.days if d.merge_requests]  # the only days with stage spans
    stages = {name: list(chain.from_iterable(d.stages[name] for d in released)) for name in STAGES}
    dropped = {name: sum(d.dropped[name] for d in released) for name in STAGES}
    return {
        "changes": len(hours),
        **stats.lead_time_figures(hours, stages),
        "merge_requests": sum(d.merge_requests for d in released),
        "negative_spans_dropped": dropped,
        "merged_not_in_production": merged_not_in_production(data),
    }


def merged_not_in_production(data: Rollup, until: datetime | None = None) -> dict[str, Any]:
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


def change_failure_rate(data: Rollup) -> dict[str, Any]:
    """Failed changes over production deployments, with the failed changes per reason.
    Definition: docs/METRICS.md#change-failure-rate"""
    failed = sum(d.failed for d in data.days)
    deployments = sum(d.deployments for d in data.days)
    rate = stats.ratio(failed, deployments)
    return {
        "failed": failed,
        "deployments": deployments,
        "rate": rate,
        "level": stats.failure_level(rate),
        "reasons": {
            "incident": sum(d.incident for d in data.days),
            "rollback": sum(d.failed_rollback for d in data.days),
            "hotfix": sum(d.hotfix for d in data.days),
        },
    }


def recovery_time(data: Rollup) -> dict[str, Any]:
    """Hours from a failed change to its recovery; unrecovered ones counted, not in the median.
    Incidents' time to restore (median hours) leaves out, and counts, those resolved before they
    were opened (clock skew, back-filled tickets).
    Definition: docs/METRICS.md#failed-deployment-recovery-time"""
    hours = list(chain.from_iterable(d.recovery_hours for d in data.days))
    median = stats.percentile(hours, 0.5)
    restore, backwards = _restore_hours(data.incidents)
    return {
        "failures": len(hours),
        "unrecovered": sum(d.failed for d in data.days) - len(hours),
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


def rework_rate(data: Rollup) -> dict[str, Any]:
    """Rework deployments (rollbacks, hotfixes, deployments inside a failure's recovery) over
    production deployments. Definition: docs/METRICS.md#deployment-rework-rate"""
    rework = sum(d.rework for d in data.days)
    deployments = sum(d.deployments for d in data.days)
    return {
        "rework": rework,
        "deployments": deployments,
        "rate": stats.ratio(rework, deployments),
    }


def deployment_failure_rate(data: Rollup) -> dict[str, Any]:
    """Failed attempts over finished attempts in the scope's environment (the production tier when
    none is named, like every other metric), and per environment (all of them).
    Definition: docs/METRICS.md#deployment-failure-rate"""
    per_env: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [failed, attempts]
    failed = attempts = 0
    named = data.scope.environment
    for d in data.days:
        if not (d.attempts_success or d.attempts_failed):
            continue
        both = d.attempts_failed + d.attempts_success
        env = per_env[d.environment or ""]
        env[0] += d.attempts_failed
        env[1] += both
        if d.environment == named if named else d.tier == "production":
            failed += d.attempts_failed
            attempts += both
    return {
        "failed": failed,
        "attempts": attempts,
        "rate": stats.ratio(failed, attempts),
        "environments": {
            env: {"failed": f, "attempts": a, "rate": stats.ratio(f, a)}
            for env, (f, a) in sorted(per_env.items())
        },
    }


__all__ = [
    "STAGES",  # re-exported from analytics.rollups
    "change_failure_rate",
    "deployment_failure_rate",
    "deployment_frequency",
    "lead_time",
    "merged_not_in_production",
    "recovery_time",
    "rework_rate",
]
