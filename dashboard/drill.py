"""Drill-down: links from tiles, chart bars and table rows to the Deployments and Changes lists,
and the lists themselves (`show_list`), a page at a time, filterable and downloadable as CSV.

Every filter lives in the URL: the sidebar's (period, team, service, environment: whatever
`state.filter_params()` says they are) and the list's own (`bucket` a week `2026-W05` or month
`2026-02`, `status`, `kind`, `failed`, `commit`, `min_hours`, `max_hours`) and the page cursor
(`after`), so a link reproduces the view. Links carry the sidebar's filters unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from analytics.views.drilldown import ListFilters, Page, cursor_text, parse_cursor
from dashboard import data, show, state

PAGES = {
    "deployments": "app_pages/deployments_list.py",
    "changes": "app_pages/changes_list.py",
}
PAGE_SIZE = 50
DIGEST_SHOWN = 19  # `sha256:` and 12 hex digits; the full digest is in the tooltip and the CSV
LIST_KEYS = ("bucket", "status", "kind", "failed", "commit", "min_hours", "max_hours")


def params(**extra: Any) -> dict[str, Any]:
    """The sidebar's filters of this view plus `extra` list filters (None values left out)."""
    given = {k: v for k, v in extra.items() if not _missing(v)}
    return {
        **state.filter_params(),
        **{k: v if isinstance(v, list) else str(v) for k, v in given.items()},
    }


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def link(name: str, label: str, **extra: Any) -> None:
    """A link to the list `name` (`deployments`, `changes`) keeping the view's filters."""
    st.page_link(PAGES[name], label=label, icon=":material/list:", query_params=params(**extra))


def go(name: str, **extra: Any) -> None:
    """Open the list `name` now (a chart bar was clicked), keeping the view's filters."""
    st.switch_page(PAGES[name], query_params=params(**extra))


def chosen_row(event: Any) -> int | None:
    """The index of the row selected in a table's selection event, or None."""
    rows = event.get("selection", {}).get("rows", []) if event else []
    return int(rows[0]) if rows else None


def clicked(event: Any, field: str = "x") -> Any:
    """The `field` of the first point selected in a Plotly chart's selection event, or None."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    return points[0].get(field) if points else None


def _number(text: str | None, name: str) -> float | None:
    if text in (None, ""):
        return None
    try:
        return float(text)  # type: ignore[arg-type]
    except ValueError:
        st.error(f"The link's `{name}={text}` is not a number of hours; it is ignored.")
        return None


def filters_from_url() -> ListFilters:
    """The list filters of the URL."""
    q = st.query_params
    return ListFilters(
        bucket=q.get("bucket") or None,
        status=q.get("status") or None,
        kind=q.get("kind") or None,
        failed_change=q.get("failed") == "1",
        commit=q.get("commit") or None,
        min_hours=_number(q.get("min_hours"), "min_hours"),
        max_hours=_number(q.get("max_hours"), "max_hours"),
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


def _filter_widgets(name: str, filters: ListFilters) -> None:
    """The list's own filters as widgets bound to the URL."""
    columns = st.columns(4)
    columns[0].text_input(
        "Week or month", key="bucket", bind="query-params", placeholder="2026-W05 or 2026-02"
    )
    columns[1].text_input("Commit", key="commit", bind="query-params", placeholder="sha prefix")
    if name == "deployments":
        columns[2].selectbox(
            "Status",
            ["", "success", "failed", "canceled", "running"],
            key="status",
            bind="query-params",
        )
        columns[3].selectbox(
            "Kind", ["", "app", "schema", "config"], key="kind", bind="query-params"
        )
        if filters.failed_change:
            st.caption("Only failed changes (`failed=1` in the link).")
    else:
        low, high = filters.min_hours, filters.max_hours
        if low is not None or high is not None:
            st.caption(f"Lead time from {show.hours(low)} to {show.hours(high)}.")


def _shortened(frame: pd.DataFrame) -> pd.DataFrame:
    """Shas and digests shortened for the table (full values on hover and in the CSV)."""
    out = frame.copy()
    for column in ("sha",):
        if column in out:
            out["commit"] = out[column].str[:10]
    if "image_digest" in out:
        out["digest"] = out["image_digest"].str[:DIGEST_SHOWN]
    return out


COLUMNS = {
    "deployments": {
        "finished_at": "finished (UTC)",
        "service": "service",
        "environment": "environment",
        "status": "status",
        "kind": "kind",
        "commit": "commit",
        "digest": "image digest",
        "ref": "ref",
        "deployer": "deployer",
        "reasons": "failed change: why",
    },
    "changes": {
        "deployed_at": "deployed (UTC)",
        "service": "service",
        "commit": "commit",
        "title": "title",
        "merge_request": "merge request",
        "lead_time_hours": "lead time (h)",
        "coding_hours": "coding (h)",
        "pickup_hours": "pickup (h)",
        "review_hours": "review (h)",
        "deploy_hours": "deploy (h)",
        "environment": "environment",
        "deployment": "shipped by deployment",
    },
}
LINKS = {
    "deployments": {"url": "source"},
    "changes": {
        "commit_url": "commit",
        "merge_request_url": "merge request",
        "deployment_url": "deployment",
    },
}


def show_list(name: str) -> None:
    """The list `name` of the view's scope under the URL's filters: a page of rows, paging, CSV."""
    view = state.current()
    state.require_data(view)
    filters = filters_from_url()
    _filter_widgets(name, filters)
    try:
        rows, following = data.drill_page(name, view.url, view.scope, filters, _page_from_url())
    except ValueError as exc:  # a bad week or month in the link
        st.error(f"{exc}. Correct the week or month filter.")
        st.stop()
    if rows.empty:
        show.nothing(name)
    else:
        frame = _shortened(rows)
        show.table(
            frame,
            links=LINKS[name],
            columns=COLUMNS[name],
            key=f"{name}-list",
            helps={
                "commit": "The first 10 characters; the full sha is in the commit link and the CSV.",
                "digest": "Shortened; the full digest is in the CSV.",
            },
        )
    left, right = st.columns([1, 1])
    with left:
        if st.query_params.get("after") and st.button("First page", key="first-page"):
            del st.query_params["after"]
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
