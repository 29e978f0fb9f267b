"""Overview: the DORA tiles, deployments and change failure rate per week (or month), the teams'
scorecard across the page's width (no column hidden), and the services needing attention; each
leads to the rows behind it."""

import pandas as pd
import streamlit as st

from dashboard import charts, data, drill, show, state, tiles

view = state.current()
state.require_data(view)
st.title("Overview")
metrics = data.metrics(
    view.url, view.scope, view.rules, tuple(tiles.DORA), tiles.PARTS, by_team=True, by=view.by
)
tiles.dora_tiles(metrics, view.scope, view.by, view.targets)

st.subheader(f"Deployments and change failure rate per {view.by}")
weeks = show.trend(
    metrics,
    view.by,
    deployments=("change_failure_rate", "deployments"),
    rate=("change_failure_rate", "rate"),
)
drill.bars(
    "deployments",
    charts.bars_and_rate(weeks, view.by, "deployments", "rate", "deployments", "failure rate"),
    key=f"trend-{view.by}",
    status="success",
    kind="app",
)
st.caption(f"Click a {view.by}'s bar for its production deployments.")
st.subheader("Teams")
teams = pd.DataFrame(
    {
        "team": t["team"],
        "deploy days/week": t["deployment_frequency"]["median_days_per_week"],
        "lead time (h)": show.in_hours(t["lead_time"]["median_hours"]),
        "failure rate": show.percent(t["change_failure_rate"]["rate"]),
        "recovery (h)": show.in_hours(t["recovery_time"]["median_hours"]),
        "levels": " / ".join((t[name]["level"] or "-")[0].upper() for name in tiles.DORA),
        "rows_url": drill.row_link("deployments", team=[t["team"]], status="success", kind="app"),
    }
    for t in metrics["teams"]
)
show.table(teams, links={"rows_url": "deployments"}, link_texts={"rows_url": "list"}, key="teams")
st.caption("Levels: deployment frequency / lead time / failure rate / recovery (E H M L).")

st.subheader("Services needing attention")
attention = data.services_needing_attention(view.url, view.scope)
if attention.empty:
    st.success(
        "Nothing stands out: no unrecovered or recent failed changes, no red default "
        "branch, no open violation."
    )
else:
    attention["rows_url"] = drill.row_links(
        "deployments", ({"service": [name]} for name in attention["service"])
    )
    show.table(
        attention,
        links={"pipeline_url": "red pipeline", "rows_url": "deployments"},
        link_texts={"rows_url": "list"},
        columns={"service": "service", "team": "team", "reasons": "why"},
        key="attention",
    )
