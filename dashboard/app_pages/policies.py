"""Policies: violations by policy and severity, what is new this week, filters, and the list as
CSV; the SonarQube quality gate of what went to production (share green per service, the
deployments that went out red); beside the branch policies, each repository's branch strategy
and the signals behind it."""

import pandas as pd
import streamlit as st

from dashboard import charts, data, drill, show, state

view = state.current()
state.require_data(view)
st.title("Policies")
found = data.violations(view.url, view.scope)


def branch_strategies() -> None:
    st.subheader("Branch strategy")
    strategies = data.branch_strategies(view.url, view.scope)
    if strategies.empty:
        show.nothing("repositories")
        return
    show.table(  # figures to a tenth and the long "decided by" last: every column fits 1440 px
        strategies.assign(
            median_branch_life_hours=strategies["median_branch_life_hours"].map(show.in_hours),
            merges_per_day=pd.to_numeric(strategies["merges_per_day"]).round(1),
        ),
        columns={
            "service": "service",
            "strategy": "strategy",
            "median_branch_life_hours": "median branch life (h)",
            "merges_per_day": "merges per working day",
            "active_branches": "active branches",
            "default_share": "feature work into default",
            "environment_branches": "environment branches",
            "release_branches": "release branches",
            "decided_by": "decided by",
        },
        key="branch-strategies",
    )


def quality_gate() -> None:
    st.subheader("Quality gate of production deployments")
    services, red, total = data.quality_gates(view.url, view.scope, view.promotion_path)
    if services.empty:
        show.nothing("production deployments")
        return
    share = total["share_green"]
    st.caption(
        f"{total['green']} of {total['deployments']} production deployments had a green "
        f"SonarQube gate on their commit before they started"
        + (f" ({share:.0%})" if share is not None else "")
        + f"; {total['red']} went out red, {total['missing']} had no analysis."
    )
    show.table(
        services.assign(share_green=services["share_green"].map(show.percent)),
        columns={
            "service": "service",
            "deployments": "production deployments",
            "green": "green gate",
            "red": "red gate",
            "missing": "no analysis",
            "share_green": "share green",
        },
        key="quality-gates",
    )
    if not red.empty:
        moments = pd.to_datetime(red["finished_at"], utc=True).dt.strftime("%Y-%m-%d %H:%M")
        show.table(
            red.assign(finished_at=moments),
            links={"analysis_url": "analysis"},
            columns={
                "finished_at": "deployed (UTC)",
                "service": "service",
                "environment": "environment",
                "commit": "commit",
                "conditions": "failing conditions",
            },
            key="red-deployments",
        )


if found.empty:
    st.info(
        "No violations recorded yet — they arrive with `cdmetrics policy scan`, which evaluates "
        "every policy (untested images, merges on a red pipeline, direct pushes, ...) and "
        "stores what it finds."
    )
    quality_gate()
    branch_strategies()
    st.stop()

left, middle, right = st.columns([2, 2, 1])
with left:
    policies = st.multiselect(
        "Policy", sorted(found["policy"].unique()), key="policy", bind="query-params"
    )
with middle:
    severities = st.multiselect(
        "Severity", ["error", "warn", "info"], key="severity", bind="query-params"
    )
with right:
    only_new = st.toggle("New this week only", key="new", bind="query-params")
shown = data.chosen_violations(found, policies, severities, only_new)

columns = st.columns(4)
with columns[0]:
    show.tile("Open violations", show.number(int(shown["open"].sum())))
with columns[1]:
    show.tile("Errors", show.number(int((shown["open"] & (shown["severity"] == "error")).sum())))
with columns[2]:
    show.tile("Warnings", show.number(int((shown["open"] & (shown["severity"] == "warn")).sum())))
with columns[3]:
    show.tile("New this week", show.number(int(shown["new"].sum())))

st.subheader("By policy and severity")
counts = shown.groupby(["policy", "severity"]).size().reset_index(name="violations")
if counts.empty:
    show.nothing("violations")
else:
    show.chart(charts.bars(counts, "policy", "violations", "severity"), key="by-policy")


st.subheader("Violations")
# the long "what to do" last, so that the short columns and the links fit at 1440 px
COLUMNS = {
    "occurred_at": "happened (UTC)",
    "first_seen_at": "found (UTC)",
    "policy": "policy",
    "severity": "severity",
    "service": "service",
    "environment": "environment",
    "rows_url": "rows",
    "url": "object",
    "resolved_at": "resolved (UTC)",
    "new": "new",
    "message": "what to do",
}
links = drill.violation_links(view.url, view.scope, state.filter_params())
table = shown.assign(rows_url=links.loc[shown.index])
for moment in ("occurred_at", "first_seen_at", "resolved_at"):
    table[moment] = pd.to_datetime(table[moment], utc=True).dt.strftime("%Y-%m-%d %H:%M")
with st.container(key="violations"):  # the key names the table (tests find it by the key)
    st.dataframe(
        table[list(COLUMNS)],
        hide_index=True,
        column_config={
            **COLUMNS,
            "rows_url": st.column_config.LinkColumn(
                "rows",
                display_text="list",
                help="The deployments of its service and environment on the day it happened "
                "(without an environment: its service's pipelines that day).",
            ),
            "url": st.column_config.LinkColumn("object", display_text="open"),
        },
    )
st.download_button(
    "Download CSV",
    lambda: shown.to_csv(index=False).encode(),  # written when clicked, not on every render
    file_name="violations.csv",
    mime="text/csv",
    on_click="ignore",
    icon=":material/download:",
)
quality_gate()
branch_strategies()
