"""The cdmetrics dashboard: `cdmetrics dashboard` runs `streamlit run` on this file.

The entry point draws what every page shares — login (when configured), the navigation and the
sidebar filters — and runs the chosen page from `app_pages/`. Pages only lay out what
`dashboard.data` fetches from `analytics/`.
"""

import streamlit as st

from config.redaction import install_log_redaction
from dashboard import state

install_log_redaction()  # start-up: URLs in log records are redacted from here on
st.set_page_config(page_title="cdmetrics", page_icon=":material/insights:", layout="wide")
state.login_gate()

PAGES = {
    "Delivery": [
        st.Page(
            "app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True
        ),
        st.Page("app_pages/lead_time.py", title="Lead time", icon=":material/timer:"),
        st.Page("app_pages/deployments.py", title="Deployments", icon=":material/rocket_launch:"),
        st.Page("app_pages/failures.py", title="Failures and recovery", icon=":material/healing:"),
        st.Page("app_pages/deployments_list.py", title="Deployments list", icon=":material/list:"),
        st.Page("app_pages/changes_list.py", title="Changes list", icon=":material/commit:"),
    ],
    "Quality": [
        st.Page("app_pages/builds.py", title="Builds", icon=":material/build:"),
        st.Page("app_pages/pipelines_list.py", title="Pipelines list", icon=":material/list:"),
        st.Page(
            "app_pages/environments.py", title="Environments and drift", icon=":material/layers:"
        ),
        st.Page("app_pages/policies.py", title="Policies", icon=":material/policy:"),
    ],
    "Operations": [
        st.Page("app_pages/data_sources.py", title="Data sources", icon=":material/sync:"),
    ],
}

page = st.navigation(PAGES)
state.prepare()
page.run()
