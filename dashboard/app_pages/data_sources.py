"""Data sources: the last sync of each source and stream, sync errors, payloads the normalisers
rejected, and the requests made."""

import streamlit as st

from dashboard import charts, data, show, state

view = state.current()
st.title("Data sources")
if view.empty:
    state.guidance(view)

streams = data.sync_overview(view.url)
if streams.empty:
    st.info(
        "No sync recorded in this warehouse yet: `cdmetrics sync` records each source and "
        "stream here, with its requests, rows and rejected payloads."
    )
else:
    per_source = streams.groupby("source", sort=True)
    for column, (source, rows) in zip(
        st.columns(min(4, per_source.ngroups)), per_source, strict=False
    ):
        with column:
            last = rows["last_finished_at"].max()
            show.tile(
                source,
                "failed" if rows["failed"].sum() else "ok",
                caption=f"last sync finished {last:%Y-%m-%d %H:%M} UTC · "
                f"{int(rows['requests'].sum()):,} requests · "
                f"{int(rows['rejected'].sum()):,} rejected",
            )
    st.subheader("Streams")
    show.chart(charts.bars(streams, "stream", "requests", "source"), key="requests")
    show.table(
        streams,
        columns={
            "source": "source",
            "kind": "kind",
            "stream": "stream",
            "partitions": "partitions",
            "last_started_at": "last started",
            "last_finished_at": "last finished",
            "failed": "failed partitions",
            "running": "running",
            "requests": "requests",
            "payloads": "payloads stored",
            "rows": "rows written by the last sync",
            "rejected": "rejected payloads",
        },
        key="streams",
    )

st.subheader("Errors")
errors = data.sync_errors(view.url)
if errors.empty:
    st.caption("No partition's last sync left an error.")
else:
    st.caption("A failed partition keeps the rows and rejected payloads it stored before failing.")
    show.table(
        errors,
        columns={
            "source": "source",
            "stream": "stream",
            "partition": "partition",
            "status": "status",
            "finished_at": "finished",
            "rows": "rows stored before failing",
            "rejected": "rejected payloads",
            "error": "error",
        },
        key="errors",
    )

st.subheader("Unmapped tracker rows")
unmapped = data.unmapped_tracker_rows(view.url)
if unmapped.empty:
    st.caption("Every incident and work item from a tracker maps to a service.")
else:
    st.caption(
        "Incidents and work items no `[[sources.<tracker>.services]]` rule maps to a service: "
        "kept, but in no metric. `example` is a value the mapping read; add a rule for it."
    )
    show.table(unmapped, key="unmapped")

st.subheader("Rejected payloads")
rejected = data.rejected_payloads(view.url)
if rejected.empty:
    st.caption("No payload was rejected: every payload fetched was normalised.")
else:
    st.caption("Kept verbatim in `raw_payload`, so a fix can re-derive them without re-fetching.")
    show.table(rejected, key="rejected")
