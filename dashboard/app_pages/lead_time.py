"""Lead time for changes: the distribution, p50/p90 per week, the requirement and merge-request
stages, the merged
MRs not yet in production, and the slowest changes with links to their commit and merge request."""

import pandas as pd
import streamlit as st

from dashboard import charts, data, drill, show, state

view = state.current()
state.require_data(view)
st.title("Lead time for changes")
metrics = data.metrics(
    view.url, view.scope, view.rules, ("lead_time", "requirement_lead_time"), by=view.by
)
lead = metrics["total"]["lead_time"]
requirements = metrics["total"]["requirement_lead_time"]
columns = st.columns(4)
with columns[0]:
    show.tile("Median lead time", show.hours(lead["median_hours"]), level_name=lead["level"])
with columns[1]:
    show.tile("p90 lead time", show.hours(lead["p90_hours"]))
with columns[2]:
    show.tile("Changes deployed", show.number(lead["changes"]), caption="merge commits excluded")
    drill.link("changes", "The changes")
with columns[3]:
    show.tile(
        "Merge requests deployed",
        show.number(lead["merge_requests"]),
        caption=f"median cycle {show.hours(lead['stages']['cycle'])}",
    )
waiting = lead["merged_not_in_production"]
columns = st.columns(4)
with columns[0]:
    show.tile(
        "Merged, not in production",
        show.number(waiting["count"]),
        caption=f"at the period's end; median age {show.hours(waiting['median_age_hours'])}",
    )
with columns[1]:
    show.tile("Oldest merged, not in production", show.hours(waiting["oldest_age_hours"]))

left, right = st.columns(2)
with left:
    st.subheader("Distribution")
    histogram = data.lead_time_histogram(view.url, view.scope, view.rules)
    if lead["changes"]:
        event = show.chart(
            charts.histogram(histogram, "lead time", "changes"), key="histogram", select=True
        )
        st.caption("Click a bar for its changes.")
        index = drill.clicked(event, "point_index")
        if index is not None:
            bucket = histogram.iloc[int(index)]
            drill.go("changes", min_hours=bucket["low"], max_hours=bucket["high"])
    else:
        show.nothing("changes deployed")
with right:
    st.subheader(f"Median and p90 per {view.by}")
    weeks = show.trend(
        metrics, view.by, p50=("lead_time", "median_hours"), p90=("lead_time", "p90_hours")
    )
    show.chart(charts.lines(weeks, view.by, {"p50": "median", "p90": "p90"}, "hours"))

st.subheader("From requirement to production")
if requirements["items"]:
    bar = pd.DataFrame(
        [
            {"label": "requirements", "stage": name, "hours": requirements["stages"][name]}
            for name in ("waiting", "delivery")
        ]
    )
    show.chart(charts.stages(bar), key="requirement-stages")
    st.caption(
        f"{show.number(requirements['items'])} requirements (Jira, Zentao) reached production in "
        f"the period: median {show.hours(requirements['median_hours'])}, p90 "
        f"{show.hours(requirements['p90_hours'])} from creation. Median hours of each stage: "
        "waiting (created → started), delivery (→ first production deployment of a linked "
        "change); links come from the trackers and from keys in MR titles, branches and commits."
    )
else:
    show.nothing("requirements linked to changes in production (no tracker, or no links)")

st.subheader("Merge-request stages")
stage_names = ("coding", "pickup", "review", "deploy")
stages = pd.DataFrame(
    [
        {"label": label, "stage": name, "hours": figures["lead_time"]["stages"][name]}
        for label, figures in [("period", metrics["total"])]
        + [(w["bucket"], w) for w in metrics["trend"]]
        for name in stage_names
    ]
)
if lead["merge_requests"]:
    show.chart(charts.stages(stages[stages["label"] == "period"]), key="stages-period")
    st.caption(
        "Median hours of each stage: coding (first commit → MR opened), pickup (→ first review), "
        "review (→ merged), deploy (→ in production). Medians of stages do not add up to the "
        f"median cycle ({show.hours(lead['stages']['cycle'])}). Negative spans dropped: "
        + ", ".join(f"{k} {v}" for k, v in lead["negative_spans_dropped"].items())
    )
    show.chart(
        charts.bars(stages[stages["label"] != "period"], "label", "hours", "stage"),
        key="stages-weekly",
    )
else:
    show.nothing("merge requests deployed")

st.subheader("Slowest changes")
slowest = data.slowest_changes(view.url, view.scope)
if slowest.empty:
    show.nothing("changes deployed")
else:
    slowest["lead time (h)"] = slowest["lead_time_hours"].map(show.in_hours)
    slowest["commit"] = slowest["sha"].str[:10]
    show.table(
        slowest,
        links={"commit_url": "commit page", "merge_request_url": "merge request"},
        columns={
            "service": "service",
            "commit": "commit",
            "title": "title",
            "lead time (h)": "lead time (h)",
            "started_at": "started",
            "deployed_at": "in production",
            "merge_request": "merge request",
        },
        key="slowest",
    )
