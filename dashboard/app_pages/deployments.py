"""Deployments: production deployments per week, a calendar of deployment days, and deployment
attempts per service and environment."""

import streamlit as st

from dashboard import charts, data, drill, show, state

view = state.current()
state.require_data(view)
st.title("Deployments")
metrics = data.metrics(
    view.url,
    view.scope,
    view.rules,
    ("deployment_frequency", "deployment_failure_rate"),
    by=view.by,
)
frequency = metrics["total"]["deployment_frequency"]
attempts = metrics["total"]["deployment_failure_rate"]
columns = st.columns(4)
with columns[0]:
    show.tile("Production deployments", show.number(frequency["deployments"]))
    drill.link("deployments", "The deployments", status="success", kind="app")
with columns[1]:
    show.tile("Deployment days", show.number(frequency["deployment_days"]))
with columns[2]:
    show.tile(
        "Deployment days per week",
        show.number(frequency["median_days_per_week"]),
        level_name=frequency["level"],
        caption="median over the weeks of the period",
    )
with columns[3]:
    show.tile(
        "Deployment failure rate",
        show.percent(attempts["rate"]),
        caption=f"{show.ratio(attempts['failed'], attempts['attempts'])} attempts failed "
        "(every environment)",
    )

st.subheader(f"Production deployments per {view.by}")
per_week = data.deployments_per_bucket(view.url, view.scope, view.rules, view.by)
if per_week.empty:
    show.nothing("production deployments")
else:
    drill.bars(
        "deployments",
        charts.bars(per_week, view.by, "deployments", "team"),
        key="per-week",
        status="success",
        kind="app",
    )

st.subheader("Calendar")
per_day = data.deployments_per_day(view.url, view.scope, view.rules)
show.chart(charts.calendar(per_day), key="calendar")

st.subheader("Per service and environment")
matrix = data.deployments_by_service_environment(view.url, view.scope, view.rules)
if matrix.empty:
    show.nothing("deployments")
else:
    busiest = matrix.groupby("service")["successful"].sum().nlargest(40).index
    shown = matrix[matrix["service"].isin(busiest)].sort_values(["service", "position"])
    show.chart(charts.matrix(shown, "service", "environment", "successful"), key="matrix")
    if len(busiest) < matrix["service"].nunique():
        st.caption(f"The {len(busiest)} services with the most deployments; the table has all.")
    matrix["failure rate"] = (matrix["failed"] / (matrix["failed"] + matrix["successful"])).map(
        show.percent
    )
    matrix["rows_url"] = drill.row_links(
        "deployments",
        (
            {"service": [r.service], "env": r.environment, "kind": "app"}
            for r in matrix.itertuples()
        ),
    )
    show.table(
        matrix,
        links={"rows_url": "deployments"},
        link_texts={"rows_url": "list"},
        columns={
            "service": "service",
            "environment": "environment",
            "successful": "successful",
            "failed": "failed",
            "failure rate": "failure rate",
        },
        key="per-service",
    )
