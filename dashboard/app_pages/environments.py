"""Environments and drift: the service x environment matrix coloured by drift age (from the
latest drift snapshot) and by open violations, what runs where, and one service's detail:
what runs in each environment, the commits a downstream environment lacks, its deployments."""

import streamlit as st

from dashboard import charts, data, show, state

view = state.current()
state.require_data(view)
st.title("Environments and drift")

st.subheader("Drift")
drift = data.drift_matrix(view.url, view.scope)
if drift.empty:
    st.info(
        "No drift snapshot yet: `cdmetrics derive` (which every `cdmetrics sync` runs) records "
        "the drift age and commits behind of each service and environment."
    )
else:
    drift["label"] = drift["commits_behind"].map(lambda n: "" if n is None else f"{n:g} behind")
    show.chart(
        charts.matrix(
            drift, "service", "downstream", "drift_age_hours", "label", charts.LEVEL_SCALE
        ),
        key="drift",
    )
    st.caption(
        "Colour: drift age in hours (time since the downstream last ran the upstream's image)."
    )

st.subheader("Open violations")
violations = data.violations(view.url, view.scope)
if violations.empty:
    st.info("No violations recorded yet — they arrive with `cdmetrics policy scan`.")
else:
    found = violations[violations["open"]].fillna({"environment": "(none)", "service": "(none)"})
    counts = found.groupby(["service", "environment"]).size().reset_index(name="violations")
    show.chart(
        charts.matrix(counts, "service", "environment", "violations", scale=charts.LEVEL_SCALE),
        key="violations",
    )

st.subheader("What runs where")
running = data.whats_running(view.url, view.scope)
if running.empty:
    show.nothing("successful deployments")
    st.stop()
st.caption("The commit of each environment's last successful deployment before the period's end.")
show.table(running, key="running")

st.subheader("Service detail")
service = st.selectbox("Service", running["service"].tolist(), key="detail", bind="query-params")
detail = data.service_detail(view.url, view.scope, service, view.promotion_path)
current = detail["current"].sort_values("position")
current = current.assign(commit=current["sha"].str[:10])
show.table(
    current,
    links={"commit_url": "commit page", "deployment_url": "deployment"},
    columns={
        "environment": "environment",
        "commit": "commit",
        "image_digest": "image digest",
        "ref": "ref",
        "finished_at": "deployed",
    },
    key="current",
)
if not detail["pairs"].empty:
    st.caption("Along the promotion path: the commits a downstream environment does not run yet.")
    show.table(detail["pairs"], links={"compare_url": "commits behind (GitLab)"}, key="pairs")
history = detail["history"]
st.markdown(f"**Promotion history** of {service} in the period")
if history.empty:
    show.nothing("deployments of this service")
else:
    show.chart(charts.timeline(history, list(view.promotion_path)), key="timeline")
    show.table(
        history.sort_values("finished_at", ascending=False),
        links={"deployment_url": "deployment"},
        columns={
            "finished_at": "deployed",
            "environment": "environment",
            "commit": "commit",
            "image_digest": "image digest",
            "ref": "ref",
            "rollback": "rollback",
        },
        height=300,
        key="history",
    )
