"""Deployments list: the deployment attempts behind a tile, a bar or a row, filters in the URL."""

import streamlit as st

from dashboard import drill

st.title("Deployments list")
st.caption(
    "Every deployment attempt in the scope (newest first). Status `success` and kind `app` are "
    "the production deployments the tiles count; `failed=1` the failed changes."
)
drill.show_list("deployments")
