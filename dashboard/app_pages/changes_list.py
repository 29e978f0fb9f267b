"""Changes list: the changes behind lead time, a bar or a row, filters in the URL."""

import streamlit as st

from dashboard import drill

st.title("Changes list")
st.caption(
    "Each change where it first reached the scope's environment (newest first), as lead time "
    "counts it: its commit, merge request, lead time and stages, and the deployment that "
    "shipped it."
)
drill.show_list("changes")
