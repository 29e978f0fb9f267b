"""Drill-down: links from tiles, chart bars and table rows to the Deployments, Changes and Pipelines
lists, and the lists themselves (`show_list`), a page at a time, filterable and downloadable as CSV.

Every filter lives in the URL: the sidebar's (period, team, service, environment: whatever
`state.filter_params()` says they are) and the list's own (`bucket` a week `2026-W05` or month
`2026-02`, `status`, `kind`, `failed`, `commit`, `ref`, `digest`, `min_hours`, `max_hours`,
`min_minutes`, `max_minutes`, `failed_tests`, `suite`, `default_branch`) and the page cursor
(`after`), so a link reproduces the view. Links carry the sidebar's filters unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import streamlit as st
from plotly.graph_objects import Figure

from analytics.scope import Scope
from analytics.stats import local_day
from analytics.views.drilldown import ListFilters, Page, cursor_text, parse_cursor
from dashboard import data, show, state

PAGES = {
    "deployments": "app_pages/deployments_list.py",
    "changes": "app_pages/changes_list.py",
    "pipelines": "app_pages/pipelines_list.py",
}
PAGE_SIZE = 50
DIGEST_SHOWN = 15  # `sha256:` and 8 hex digits; the full digest is in the CSV
SHA_SHOWN = 8


def params(**extra: Any) -> dict[str, Any]:
    """The sidebar's filters of this view plus `extra` list filters (None values left out)."""
    return {**state.filter_params(), **_given(extra)}


