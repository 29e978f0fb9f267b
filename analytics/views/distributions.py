"""Counts and distributions of the scope's days the dashboard charts: production deployments per
local day and per week or month and team, finished attempts per service and environment, and the
lead-time and pipeline-duration histograms.

Each figure is a function of the scope's days (`..._of(data)`: `analytics.rollups.Rollup`, or
rows rolled up first, for a caller holding them, as the dashboard does) and a `(conn, scope)`
view reading the days from the rollups (`analytics.rollups.load`).
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select

from analytics import rollups, stats
from analytics.rollups import Rollup
from analytics.rows import ScopeData
from analytics.rules import FailureRules
from analytics.scope import Scope
from analytics.slices import NO_TEAM
from warehouse.schema import Environment

LEAD_TIME_BINS = (0, 1, 4, 12, 24, 48, 72, 168, 336, 720, 2160)  # hours
DURATION_BINS = (0, 120, 300, 480, 600, 900, 1200, 1800, 2700, 3600)  # seconds
BUCKET_COLUMNS = ("team", "deployments", "failed", "partial")  # after the week/month column
BIN_COLUMNS = ("bucket", "count", "low", "high")


def _days(data: ScopeData | Rollup) -> Rollup:
    return rollups.of_rows(data) if isinstance(data, ScopeData) else data


def deployments_per_day_of(data: ScopeData | Rollup) -> list[dict[str, Any]]:
    """Production deployments per local day of the period (days without any included), with
    their ISO week and weekday, for the calendar heatmap."""
    data = _days(data)
    scope, zone = data.scope, data.scope.zone
    counts: Counter[Any] = Counter()
    for d in data.days:
        if d.deployments:
            counts[stats.local_day(d.at, zone)] += d.deployments
    first = stats.local_day(scope.since, zone)
    last = stats.local_day(scope.until - timedelta(microseconds=1), zone)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [
        {
            "day": d.isoformat(),
            "week": stats.week_key(d),
            "weekday": d.strftime("%a"),
            "deployments": counts.get(d, 0),
        }
        for d in days
    ]


def deployments_per_day(
    conn: Connection, scope: Scope, rules: FailureRules | None = None
) -> list[dict[str, Any]]:
    """`deployments_per_day_of` the scope's production deployments."""
    return deployments_per_day_of(rollups.load(conn, scope, rules, ()))


def deployments_per_bucket_of(data: ScopeData | Rollup, by: str = "week") -> list[dict[str, Any]]:
    """Production deployments and failed changes per local ISO week or month (`by`, also the
    key's name) and team: every bucket of the period and every team deploying in it (zero rows
    included: a code freeze stays on the axis), each flagged `partial` when the period or the
    clock cuts it."""
    data = _days(data)
    scope, zone = data.scope, data.scope.zone
    key_of = stats.week_key if by == "week" else stats.month_key
    buckets = stats.weeks_between if by == "week" else stats.months_between
    counts: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    for d in data.days:
        if d.deployments:
            key = (key_of(stats.local_day(d.at, zone)), d.team or NO_TEAM)
            counts[key] += d.deployments
            failed[key] += d.failed
    teams = sorted({team for _, team in counts})
    return [
        {
            by: bucket,
            "team": team,
            "deployments": counts[(bucket, team)],
            "failed": failed[(bucket, team)],
            "partial": scope.partial(bucket),
        }
        for bucket in buckets(scope.since, scope.until, zone)
        for team in teams
    ]


def deployments_per_bucket(
    conn: Connection, scope: Scope, by: str = "week", rules: FailureRules | None = None
) -> list[dict[str, Any]]:
    """`deployments_per_bucket_of` the scope's production deployments."""
    return deployments_per_bucket_of(rollups.load(conn, scope, rules, ()), by)


