"""Environments and drift: the service x environment matrix coloured by drift age (from the
latest drift snapshot) and by open violations, what runs where, and one service's detail:
what runs in each environment, the commits a downstream environment lacks, its deployments."""

from collections.abc import Iterable

import pandas as pd
import streamlit as st

from dashboard import charts, data, drill, show, state

view = state.current()
state.require_data(view)
st.title("Environments and drift")
deployed = data.environment_state(view.url, view.scope)


def deployments_links(cells: Iterable[tuple[str, str, str | None, str | None]]) -> list[str]:
    """The Deployments list of each (service, environment, digest, commit) cell
    (`drill.deployments_links`), with the view's filters."""
    return drill.deployments_links(view.url, view.scope, state.filter_params(), tuple(cells))


st.subheader("Drift")
drift = data.drift_matrix(view.url, view.scope)
if drift.empty:
    st.info(
        "No drift snapshot yet: `cdmetrics derive` (which every `cdmetrics sync` runs) records "
        "the drift age and commits behind of each service and environment."
    )
else:
    drift["label"] = drift["commits_behind"].map(lambda n: "" if pd.isna(n) else f"{n:g} behind")
    show.chart(
        charts.matrix(
            drift, "service", "downstream", "drift_age_hours", "label", charts.LEVEL_SCALE
        ),
        key="drift",
    )
    st.caption(
        "Colour: drift age in hours (time since the downstream last ran the upstream's image)."
    )
    drift["rows_url"] = deployments_links(
        (r.service, r.downstream, r.downstream_digest, None) for r in drift.itertuples()
    )
    show.table(
        drift.sort_values(["drift_age_hours", "service"], ascending=[False, True]).assign(
            drift_age_hours=drift["drift_age_hours"].map(show.in_hours),
            taken_at=drift["taken_at"].dt.strftime("%Y-%m-%d %H:%M"),
        ),
        links={"rows_url": "downstream's deployments"},
        link_texts={"rows_url": "list"},
        columns={
            "service": "service",
            "upstream": "upstream",
            "downstream": "downstream",
            "commits_behind": "commits behind",
            "drift_age_hours": "drift age (h)",
            "taken_at": "snapshot (UTC)",
        },
        height=300,
        key="drift-pairs",
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
st.caption(
    "The commit of each environment's last successful deployment before the period's end; a "
    "cell opens the Deployments list of that commit in that environment since it was deployed."
)
shas = {(r.service, r.environment): r.sha for r in deployed.itertuples()}
environments = [c for c in running.columns if c != "service"]
for environment in environments:  # each cell a link that reads as the cell did (after the #)
    cells = [
        (service, cell, sha)
        for service, cell in zip(running["service"], running[environment], strict=True)
        if cell and (sha := shas.get((service, environment)))
    ]
    urls = deployments_links((service, environment, None, sha) for service, _, sha in cells)
    linked = {service: f"{url}#{cell}" for (service, cell, _), url in zip(cells, urls, strict=True)}
    running[environment] = [linked.get(service) for service in running["service"]]
show.table(
    running,
    links={environment: environment for environment in environments},
    columns={"service": "service"},
    link_texts=dict.fromkeys(environments, "#(.+)$"),
    key="running",
)

st.subheader("Service detail")
service = st.selectbox("Service", running["service"].tolist(), key="detail", bind="query-params")
detail = data.service_detail(view.url, view.scope, service, view.promotion_path)
current = detail["current"].sort_values("position")
current = current.assign(
    commit=current["sha"].str[:10], digest=current["image_digest"].str[: drill.DIGEST_SHOWN]
)
current["rows_url"] = deployments_links(
    (service, r.environment, r.image_digest, None) for r in current.itertuples()
)
show.table(
    current,
    links={"commit_url": "commit page", "deployment_url": "deployment", "rows_url": "deployments"},
    link_texts={"rows_url": "list"},
    columns={
        "environment": "environment",
        "commit": "commit",
        "digest": "image digest",
        "ref": "ref",
        "finished_at": "deployed",
    },
    helps={"digest": "Shortened; the full digest is in the Deployments list's CSV."},
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
        history.sort_values("finished_at", ascending=False).assign(
            digest=history["image_digest"].str[: drill.DIGEST_SHOWN]
        ),
        links={"deployment_url": "deployment"},
        columns={
            "finished_at": "deployed",
            "environment": "environment",
            "commit": "commit",
            "digest": "image digest",
            "ref": "ref",
            "rollback": "rollback",
        },
        helps={"digest": "Shortened; the full digest is in the Deployments list's CSV."},
        height=300,
        key="history",
    )
