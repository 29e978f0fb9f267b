"""Pipelines list: the pipelines behind a Builds bar or row, filters in the URL."""

import streamlit as st

from dashboard import drill

st.title("Pipelines list")
st.caption(
    "Every pipeline of the scope's services finished in the period (newest first), as the Builds "
    "page counts them: status `failed` are its failed pipelines. Pipelines have no environment: "
    "the environment filter does not narrow them."
)
drill.show_list("pipelines")
