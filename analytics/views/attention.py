"""Services needing attention, for the Monday look: each signal that exists in the warehouse,
worst first.

Signals (a service appears when at least one applies):
- failed changes not recovered (in the period);
- failed changes in the recent week, and a change failure rate rising from the week before;
- a red default branch (its latest finished pipeline of the period failed), and since when;
- open policy violations, the newest first (once `cdmetrics policy scan` has stored some);
- the worst drift of the latest drift snapshot, when older than a week (`cdmetrics derive`
  records a snapshot).

The recent week is the last complete ISO week of the period and the one before it
(`comparison_weeks`), so a Monday look compares last week with the week before.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from analytics import stats
from analytics.scope import Scope
from analytics.views._common import Window
from analytics.views.builds import default_branches
from analytics.views.delivery import failure_counts
from analytics.views.environments import drift_matrix
from analytics.views.violations import select_violations

# weight of each signal in the ordering (a failed change not yet recovered is the most urgent)
WEIGHTS = {"unrecovered": 4.0, "failed": 2.0, "rising": 2.0, "red_day": 1.0, "violation": 1.0}
# drift younger than this is a promotion in progress, not a stuck service
DRIFT_NOTICED_HOURS = 7 * 24


def comparison_weeks(scope: Scope) -> tuple[tuple[str, Window], tuple[str, Window]] | None:
    """The last complete ISO week inside the period and the week before it, as (key, window);
    None when the period holds fewer than two complete weeks."""
    return comparison_buckets(scope, "week")


def comparison_buckets(
    scope: Scope, by: str = "week"
) -> tuple[tuple[str, Window], tuple[str, Window]] | None:
    """The last complete local ISO week (`by` week) or month (`by` month) inside the period and
    the one before it, as (key, window); None when the period holds fewer than two complete."""
    zone = scope.zone
    between = stats.weeks_between if by == "week" else stats.months_between
    complete = []
    for key in between(scope.since, scope.until, zone):
        start, end = stats.bucket_bounds(key, zone)
        if start >= scope.since and end <= scope.until:
            complete.append((key, (start, end)))
    return (complete[-1], complete[-2]) if len(complete) >= 2 else None


def services_needing_attention(
    conn: Connection, scope: Scope, limit: int = 15
) -> list[dict[str, Any]]:
    """One row per service with a signal: the reasons in words, the figures behind them, and a
    score ordering the rows (worst first)."""
    weeks = comparison_weeks(scope)
    if weeks is None:  # a short period: its last 7 days against the 7 before
        recent: Window = (scope.until - timedelta(days=7), scope.until)
        before: Window = (scope.until - timedelta(days=14), recent[0])
    else:
        recent, before = weeks[0][1], weeks[1][1]
    rows: dict[str, dict[str, Any]] = {}

    def entry(service: str, team: str | None) -> dict[str, Any]:
        return rows.setdefault(
            service, {"service": service, "team": team, "reasons": [], "score": 0.0}
        )

    for r in failure_counts(conn, scope, recent, before):
        _failures(r, entry)
    for r in default_branches(conn, scope):
        if r["red_since"] is not None:
            days = stats.hours(scope.until - r["red_since"]) / 24
            e = entry(r["service"], r["team"])
            e["reasons"].append(f"default branch {r['branch']} red for {days:.1f} days")
            e["red_since"], e["pipeline_url"] = r["red_since"], r["web_url"]
            e["score"] += WEIGHTS["red_day"] * (1 + days)
    _violations(select_violations(conn, scope), entry)
    _drift(drift_matrix(conn, scope), entry)
    ranked = sorted(rows.values(), key=lambda e: (-e["score"], e["service"]))[:limit]
    for e in ranked:
        e["reasons"] = "; ".join(e["reasons"])
    return ranked


def _failures(r: dict[str, Any], entry: Any) -> None:
    rate = stats.ratio(r["failed"], r["deployments"])
    rate_before = stats.ratio(r["failed_before"], r["deployments_before"])
    reasons = []
    if r["unrecovered"]:
        reasons.append(f"{r['unrecovered']} failed change(s) not recovered")
    if r["failed"]:
        reasons.append(f"{r['failed']} of {r['deployments']} deployments failed last week")
    rising = r["failed"] > 0 and (rate_before is None or (rate or 0) > rate_before)
    if rising:
        before = f"{rate_before:.0%}" if rate_before is not None else "no deployments"
        reasons.append(f"change failure rate up to {rate:.0%} from {before}")
    if not reasons:
        return
    e = entry(r["service"], r["team"])
    e["reasons"].extend(reasons)
    e.update(
        unrecovered=r["unrecovered"],
        failed_last_week=r["failed"],
        failure_rate_last_week=rate,
        failure_rate_week_before=rate_before,
    )
    e["score"] += (
        WEIGHTS["unrecovered"] * r["unrecovered"]
        + WEIGHTS["failed"] * r["failed"]
        + (WEIGHTS["rising"] if rising else 0.0)
    )


def _violations(found: list[dict[str, Any]], entry: Any) -> None:
    open_by_service: dict[str, list[dict[str, Any]]] = {}
    for v in found:
        if v["service"] and v["resolved_at"] is None and v["severity"] in ("error", "warn"):
            open_by_service.setdefault(v["service"], []).append(v)
    for service, items in open_by_service.items():
        newest = max(items, key=lambda v: v["occurred_at"])
        e = entry(service, items[0]["team"])
        e["reasons"].append(f"{len(items)} open policy violation(s), newest {newest['policy']}")
        e["open_violations"] = len(items)
        e["score"] += WEIGHTS["violation"] * len(items)


def _drift(found: list[dict[str, Any]], entry: Any) -> None:
    worst: dict[str, dict[str, Any]] = {}
    for d in found:
        age = d["drift_age_hours"]
        if age is None or age < DRIFT_NOTICED_HOURS:
            continue
        if d["service"] not in worst or age > worst[d["service"]]["drift_age_hours"]:
            worst[d["service"]] = d
    for service, d in worst.items():
        e = entry(service, None)
        behind = f", {d['commits_behind']} commits behind" if d["commits_behind"] else ""
        e["reasons"].append(
            f"{d['downstream']} drifted from {d['upstream']} for "
            f"{d['drift_age_hours'] / 24:.1f} days{behind}"
        )
        e["drift_age_hours"] = d["drift_age_hours"]
        e["score"] += d["drift_age_hours"] / 24 / 7
