"""The frame around every page: settings, the warehouse, the sidebar filters and the scope they
make, optional login, and the guidance shown when there is nothing to show.

The filters live in the URL's query parameters (`?period=2026-09-01&period=2026-11-27&team=
payments&service=...&env=staging`), bound to their widgets, so a copied link opens the same view.
Settings come from `cdmetrics.toml` and `CDMETRICS_*` variables: `cdmetrics dashboard` passes
the config path and the warehouse URL as CDMETRICS_CONFIG and CDMETRICS_WAREHOUSE__URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import NoReturn
from zoneinfo import ZoneInfo

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from analytics.derive import FailureRules
from analytics.scope import Scope
from cdmetrics.settings import ConfigError, Settings, load_settings
from dashboard import data
from warehouse.engine import WarehouseURLError, normalise_url

PRODUCTION = "production tier"  # the environment filter's default: every production-tier one
DEFAULT_WEEKS = 12
DEFAULT_MONTHS = 6  # the month view's default period: this month and the five before
BY = ("week", "month")
SESSION_KEY = "cdmetrics.view"
FILTER_KEYS = ("by", "period", "team", "service", "env")  # the sidebar's query parameters


@dataclass(frozen=True)
class View:
    """What every page needs: the warehouse, the scope chosen in the sidebar, the failure rules
    and the promotion path of the settings, and which facts the warehouse holds."""

    url: str
    shown_url: str
    scope: Scope
    rules: FailureRules
    promotion_path: tuple[str, ...]
    presence: dict[str, bool]
    by: str = "week"  # the trend's buckets: ISO weeks, or months

    @property
    def empty(self) -> bool:
        return not (self.presence.get("deployments") or self.presence.get("pipelines"))


def _stop_with(message: str) -> NoReturn:
    st.error(message, icon=":material/error:")
    st.stop()


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _stop_with(f"The configuration cannot be used.\n\n```\n{exc}\n```")


def _open(settings: Settings) -> tuple[str, str]:
    """(url, url with the password hidden) of a warehouse that opened."""
    try:
        parsed = normalise_url(settings.warehouse.url)
    except WarehouseURLError as exc:
        _stop_with(f"{exc}. Set `[warehouse] url` or `CDMETRICS_WAREHOUSE__URL`.")
    url = parsed.render_as_string(hide_password=False)
    shown = parsed.render_as_string(hide_password=True)
    try:
        data.engine(url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        _stop_with(
            f"Cannot open the warehouse {shown}: {reason}. Check `[warehouse] url` and that "
            "the database is running."
        )
    return url, shown


def login_gate() -> None:
    """When Streamlit's OIDC login is configured (an `[auth]` table in .streamlit/secrets.toml),
    only a logged-in user gets past this."""
    if not (st.secrets.load_if_toml_exists() and "auth" in st.secrets):
        return
    if st.user.is_logged_in:
        with st.sidebar:
            st.caption(f"Signed in as {st.user.get('email') or st.user.get('name') or 'you'}")
            st.button("Log out", on_click=st.logout)
        return
    st.title("cdmetrics")
    st.write("Sign in to see the delivery metrics.")
    st.button("Log in", on_click=st.login, type="primary")
    st.stop()


def _default_days(today: date, by: str) -> tuple[date, date]:
    """The default period's first and last day: the last 12 weeks, or (by month) this month and
    the five before."""
    if by == "month":
        month = today.year * 12 + today.month - 1 - (DEFAULT_MONTHS - 1)
        return date(month // 12, month % 12 + 1, 1), today
    return today - timedelta(weeks=DEFAULT_WEEKS) + timedelta(days=1), today


def _reset_period(zone: ZoneInfo) -> None:
    """Switching between weeks and months starts from that view's default period."""
    by = st.session_state.get("by") or "week"
    st.session_state["period"] = _default_days(datetime.now(zone).date(), by)


