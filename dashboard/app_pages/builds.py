"""Builds: pipeline failure rate, durations and queue time per week, default branches (red since
when) and the failing test suites."""

import pandas as pd
import streamlit as st

from dashboard import charts, data, drill, show, state

view = state.current()
state.require_data(view)
st.title("Builds")
metrics = data.metrics(view.url, view.scope, view.rules, ("build",), by=view.by)
build = metrics["total"]["build"]
columns = st.columns(5)
with columns[0]:
    show.tile(
        "Pipeline failure rate",
        show.percent(build["failure_rate"]),
        caption=f"{build['failed']:,} failed of {build['pipelines']:,} finished pipelines "
        f"({build['canceled']} canceled, {build['skipped']} skipped: not in the rate)",
    )
    drill.link("pipelines", "The failed pipelines", status="failed")
with columns[1]:
    show.tile(
        "Median duration",
        show.seconds(build["median_duration_s"]),
        caption=f"p90 {show.seconds(build['p90_duration_s'])}",
    )
    drill.link("pipelines", "The pipelines")
with columns[2]:
    show.tile("Median queue time", show.seconds(build["median_queue_s"]))
with columns[3]:
    show.tile(
        "Default branch red",
        show.percent(build["default_branch_red_share"]),
        caption="share of the time the latest default-branch pipeline was failed",
    )
    drill.link("pipelines", "The default-branch pipelines", default_branch=1)
with columns[4]:
    show.tile(
        "Failed tests",
        show.number(build["failed_tests"]),
        caption=f"in {build['pipelines_with_failed_tests']:,} pipelines",
    )
    drill.link("pipelines", "Their pipelines", failed_tests=1)

weeks = show.trend(
    metrics,
    view.by,
    failed=("build", "failed"),
    rate=("build", "failure_rate"),
    p50=("build", "median_duration_s"),
    p90=("build", "p90_duration_s"),
    queue=("build", "median_queue_s"),
    red=("build", "default_branch_red_share"),
)
for seconds in ("p50", "p90", "queue"):  # minutes (a week without pipelines draws 0)
    weeks[seconds] = pd.to_numeric(weeks[seconds]).fillna(0) / 60
left, right = st.columns(2)
with left:
    st.subheader(f"Failure rate per {view.by}")
    drill.bars(
        "pipelines",
        charts.bars_and_rate(weeks, view.by, "failed", "rate", "failed pipelines", "rate"),
        key="failure-rate",
        status="failed",
    )
    st.caption(f"Click a {view.by}'s bar for its failed pipelines.")
with right:
    st.subheader(f"Duration and queue time per {view.by}")
    ys = {"p50": "median duration", "p90": "p90 duration", "queue": "median queue"}
    drill.bars("pipelines", charts.lines(weeks, view.by, ys, "minutes"), key="durations")
    st.caption(f"Click a {view.by}'s point for its pipelines.")
left, right = st.columns(2)
with left:
    st.subheader("Durations")
    histogram = data.duration_histogram(view.url, view.scope, view.rules)
    if build["pipelines"]:
        event = show.chart(
            charts.histogram(histogram, "duration", "pipelines"), key="histogram", select=True
        )
        st.caption("Click a bar for its pipelines.")
        index = drill.clicked(event, "point_index")
        if index is not None:
            bucket = histogram.iloc[int(index)]
            drill.go(
                "pipelines",
                min_minutes=bucket["low"] / 60,
                max_minutes=None if pd.isna(bucket["high"]) else bucket["high"] / 60,
            )
    else:
        show.nothing("pipelines")
with right:
    st.subheader(f"Default-branch red time per {view.by}")
    drill.bars(
        "pipelines",
        charts.lines(weeks, view.by, {"red": "red share"}, "share"),
        key="red",
        default_branch=1,
    )
    st.caption(f"Click a {view.by}'s point for its default-branch pipelines.")

st.subheader("Default branches")
branches = data.default_branches(view.url, view.scope)
if branches.empty:
    show.nothing("default-branch pipelines")
else:
    red = branches[branches["status"] == "failed"]
    st.caption(f"{len(red)} of {len(branches)} default branches are red at the end of the period.")
    branches["rows_url"] = drill.row_links(
        "pipelines", ({"service": [r.service], "ref": r.branch} for r in branches.itertuples())
    )
    show.table(
        branches.sort_values(["status", "red_since"], ascending=[True, True]),
        links={"web_url": "pipeline", "rows_url": "pipelines"},
        link_texts={"rows_url": "list"},
        columns={
            "service": "service",
            "branch": "branch",
            "status": "latest pipeline",
            "finished_at": "finished",
            "red_since": "red since",
        },
        key="branches",
    )

st.subheader("Failing tests")
tests = data.failing_tests(view.url, view.scope)
if tests.empty:
    show.nothing("failed tests")
else:
    tests["rows_url"] = drill.row_links(
        "pipelines", ({"service": [r.service], "suite": r.suite} for r in tests.itertuples())
    )
    show.table(
        tests,
        links={"rows_url": "pipelines"},
        link_texts={"rows_url": "list"},
        columns={
            "service": "service",
            "suite": "suite",
            "failed_tests": "failed tests",
            "failing_runs": "runs with failures",
            "runs": "runs",
            "last_failed_at": "last failed",
        },
        key="tests",
    )
