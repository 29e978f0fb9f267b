"""What the pages show, fetched through `analytics/` and cached.

- The engine is one per warehouse URL (`st.cache_resource`).
- The scope's rows (`analytics.metrics`), one part at a time, are held as a resource for `TTL`
  seconds: they can be large (a quarter of a large organisation is ~250,000 rows) and are only
  read, so they are shared rather than copied on every read.
- Everything a page shows is `st.cache_data(ttl=TTL)`: the metrics, per-week and per-team
  figures, the views' tables, shaped into small dicts and DataFrames.

Every function takes the warehouse URL and the scope (not an engine), so the cache key says which
warehouse and which view of it a result belongs to.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter
from datetime import datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from analytics import selects, stats, views
from analytics.derive import FailureRules
from analytics.metrics import NEEDS, compute, sliced
from analytics.rows import Row, ScopeData
from analytics.scope import Scope
from analytics.views import drilldown
from warehouse.engine import open_warehouse

TTL = 600  # seconds a result is reused; a sync every few minutes shows up within ten
SOURCES_TTL = 60  # the data sources page answers "did the last sync run?"
LEAD_TIME_BINS = (0, 1, 4, 12, 24, 48, 72, 168, 336, 720, 2160)  # hours
DURATION_BINS = (0, 120, 300, 480, 600, 900, 1200, 1800, 2700, 3600)  # seconds


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    """The warehouse engine (upgraded to the head migration on first use)."""
    return open_warehouse(url)


@st.cache_resource(ttl=TTL, max_entries=12, show_spinner=False)
def _part(url: str, scope: Scope, rules: FailureRules, part: str) -> list[Row]:
    with engine(url).connect() as conn:
        rows: list[Row] = getattr(selects.load(conn, scope, rules, (part,)), part)
        return rows


def scope_data(
    url: str,
    scope: Scope,
    rules: FailureRules,
    metrics: tuple[str, ...],
    parts: tuple[str, ...] | None = None,
) -> ScopeData:
    """The scope's rows that `metrics` (keys of the metrics JSON) need, or just `parts`; the
    other parts empty."""
    wanted = set(parts or (part for name in metrics for part in NEEDS[name]))
    loaded = {part: _part(url, scope, rules, part) for part in sorted(wanted)}
    return ScopeData(scope, **loaded)  # type: ignore[arg-type]


@st.cache_data(ttl=SOURCES_TTL, show_spinner=False)
def presence(url: str) -> dict[str, bool]:
    """Which kinds of facts the warehouse holds."""
    with engine(url).connect() as conn:
        return views.presence(conn)


@st.cache_data(ttl=TTL, show_spinner=False)
def filter_options(url: str) -> dict[str, list[Any]]:
    """Teams, services and environments for the sidebar filters."""
    with engine(url).connect() as conn:
        return views.filter_options(conn)


@st.cache_data(ttl=TTL, show_spinner="Computing the metrics…")
def metrics(
    url: str,
    scope: Scope,
    rules: FailureRules,
    names: tuple[str, ...],
    parts: tuple[str, ...] | None = None,
    by_team: bool = False,
    by: str = "week",
) -> dict[str, Any]:
    """The metrics `names` over the scope (`total`), per local ISO week or month (`by`) of the
    period (`trend`, each with its `bucket` key and `partial`: cut by the period or the clock; a
    bucket without data is there with zero counts) and, `by_team`, per team (`teams`), as
    `analytics.metrics` computes them.
    `parts` narrows the rows read (the overview's lead time needs the changes, not the merge
    requests behind the stage breakdown); by default, every part the metrics need."""
    data = scope_data(url, scope, rules, names, parts)
    total = compute(data)
    trend = sliced(data, by)
    teams = sliced(data, "team") if by_team else []
    return {
        "total": {name: total[name] for name in names},
        "trend": [
            {"bucket": key, "partial": scope.partial(key), **{n: v[n] for n in names}}
            for key, v in trend
        ],
        "teams": [{"team": key, **{n: v[n] for n in names}} for key, v in teams],
    }


def period_over_period(
    trend: list[dict[str, Any]], scope: Scope, by: str = "week"
) -> tuple[dict, dict] | None:
    """The rows of the last complete week (or month) of the period and of the one before it."""
    pair = views.comparison_buckets(scope, by)
    if pair is None:
        return None
    by_key = {row["bucket"]: row for row in trend}
    return by_key[pair[0][0]], by_key[pair[1][0]]


@st.cache_data(ttl=TTL, show_spinner=False)
def table(name: str, url: str, scope: Scope | None = None, **options: Any) -> pd.DataFrame:
    """The rows of `analytics.views.<name>` as a DataFrame (`scope` for the views that have one)."""
    view = getattr(views, name)
    with engine(url).connect() as conn:
        rows = view(conn, **options) if scope is None else view(conn, scope, **options)
    return pd.DataFrame.from_records(rows)


@st.cache_data(ttl=TTL, show_spinner=False)
def deployments_per_day(url: str, scope: Scope, rules: FailureRules) -> pd.DataFrame:
    """Production deployments per local day of the period (days without any included), with
    their ISO week and weekday, for the calendar heatmap."""
    data = scope_data(url, scope, rules, ("deployment_frequency",))
    zone = scope.zone
    counts = Counter(stats.local_day(r.at, zone) for r in data.deployments)
    first = stats.local_day(scope.since, zone)
    last = stats.local_day(scope.until - timedelta(microseconds=1), zone)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return pd.DataFrame(
        {
            "day": [d.isoformat() for d in days],
            "week": [stats.week_key(d) for d in days],
            "weekday": [d.strftime("%a") for d in days],
            "deployments": [counts.get(d, 0) for d in days],
        }
    )


@st.cache_data(ttl=TTL, show_spinner=False)
def deployments_per_bucket(
    url: str, scope: Scope, rules: FailureRules, by: str = "week"
) -> pd.DataFrame:
    """Production deployments and failed changes per local ISO week or month (`by`, also the
    column's name) and team: every bucket of the period and every team deploying in it (zero
    rows included: a code freeze stays on the axis), each flagged `partial` when the period or
    the clock cuts it."""
    data = scope_data(url, scope, rules, ("deployment_frequency",))
    zone = scope.zone
    key_of = stats.week_key if by == "week" else stats.month_key
    buckets = stats.weeks_between if by == "week" else stats.months_between
    counts: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    for r in data.deployments:
        key = (key_of(stats.local_day(r.at, zone)), r.team or "(no team)")
        counts[key] += 1
        failed[key] += r.failed
    teams = sorted({team for _, team in counts})
    return pd.DataFrame(
        [
            {
                by: bucket,
                "team": team,
                "deployments": counts[(bucket, team)],
                "failed": failed[(bucket, team)],
                "partial": scope.partial(bucket),
            }
            for bucket in buckets(scope.since, scope.until, zone)
            for team in teams
        ],
        columns=[by, "team", "deployments", "failed", "partial"],
    )


def _binned(values: list[float], bins: tuple[int, ...], label: Any) -> pd.DataFrame:
    edges = [*bins, float("inf")]
    counts = [sum(1 for v in values if low <= v < high) for low, high in itertools.pairwise(edges)]
    pairs = list(itertools.pairwise(edges))
    return pd.DataFrame(
        {
            "bucket": [label(low, high) for low, high in pairs],
            "count": counts,
            "low": [low for low, _ in pairs],
            "high": [None if high == float("inf") else high for _, high in pairs],
        }
    )


def _hours_label(low: float, high: float) -> str:
    def short(h: float) -> str:
        return f"{h:g} h" if h < 48 else f"{h / 24:g} d"

    return f"≥ {short(low)}" if high == float("inf") else f"{short(low)} to {short(high)}"


def _seconds_label(low: float, high: float) -> str:
    return f"≥ {low / 60:g} min" if high == float("inf") else f"{low / 60:g} to {high / 60:g} min"


@st.cache_data(ttl=TTL, show_spinner=False)
def lead_time_histogram(url: str, scope: Scope, rules: FailureRules) -> pd.DataFrame:
    """Changes per lead-time bucket (hours: under 1, 1 to 4, ..., 3 months and more)."""
    data = scope_data(url, scope, rules, ("lead_time",))
    hours = [stats.hours(r.at - r.started_at) for r in data.changes if r.started_at]
    return _binned(hours, LEAD_TIME_BINS, _hours_label)


@st.cache_data(ttl=TTL, show_spinner=False)
def duration_histogram(url: str, scope: Scope, rules: FailureRules) -> pd.DataFrame:
    """Finished pipelines per duration bucket (minutes)."""
    data = scope_data(url, scope, rules, ("build",))
    durations = [r.duration_s for r in data.pipelines if r.duration_s is not None]
    return _binned(durations, DURATION_BINS, _seconds_label)


@st.cache_data(ttl=SOURCES_TTL, show_spinner=False)
def sources(name: str, url: str) -> pd.DataFrame:
    """The rows of a data-sources view (`sync_overview`, `sync_errors`, `rejected_payloads`)."""
    view = getattr(views, name)
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(view(conn))


@st.cache_data(ttl=TTL, show_spinner=False)
def violations(url: str, scope: Scope) -> pd.DataFrame:
    """Policy violations open during the period, `new` when they occurred in the period's last
    ISO week (the current week, for a period ending today)."""
    frame = table("violations", url, scope)
    if frame.empty:
        return frame
    last_day = stats.local_day(scope.until - timedelta(microseconds=1), scope.zone)
    monday = last_day - timedelta(days=last_day.weekday())
    week_start = datetime.combine(monday, time(0), tzinfo=scope.zone)
    frame["new"] = frame["occurred_at"] >= week_start
    frame["open"] = frame["resolved_at"].isna()
    return frame


def chosen_violations(
    frame: pd.DataFrame, policies: list[str], severities: list[str], only_new: bool
) -> pd.DataFrame:
    """The violations of the policies and severities chosen (none chosen: all), only the new
    ones when asked."""
    keep = pd.Series(True, index=frame.index)
    if policies:
        keep &= frame["policy"].isin(policies)
    if severities:
        keep &= frame["severity"].isin(severities)
    if only_new:
        keep &= frame["new"]
    return frame[keep]


@st.cache_data(ttl=TTL, show_spinner=False)
def service_detail(
    url: str, scope: Scope, service: str, promotion_path: tuple[str, ...]
) -> dict[str, pd.DataFrame]:
    """One service: what runs in each environment (`current`), each adjacent pair of the
    promotion path with a GitLab compare link of the commits the downstream lacks (`pairs`,
    with the drift snapshot's commits behind when there is one), and its deployments in the
    period (`history`)."""
    state = table("environment_state", url, scope)
    current = state[state["service"] == service] if not state.empty else state
    drift = table("drift_matrix", url, scope)
    behind = {}
    if not drift.empty:
        for r in drift[drift["service"] == service].itertuples():
            behind[(r.upstream, r.downstream)] = r.commits_behind
    by_env = {r["environment"]: r for r in current.to_dict("records")}
    pairs = []
    for upstream, downstream in itertools.pairwise(promotion_path):
        up, down = by_env.get(upstream), by_env.get(downstream)
        if up is None or down is None:
            continue
        pairs.append(
            {
                "upstream": upstream,
                "downstream": downstream,
                "upstream commit": (up["sha"] or "")[:10],
                "downstream commit": (down["sha"] or "")[:10],
                "same commit": up["sha"] == down["sha"],
                "commits behind": behind.get((upstream, downstream)),
                "compare_url": None
                if up["sha"] == down["sha"]
                else views.compare_url(up["repo_url"], down["sha"], up["sha"]),
            }
        )
    history = table("promotion_history", url, scope, service=service)
    if not history.empty:
        history["commit"] = history["sha"].str[:10]
    return {"current": current, "pairs": pd.DataFrame(pairs), "history": history}


@st.cache_data(ttl=TTL, show_spinner=False)
def whats_running(url: str, scope: Scope) -> pd.DataFrame:
    """Services down, environments across: the commit each runs at the end of the period and
    how long ago it was deployed (from recorded deployments)."""
    state = table("environment_state", url, scope)
    if state.empty:
        return state
    age = (scope.until - state["finished_at"]).dt.total_seconds() / 86400
    state["cell"] = state["sha"].str[:8] + " · " + age.map(lambda d: f"{d:.0f} d ago")
    order = state.sort_values("position")["environment"].drop_duplicates().tolist()
    grid = state.pivot(index="service", columns="environment", values="cell")
    return grid.reindex(columns=order).fillna("").reset_index()


@st.cache_data(ttl=TTL, show_spinner=False)
def drill_page(
    name: str, url: str, scope: Scope, filters: drilldown.ListFilters, page: drilldown.Page
) -> tuple[pd.DataFrame, drilldown.Cursor | None]:
    """One page of the drill-down list `name` (`deployments`, `changes`) and the next page's
    cursor (None: the last page)."""
    with engine(url).connect() as conn:
        listed = drilldown.LISTS[name](conn, scope, filters, page)
    return pd.DataFrame.from_records(listed.rows), listed.next


def drill_csv(name: str, url: str, scope: Scope, filters: drilldown.ListFilters) -> bytes:
    """Every row of the drill-down list `name` under the filters as CSV (UTF-8, a header row),
    written a page at a time; full shas and digests, times in ISO 8601 UTC."""
    out = io.StringIO()
    writer: csv.DictWriter[str] | None = None
    with engine(url).connect() as conn:
        for rows in drilldown.pages(conn, name, scope, filters):
            for row in rows:
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row), extrasaction="ignore")
                    writer.writeheader()
                writer.writerow(row)
    return out.getvalue().encode()