def _by(zone: ZoneInfo) -> str:
    chosen = st.sidebar.segmented_control(
        "Trend by",
        BY,
        default="week",
        key="by",
        bind="query-params",
        on_change=_reset_period,
        args=(zone,),
        help="Weeks (default period: 12 weeks) or months (default period: 6 months); tiles "
        "compare the last complete week or month with the one before.",
    )
    return chosen if chosen in BY else "week"


def _period(zone: ZoneInfo, by: str = "week") -> tuple[datetime, datetime]:
    today = datetime.now(zone).date()
    default = _default_days(today, by)
    chosen = st.sidebar.date_input(
        "Period",
        value=default,
        key="period",
        bind="query-params",
        format="YYYY-MM-DD",
        help="First and last day (both included); default: the last 12 weeks, or 6 months.",
    )
    days: list[date] = [d for d in (chosen if isinstance(chosen, tuple) else (chosen,)) if d]
    start, end = (min(days), max(days)) if days else default
    since = datetime.combine(start, time(0), tzinfo=zone)
    return since, datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone)


def _filters(settings: Settings, url: str) -> tuple[Scope, str]:
    options = data.filter_options(url)
    zone = ZoneInfo(settings.sync.timezone)
    with st.sidebar:
        st.header("Filters")
        by = _by(zone)
        since, until = _period(zone, by)
        teams = st.multiselect("Team", options["teams"], key="team", bind="query-params")
        services = st.multiselect(
            "Service", options["services"], key="service", bind="query-params"
        )
        environment = st.selectbox(
            "Environment",
            [PRODUCTION, *options["environments"]],
            key="env",
            bind="query-params",
            help="Where deployments count (default: every production-tier environment).",
        )
    scope = Scope(
        since,
        until,
        tuple(teams),
        tuple(services),
        None if environment == PRODUCTION else environment,
        settings.sync.timezone,
    )
    return scope, by


def prepare() -> View:
    """Read the settings, open the warehouse, draw the sidebar filters; the page's View."""
    settings = _settings()
    url, shown = _open(settings)
    scope, by = _filters(settings, url)
    m = settings.metrics
    view = View(
        url,
        shown,
        scope,
        FailureRules(m.failure_window, m.hotfix_window, tuple(m.hotfix_refs)),
        tuple(settings.environments.promotion_path),
        data.presence(url),
        by,
    )
    with st.sidebar:
        st.caption(
            f"{scope.since.date()} → {(scope.until - timedelta(days=1)).date()} "
            f"({scope.timezone}) · warehouse `{shown}`"
        )
        if st.button("Reload data", help="Forget cached results and read the warehouse again."):
            st.cache_data.clear()
            st.cache_resource.clear()
    st.session_state[SESSION_KEY] = view
    return view


def filter_params() -> dict[str, list[str]]:
    """The sidebar's filters as they stand in the URL (a link carrying them shows the same
    scope; a filter left at its default is not in the URL)."""
    return {k: st.query_params.get_all(k) for k in FILTER_KEYS if k in st.query_params}


def current() -> View:
    """The View the entry point prepared for this run."""
    view: View = st.session_state[SESSION_KEY]
    return view


GUIDANCE = """\
**The warehouse `{url}` has no deployments or pipelines yet.**

- **Sync your sources:** describe them in `cdmetrics.toml` (`cdmetrics init` writes a commented
  example), then run `cdmetrics sync`. The dashboard shows what the sync brought within minutes.
- **Or try the demo:** `cdmetrics demo` generates an organisation, syncs it through the real
  GitLab collector into `cdmetrics-demo.db` and opens this dashboard on it.

Then reload this page.
"""


def guidance(view: View) -> None:
    """How to fill an empty warehouse."""
    st.info(GUIDANCE.format(url=view.shown_url), icon=":material/info:")


def require_data(view: View) -> None:
    """Stop the page with the guidance when the warehouse is empty."""
    if view.empty:
        guidance(view)
        st.stop()
