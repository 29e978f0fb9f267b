"""What the pages show, fetched through `analytics/` and cached.

- The engine is one per warehouse URL (`st.cache_resource`).
- The metrics read the scope's days (`analytics.rollups.load`: the rollups derive maintains per
  service, environment and local day), held as a resource for `TTL` seconds per scope and part
  (the days of deployments, changes, merge requests or attempts, pipeline days, each part kept
  as rows): a page reads only the parts its figures need, once, whichever figures and pages share
  them; they are only read, so they are shared rather than copied. The distributions (per day,
  per bucket, histograms) read the same days. Drill-down lists read rows a page at a time
  (`analytics.views.drilldown`).
- Everything a page shows is `st.cache_data(ttl=TTL)`: the metrics, per-week and per-team
  figures, the views' tables, shaped into small dicts and DataFrames.

Every function takes the warehouse URL and the scope (not an engine), so the cache key says which
warehouse and which view of it a result belongs to.
"""

from __future__ import annotations

import csv
import gc
import io
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from analytics import rollups, selects, views
from analytics.metrics import NEEDS, compute, sliced
from analytics.rules import FailureRules
from analytics.scope import Scope
from analytics.views import distributions, drilldown, running
from analytics.warehouse import open_warehouse

TTL = 600  # seconds a result is reused; a sync every few minutes shows up within ten
SOURCES_TTL = 60  # the data sources page answers "did the last sync run?"


def _settle_imports() -> None:
    """Take what the imports built (pandas, Plotly, SQLAlchemy, Streamlit: hundreds of thousands
    of objects, living as long as the process) out of the cyclic garbage collector's sight, once
    per process: each full collection walked them all (0.16-0.18 s on the large organisation's
    dashboard), landing in whichever page view set it off. Garbage in cycles is collected
    first, so none is kept; objects made later are collected as before."""
    gc.collect()
    gc.freeze()


_settle_imports()


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    """The warehouse engine (upgraded to the head migration on first use)."""
    return open_warehouse(url)


@st.cache_resource(ttl=TTL, max_entries=48, show_spinner=False)
def _rolled(url: str, scope: Scope, rules: FailureRules, part: str) -> rollups.Rollup:
    """The scope's days of one rolled-up part (deployments, changes, merge requests, attempts;
    `rollups.ROLLED`) or its pipeline days (`part` pipelines), read once for every figure that
    needs them."""
    with engine(url).connect() as conn:
        return rollups.load(conn, scope, rules, (), (part,))


@st.cache_resource(ttl=TTL, max_entries=48, show_spinner=False)
def _kept(url: str, scope: Scope, rules: FailureRules, part: str) -> list[Any]:
    """The scope's rows of one part kept as rows (`rollups.ROWS`)."""
    with engine(url).connect() as conn:
        return getattr(selects.load(conn, scope, rules, (part,)), part)  # type: ignore[no-any-return]


def _days(url: str, scope: Scope, rules: FailureRules, parts: tuple[str, ...]) -> rollups.Rollup:
    """The scope's Rollup with only `parts` (of the rolled-up parts and those kept as rows) read,
    the others empty; each part is held as a resource on its own, so pages and figures needing
    the same part share one read. The days of several parts are their days read apart, one after
    the other (every figure sums over days, so they add up to the days read together). They are
    only read, so they are shared rather than copied."""
    found = rollups.Rollup(scope)
    for part in parts:
        if part in rollups.ROLLED:
            found.days.extend(_rolled(url, scope, rules, part).days)
        elif part == "pipelines":
            found.pipelines = _rolled(url, scope, rules, part).pipelines
        else:
            setattr(found, part, _kept(url, scope, rules, part))
    return found


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
    Only the parts `names` need, or `parts`, are read: the days of each rolled-up part from the
    rollups (`analytics.rollups.load`), the parts kept as rows (incidents, merged MRs waiting,
    requirements, bugs) as rows."""
    wanted = set(parts or (part for name in names for part in NEEDS[name]))
    read = tuple(p for p in (*rollups.ROLLED, "pipelines", *rollups.ROWS) if p in wanted)
    with rollups.collector_paused():
        data = _days(url, scope, rules, read)
        total = compute(data, names=names)
        trend = sliced(data, by, names)
        teams = sliced(data, "team", names) if by_team else []
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
def services_needing_attention(url: str, scope: Scope) -> pd.DataFrame:
    """Services with a signal worth a look (`views.services_needing_attention`)."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.services_needing_attention(conn, scope))


@st.cache_data(ttl=TTL, show_spinner=False)
def deployments_by_service_environment(url: str, scope: Scope, rules: FailureRules) -> pd.DataFrame:
    """Finished attempts per service and environment, from the attempts' days
    (`distributions.deployments_by_service_environment_of`)."""
    data = _days(url, scope, rules, ("attempts",))
    with engine(url).connect() as conn:
        positions = distributions.environment_positions(conn)
    return pd.DataFrame.from_records(
        distributions.deployments_by_service_environment_of(data, positions)
    )


@st.cache_data(ttl=TTL, show_spinner=False)
def failed_changes(url: str, scope: Scope) -> pd.DataFrame:
    """The failed changes of the period."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.failed_changes(conn, scope))


@st.cache_data(ttl=TTL, show_spinner=False)
def incidents(url: str, scope: Scope) -> pd.DataFrame:
    """The incidents of the period."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.incidents(conn, scope))


@st.cache_data(ttl=TTL, show_spinner=False)
def slowest_changes(url: str, scope: Scope) -> pd.DataFrame:
    """The changes with the longest lead time."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.slowest_changes(conn, scope))


@st.cache_data(ttl=TTL, show_spinner=False)
def default_branches(url: str, scope: Scope) -> pd.DataFrame:
    """Default-branch health per repository."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.default_branches(conn, scope))