def _given(extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` as query parameters: None and NaN left out, values as text."""
    return {k: v if isinstance(v, list) else str(v) for k, v in extra.items() if not _missing(v)}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def link(name: str, label: str, **extra: Any) -> None:
    """A link to the list `name` (`deployments`, `changes`, `pipelines`) keeping the view's filters."""
    st.page_link(PAGES[name], label=label, icon=":material/list:", query_params=params(**extra))


def go(name: str, **extra: Any) -> None:
    """Open the list `name` now (a chart bar was clicked) with the `extra` list filters; the
    sidebar's filters go along as the session's widget state (Streamlit refuses to set a query
    parameter bound to a widget), and their widgets write them back into the URL."""
    st.switch_page(PAGES[name], query_params=_given(extra))


def row_link(name: str, **extra: Any) -> str:
    """A relative URL of the list `name` with the view's filters and `extra` (a table row's link;
    `extra` may override a sidebar filter, e.g. the row's service)."""
    return row_links(name, [extra])[0]


def row_links(name: str, extras: Iterable[dict[str, Any]]) -> list[str]:
    """`row_link` of each of `extras`, the view's filters read once (a table's thousands of rows:
    each read of the URL's parameters is a Streamlit command)."""
    carried = state.filter_params()
    return [_url(name, carried, extra) for extra in extras]


def _url(name: str, carried: dict[str, list[str]], extra: dict[str, Any]) -> str:
    """The relative URL of the list `name` with the filters `carried` and `extra`."""
    path = PAGES[name].removeprefix("app_pages/").removesuffix(".py")
    return f"{path}?{urlencode({**carried, **_given(extra)}, doseq=True)}"


@st.cache_data(ttl=data.TTL, show_spinner=False)
def violation_links(url: str, scope: Scope, carried: dict[str, list[str]]) -> pd.Series:
    """The rows behind each violation of the view (`data.violations`, by its index), from its
    structured columns (never its subject's text): the Deployments list of its service in its
    environment on the day it occurred, or, without an environment (merges, pushes, branches),
    the Pipelines list of its service that day; None without a service. Cached with the view's
    filters `carried` (`state.filter_params()`: a cached function cannot read the URL): thousands
    of links, the same on every rerun of the page."""

    # 6,029 violations of the large organisation: 578 services and places, 5,502 days; each
    # place's URL is encoded once, its day appended (the day's period replaces the view's)
    others = {k: v for k, v in carried.items() if k != "period"}
    places: dict[tuple[Any, Any], str] = {}

    def link(service: Any, environment: Any, occurred_at: Any) -> str | None:
        if _missing(service):
            return None
        env = None if _missing(environment) else environment
        name = "pipelines" if env is None else "deployments"
        extra = {"service": [service], "env": env}
        period = period_reaching(scope, occurred_at, occurred_at)
        if period is None:  # no day: the view's period stays
            return _url(name, carried, extra)
        if (service, env) not in places:
            places[(service, env)] = _url(name, others, extra)
        return f"{places[(service, env)]}&{urlencode({'period': period}, doseq=True)}"

    violations = data.violations(url, scope)
    columns = (violations[c] for c in ("service", "environment", "occurred_at"))
    links = [link(*v) for v in zip(*columns, strict=True)]
    return pd.Series(links, index=violations.index, dtype=object)


@st.cache_data(ttl=data.TTL, show_spinner=False)
def deployments_links(
    url: str,
    scope: Scope,
    carried: dict[str, list[str]],
    cells: tuple[tuple[str, str, str | None, str | None], ...],
) -> list[str]:
    """The Deployments list of each (service, environment, digest, commit) of `cells` (digest
    and commit may be None), from the day its current deployment finished (recorded ones: the
    drift snapshot's may be older) to the end of the view's period. Cached with the view's
    filters `carried` (`state.filter_params()`): hundreds of links, the same on every rerun."""
    deployed = data.environment_state(url, scope)
    since = (
        {}
        if deployed.empty
        else {(r.service, r.environment): r.finished_at for r in deployed.itertuples()}
    )
    return [
        _url(
            "deployments",
            carried,
            {
                "service": [service],
                "env": environment,
                "digest": None if _missing(digest) else digest,
                "commit": commit,
                "period": None
                if (at := since.get((service, environment))) is None
                else period_reaching(scope, at),
            },
        )
        for service, environment, digest, commit in cells
    ]


def period_reaching(
    scope: Scope, first: datetime, last: datetime | None = None
) -> list[str] | None:
    """A link's `period` reaching an event: from the local day of `first` to that of `last`
    (default: the view's last day), both included; None when `first` is missing (the view's
    period stays)."""
    if _missing(first) or first is pd.NaT:
        return None
    end = scope.until - timedelta(microseconds=1) if last is None else last
    days = sorted({local_day(first, scope.zone), local_day(end, scope.zone)})
    return [days[0].isoformat(), days[-1].isoformat()]


def bars(name: str, figure: Figure, key: str, **extra: Any) -> None:
    """A chart whose bars open the list `name` of the clicked week or month, with `extra` list
    filters."""
    bucket = clicked(show.chart(figure, key=key, select=True))
    if bucket is not None:
        go(name, bucket=bucket, **extra)


def clicked(event: Any, field: str = "x") -> Any:
    """The `field` of the first point selected in a Plotly chart's selection event, or None."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    return points[0].get(field) if points else None


def _number(text: str | None, name: str, unit: str = "hours") -> float | None:
    if text in (None, ""):
        return None
    try:
        return float(text)  # type: ignore[arg-type]
    except ValueError:
        st.error(f"The link's `{name}={text}` is not a number of {unit}; it is ignored.")
        return None


def filters_from_url() -> ListFilters:
    """The list filters only links set (no widget): failed changes, a lead-time range, an image
    digest, a pipeline duration range, pipelines with failed tests."""
    q = st.query_params
    return ListFilters(
        failed_change=q.get("failed") == "1",
        min_hours=_number(q.get("min_hours"), "min_hours"),
        max_hours=_number(q.get("max_hours"), "max_hours"),
        digest=q.get("digest") or None,
        min_minutes=_number(q.get("min_minutes"), "min_minutes", "minutes"),
        max_minutes=_number(q.get("max_minutes"), "max_minutes", "minutes"),
        failed_tests=q.get("failed_tests") == "1",
        suite=q.get("suite") or None,
        default_branch=q.get("default_branch") == "1",
    )


def _page_from_url() -> Page:
    after = st.query_params.get("after")
    if not after:
        return Page(PAGE_SIZE)
    try:
        return Page(PAGE_SIZE, parse_cursor(after))
    except ValueError as exc:
        st.error(str(exc))
        return Page(PAGE_SIZE)


def _first_page() -> None:
    """A changed filter starts the list again from its first page."""
    if "after" in st.query_params:
        del st.query_params["after"]


def _filter_widgets(name: str, filters: ListFilters) -> ListFilters:
    """The list's own filters as widgets bound to the URL; `filters` with their values."""
    columns = st.columns(5 if name == "deployments" else 4)
    bound: dict[str, Any] = {"bind": "query-params", "on_change": _first_page}
    bucket = columns[0].text_input(
        "Week or month", key="bucket", placeholder="2026-W05 or 2026-02", **bound
    )
    commit = columns[1].text_input("Commit", key="commit", placeholder="sha prefix", **bound)
    status = kind = ref = None
    if name in ("deployments", "pipelines"):
        status = columns[2].selectbox("Status", STATUSES[name], key="status", **bound)
        ref = columns[3].text_input("Ref", key="ref", placeholder="branch or tag", **bound)
    if name == "deployments":
        kind = columns[4].selectbox("Kind", ["", "app", "schema", "config"], key="kind", **bound)
        if filters.failed_change:
            st.caption("Only failed changes (`failed=1` in the link).")
        if filters.digest:
            st.caption(f"Only image digest `{filters.digest}` (`digest` in the link).")
    elif name == "pipelines":
        low, high = filters.min_minutes, filters.max_minutes
        if low is not None or high is not None:
            shown = f"{show.DASH if low is None else f'{low:g}'} to "
            shown += show.DASH if high is None else f"{high:g}"
            st.caption(f"Duration from {shown} minutes.")
        if filters.default_branch:
            st.caption("Only default-branch pipelines (`default_branch=1` in the link).")
        if filters.suite:
            st.caption(f"Only pipelines with failed tests in suite `{filters.suite}`.")
        elif filters.failed_tests:
            st.caption("Only pipelines with failed tests (`failed_tests=1` in the link).")
    else:
        low, high = filters.min_hours, filters.max_hours
        if low is not None or high is not None:
            st.caption(f"Lead time from {show.hours(low)} to {show.hours(high)}.")
    return replace(
        filters,
        bucket=bucket.strip() or None,
        commit=commit.strip() or None,
        status=status or None,
        kind=kind or None,
        ref=(ref or "").strip() or None,
    )


STATUSES = {
    "deployments": ["", "success", "failed", "canceled", "running"],
    "pipelines": ["", "success", "failed", "canceled", "skipped", "running"],
}
STAGES = ("coding_hours", "pickup_hours", "review_hours", "deploy_hours")


def _for_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows as the table shows them: times to the minute, hours to a tenth, shas and digests
    shortened (full values in the links and the CSV), a change's four stages in one column."""
    out = frame.copy()
    for column in ("finished_at", "deployed_at"):
        if column in out:
            out[column] = out[column].dt.strftime("%Y-%m-%d %H:%M")
    if "sha" in out:
        out["commit"] = out["sha"].str[:SHA_SHOWN]
    if "image_digest" in out:
        out["digest"] = out["image_digest"].str[:DIGEST_SHOWN].fillna("")
    if "duration_s" in out:  # pipelines: durations and queue times in minutes
        for seconds, minutes in (("duration_s", "duration_min"), ("queued_s", "queued_min")):
            out[minutes] = (pd.to_numeric(out[seconds]) / 60).round(1)
    if "lead_time_hours" in out:
        out["lead_time_hours"] = out["lead_time_hours"].round(1)
        out["stages"] = [
            " / ".join(show.DASH if pd.isna(h) else f"{h:.1f}" for h in row)
            for row in out[list(STAGES)].itertuples(index=False)
        ]
    return out


COLUMNS = {
    "deployments": {
        "finished_at": "finished (UTC)",
        "service": "service",
        "environment": "env",
        "status": "status",
        "commit": "commit",
        "digest": "image digest",
        "ref": "ref",
        "deployer": "deployer",
        "reasons": "failed change",
    },
    "changes": {
        "deployed_at": "deployed (UTC)",
        "service": "service",
        "title": "title",
        "lead_time_hours": "lead time (h)",
        "stages": "coding / pickup / review / deploy (h)",
        "environment": "env",
    },
    "pipelines": {
        "finished_at": "finished (UTC)",
        "service": "service",
        "ref": "ref",
        "commit": "commit",
        "status": "status",
        "duration_min": "duration (min)",
        "queued_min": "queued (min)",
        "failed_tests": "failed tests",
        "trigger": "trigger",
    },
}
LINKS = {
    "pipelines": {"web_url": "pipeline"},
    "deployments": {"url": "source"},
    "changes": {
        "commit_url": "commit",
        "merge_request_url": "merge request",
        "deployment_url": "shipped by",
    },
}
LINK_TEXTS = {  # a link column reads its commit's first 8 hex digits, its MR's number
    "commit_url": r"/commit/([0-9a-f]{8})",
    "merge_request_url": r"/merge_requests/(\d+)$",
    "url": "open",
    "web_url": "open",
}
HELPS = {
    "commit": "The first 8 characters; the full sha is in the CSV.",
    "commit_url": "The first 8 characters; the full sha is in the link and the CSV.",
    "digest": "Shortened; the full digest is in the CSV.",
    "stages": "Merge-request stages: change start to MR opened, to first review, to merged, "
    "to deployed.",
}


def show_list(name: str) -> None:
    """The list `name` of the view's scope under the URL's filters: a page of rows, paging, CSV."""
    view = state.current()
    state.require_data(view)
    filters = _filter_widgets(name, filters_from_url())
    try:
        rows, following = data.drill_page(name, view.url, view.scope, filters, _page_from_url())
    except ValueError as exc:  # a bad week or month in the link
        st.error(f"{exc}. Correct the week or month filter.")
        st.stop()
    if rows.empty:
        show.nothing(name)
    else:
        show.table(
            _for_table(rows),
            links=LINKS[name],
            columns=COLUMNS[name],
            key=f"{name}-list",
            helps=HELPS,
            link_texts=LINK_TEXTS,
        )
    left, right = st.columns([1, 1])
    with left:
        if st.query_params.get("after") and st.button("First page", key="first-page"):
            _first_page()
            st.rerun()
        if following is not None and st.button("Next page", key="next-page"):
            st.query_params["after"] = cursor_text(following)
            st.rerun()
    with right:
        st.download_button(
            "Download CSV (every row of this filter, full digests)",
            data=lambda: data.drill_csv(name, view.url, view.scope, filters),
            file_name=f"{name}.csv",
            mime="text/csv",
            on_click="ignore",
            key="csv",
        )