def deployments_by_service_environment_of(
    data: ScopeData | Rollup, positions: dict[int, int | None]
) -> list[dict[str, Any]]:
    """Finished application deployment attempts per service and environment in the period (every
    environment: the scope's teams and services apply, not its environment; the attempts the
    deployment failure rate counts), by service and the environment's place in the promotion
    path (`positions`: environment id -> position, `environment_positions`)."""
    data = _days(data)
    counts: dict[tuple[str, int | None], list[int]] = defaultdict(lambda: [0, 0])
    names: dict[int | None, str | None] = {}
    for d in data.days:
        if d.attempts_success or d.attempts_failed:
            pair = counts[(d.service, d.environment_id)]
            pair[0] += d.attempts_success
            pair[1] += d.attempts_failed
            names[d.environment_id] = d.environment
    rows = [
        {
            "service": service,
            "environment": names[environment_id],
            "position": positions.get(environment_id) if environment_id is not None else None,
            "successful": successful,
            "failed": failed,
        }
        for (service, environment_id), (successful, failed) in counts.items()
    ]
    rows.sort(
        key=lambda r: (r["service"], r["position"] is None, r["position"] or 0, r["environment"])
    )
    return rows


def environment_positions(conn: Connection) -> dict[int, int | None]:
    """Environment id -> its place in the promotion path (None: not on it)."""
    return {
        id_: position
        for id_, position in conn.execute(select(Environment.id, Environment.position))
    }


def deployments_by_service_environment(
    conn: Connection, scope: Scope, rules: FailureRules | None = None
) -> list[dict[str, Any]]:
    """`deployments_by_service_environment_of` the scope's attempts."""
    data = rollups.load(conn, scope, rules, (), ("attempts",))
    return deployments_by_service_environment_of(data, environment_positions(conn))


def binned(
    values: list[float], bins: tuple[int, ...], label: Callable[[float, float], str]
) -> list[dict[str, Any]]:
    """How many `values` fall in each bin [low, high) of `bins` (the last one open-ended:
    `high` None), with the bin's label; counted by bisecting the sorted values."""
    ranked = sorted(values)
    pairs = list(itertools.pairwise([*bins, float("inf")]))
    return [
        {
            "bucket": label(low, high),
            "count": bisect_left(ranked, high) - bisect_left(ranked, low),
            "low": low,
            "high": None if high == float("inf") else high,
        }
        for low, high in pairs
    ]


def hours_label(low: float, high: float) -> str:
    def short(h: float) -> str:
        return f"{h:g} h" if h < 48 else f"{h / 24:g} d"

    return f"≥ {short(low)}" if high == float("inf") else f"{short(low)} to {short(high)}"


def seconds_label(low: float, high: float) -> str:
    return f"≥ {low / 60:g} min" if high == float("inf") else f"{low / 60:g} to {high / 60:g} min"


def lead_time_histogram_of(data: ScopeData | Rollup) -> list[dict[str, Any]]:
    """Changes per lead-time bucket (hours: under 1, 1 to 4, ..., 3 months and more;
    docs/METRICS.md#lead-time-for-changes)."""
    hours = [h for d in _days(data).days for h in d.lead_hours]
    return binned(hours, LEAD_TIME_BINS, hours_label)


def lead_time_histogram(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """`lead_time_histogram_of` the scope's changes."""
    return lead_time_histogram_of(rollups.load(conn, scope, rows=()))


def duration_histogram_of(data: ScopeData | Rollup) -> list[dict[str, Any]]:
    """Finished pipelines per duration bucket (minutes)."""
    durations = [v for p in _days(data).pipelines for v in p.durations]
    return binned(durations, DURATION_BINS, seconds_label)


def duration_histogram(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """`duration_histogram_of` the scope's pipelines."""
    return duration_histogram_of(rollups.load(conn, scope, rows=()))


__all__ = [
    "BIN_COLUMNS",
    "BUCKET_COLUMNS",
    "DURATION_BINS",
    "LEAD_TIME_BINS",
    "binned",
    "deployments_by_service_environment",
    "deployments_by_service_environment_of",
    "deployments_per_bucket",
    "deployments_per_bucket_of",
    "deployments_per_day",
    "deployments_per_day_of",
    "duration_histogram",
    "duration_histogram_of",
    "environment_positions",
    "hours_label",
    "lead_time_histogram",
    "lead_time_histogram_of",
    "seconds_label",
]
