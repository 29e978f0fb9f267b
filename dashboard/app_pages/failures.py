"""Failures and recovery: change failure rate per week, the failed changes with their reasons,
recovery times, and incidents."""

import streamlit as st

from dashboard import charts, data, drill, show, state

view = state.current()
state.require_data(view)
st.title("Failures and recovery")
names = ("change_failure_rate", "recovery_time", "rework_rate")
metrics = data.metrics(view.url, view.scope, view.rules, names, by=view.by)
cfr, recovery, rework = (metrics["total"][n] for n in names)
columns = st.columns(4)
with columns[0]:
    show.tile(
        "Change failure rate",
        show.percent(cfr["rate"]),
        level_name=cfr["level"],
        caption=f"{show.ratio(cfr['failed'], cfr['deployments'])} production deployments",
    )
with columns[1]:
    show.tile(
        "Median recovery time",
        show.hours(recovery["median_hours"]),
        level_name=recovery["level"],
        caption=f"p90 {show.hours(recovery['p90_hours'])} · {recovery['unrecovered']} unrecovered",
    )
with columns[2]:
    show.tile(
        "Incidents",
        show.number(recovery["incidents"]),
        caption=f"{recovery['incidents_open']} open · restored in "
        f"{show.hours(recovery['incident_restore_median_hours'])} (median)"
        + show.resolved_before_opened(recovery["incidents_resolved_before_opened"]),
    )
with columns[3]:
    show.tile(
        "Rework rate",
        show.percent(rework["rate"]),
        caption=f"{show.ratio(rework['rework'], rework['deployments'])} deployments",
    )
reasons = cfr["reasons"]
st.caption(
    "Failed changes by reason (one can have several): "
    + ", ".join(f"{name} {count}" for name, count in reasons.items())
)

st.subheader(f"Change failure rate per {view.by}")
weeks = show.trend(
    metrics, view.by, failed=("change_failure_rate", "failed"), rate=("change_failure_rate", "rate")
)
drill.bars(
    "deployments",
    charts.bars_and_rate(weeks, view.by, "failed", "rate", "failed changes", "rate"),
    key=f"failed-{view.by}",
    failed=1,
)
drill.link("deployments", "The failed changes", failed=1)

failed = data.failed_changes(view.url, view.scope)
left, right = st.columns([3, 2])
with left:
    st.subheader("Failed changes")
    if failed.empty:
        show.nothing("failed changes")
    else:
        failed["recovery (h)"] = failed["recovery_hours"].map(show.in_hours)
        show.table(
            failed,
            links={"deployment_url": "deployment", "commit_url": "commit"},
            columns={
                "service": "service",
                "finished_at": "deployed",
                "reasons": "reasons",
                "ref": "ref",
                "recovered_at": "recovered",
                "recovery (h)": "recovery (h)",
            },
            key="failed",
        )
with right:
    st.subheader("Recovery times")
    recovered = failed[failed["recovery_hours"].notna()] if not failed.empty else failed
    if recovered.empty:
        show.nothing("recovered failures")
    else:
        show.chart(
            charts.scatter(
                recovered, "finished_at", "recovery_hours", "reasons", ["service"], "hours", True
            ),
            key="recovery",
        )

st.subheader("Incidents")
incidents = data.incidents(view.url, view.scope)
if incidents.empty:
    show.nothing("incidents")
else:
    incidents["time to restore (h)"] = incidents["restore_hours"].map(show.in_hours)
    show.table(
        incidents,
        links={"url": "incident"},
        columns={
            "opened_at": "opened",
            "service": "service",
            "severity": "severity",
            "title": "title",
            "resolved_at": "resolved",
            "time to restore (h)": "time to restore (h)",
            "resolved_before_opened": "resolved before opened",
        },
        key="incidents",
    )