@st.cache_data(ttl=TTL, show_spinner=False)
def failing_tests(url: str, scope: Scope) -> pd.DataFrame:
    """The most failing tests."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.failing_tests(conn, scope))


@st.cache_data(ttl=TTL, show_spinner=False)
def branch_strategies(url: str, scope: Scope) -> pd.DataFrame:
    """Each repository's branching strategy."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.branch_strategies(conn, scope))


@st.cache_data(ttl=TTL, show_spinner=False)
def quality_gates(
    url: str, scope: Scope, promotion_path: tuple[str, ...]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The SonarQube gate of production deployments: (per service, the red ones, the totals)."""
    with engine(url).connect() as conn:
        found = views.quality_gates(conn, scope, promotion_path)
    return (
        pd.DataFrame.from_records(found["services"]),
        pd.DataFrame.from_records(found["red"]),
        found["total"],
    )


@st.cache_data(ttl=TTL, show_spinner=False)
def drift_matrix(url: str, scope: Scope) -> pd.DataFrame:
    """The latest drift snapshot per service and adjacent environments."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.drift_matrix(conn, scope))


@st.cache_data(ttl=TTL, show_spinner=False)
def environment_state(url: str, scope: Scope) -> pd.DataFrame:
    """What runs in each environment at the end of the period."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.environment_state(conn, scope))


@st.cache_data(ttl=TTL, show_spinner=False)
def promotion_history(url: str, scope: Scope, service: str) -> pd.DataFrame:
    """One service's deployments in the period, across its environments."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.promotion_history(conn, scope, service))


@st.cache_data(ttl=TTL, show_spinner=False)
def deployments_per_day(url: str, scope: Scope, rules: FailureRules) -> pd.DataFrame:
    """Production deployments per local day (`distributions.deployments_per_day_of`)."""
    data = _days(url, scope, rules, ("deployments",))
    return pd.DataFrame.from_records(
        distributions.deployments_per_day_of(data),
        columns=["day", "week", "weekday", "deployments"],
    )


@st.cache_data(ttl=TTL, show_spinner=False)
def deployments_per_bucket(
    url: str, scope: Scope, rules: FailureRules, by: str = "week"
) -> pd.DataFrame:
    """Production deployments and failed changes per week or month and team
    (`distributions.deployments_per_bucket_of`)."""
    data = _days(url, scope, rules, ("deployments",))
    return pd.DataFrame.from_records(
        distributions.deployments_per_bucket_of(data, by),
        columns=[by, *distributions.BUCKET_COLUMNS],
    )


@st.cache_data(ttl=TTL, show_spinner=False)
def lead_time_histogram(url: str, scope: Scope, rules: FailureRules) -> pd.DataFrame:
    """Changes per lead-time bucket (`distributions.lead_time_histogram_of`)."""
    data = _days(url, scope, rules, ("changes",))
    return pd.DataFrame.from_records(
        distributions.lead_time_histogram_of(data), columns=distributions.BIN_COLUMNS
    )


@st.cache_data(ttl=TTL, show_spinner=False)
def duration_histogram(url: str, scope: Scope, rules: FailureRules) -> pd.DataFrame:
    """Finished pipelines per duration bucket (`distributions.duration_histogram_of`)."""
    data = _days(url, scope, rules, ("pipelines",))
    return pd.DataFrame.from_records(
        distributions.duration_histogram_of(data), columns=distributions.BIN_COLUMNS
    )


@st.cache_data(ttl=SOURCES_TTL, show_spinner=False)
def sync_overview(url: str) -> pd.DataFrame:
    """The last sync of each source and stream."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.sync_overview(conn))


@st.cache_data(ttl=SOURCES_TTL, show_spinner=False)
def sync_errors(url: str) -> pd.DataFrame:
    """The sync errors recorded."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.sync_errors(conn))


@st.cache_data(ttl=SOURCES_TTL, show_spinner=False)
def unmapped_tracker_rows(url: str) -> pd.DataFrame:
    """Per tracker source, the incidents and work items mapped to no service."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.unmapped_tracker_rows(conn))


@st.cache_data(ttl=SOURCES_TTL, show_spinner=False)
def rejected_payloads(url: str) -> pd.DataFrame:
    """The payloads the normalisers rejected."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.rejected_payloads(conn))


@st.cache_data(ttl=TTL, show_spinner=False)
def violations(url: str, scope: Scope) -> pd.DataFrame:
    """Policy violations open during the period, each `new` and `open` as
    analytics.views.violations says (new: occurred in the period's last ISO week)."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(views.select_violations(conn, scope))


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
    `running.promotion_pairs`), and its deployments in the period (`history`)."""
    state = environment_state(url, scope)
    current = state[state["service"] == service] if not state.empty else state
    with engine(url).connect() as conn:
        pairs = running.promotion_pairs(conn, scope, service, promotion_path)
    history = promotion_history(url, scope, service)
    if not history.empty:
        history["commit"] = history["sha"].str[:10]
    return {"current": current, "pairs": pd.DataFrame(pairs), "history": history}


@st.cache_data(ttl=TTL, show_spinner=False)
def whats_running(url: str, scope: Scope) -> pd.DataFrame:
    """Services down, environments across: the commit each runs at the end of the period and
    how long ago it was deployed (`running.whats_running`)."""
    with engine(url).connect() as conn:
        return pd.DataFrame.from_records(running.whats_running(conn, scope))


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
