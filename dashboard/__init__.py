"""The Streamlit dashboard: pages only call analytics/."""
