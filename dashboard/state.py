"""The frame around every page: settings, the warehouse, the sidebar filters and the scope they
make, optional login, and the guidance shown when there is nothing to show.

The filters live in the URL's query parameters (`?period=2026-09-01&period=2026-11-27&team=
payments&service=...&env=staging`), bound to their widgets, so a copied link opens the same view.
Settings come from `cdmetrics.toml` and `CDMETRICS_*` variables: `cdmetrics dashboard` passes
the config path and the warehouse URL as CDMETRICS_CONFIG and CDMETRICS_WAREHOUSE__URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NoReturn

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from analytics.rules import FailureRules
from analytics.scope import PeriodError, Scope, unknown_names
from analytics.warehouse import WarehouseURLError, normalise_url
from config.settings import ConfigError, Settings, Target, load_settings
from dashboard import data

PRODUCTION = "production tier"  # the environment filter's default: every production-tier one
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
    targets: dict[str, Target] = field(default_factory=dict)  # of the scope's team, else the org's

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


def default_days(timezone: str, by: str = "week") -> tuple[date, date]:
    """The first and last day (both included) of the default period of every surface
    (`Scope.default`: 12 whole ISO weeks and the current one so far); the month
    view's: this month so far and the five before."""
    default = Scope.default(timezone)
    since, last = default.since, (default.until - timedelta(days=1)).date()
    if by == "month":
        month = last.year * 12 + last.month - 1 - (DEFAULT_MONTHS - 1)
        return date(month // 12, month % 12 + 1, 1), last
    return since.date(), last


def period_of(
    first: date,
    last: date,
    timezone: str,
    teams: tuple[str, ...] = (),
    services: tuple[str, ...] = (),
    environment: str | None = None,
) -> Scope:
    """The scope of the days picked (both included) and the filters, through the one period
    parser of every surface (`Scope.parse`)."""
    until = (last + timedelta(days=1)).isoformat()
    return Scope.parse(first.isoformat(), until, teams, services, environment, timezone)


def _reset_period(timezone: str) -> None:
    """Switching between weeks and months starts from that view's default period."""
    by = st.session_state.get("by") or "week"
    st.session_state["period"] = default_days(timezone, by)


def _by(timezone: str) -> str:
    chosen = st.sidebar.segmented_control(
        "Trend by",
        BY,
        default="week",
        key="by",
        bind="query-params",
        on_change=_reset_period,
        args=(timezone,),
        help="Weeks (default period: 12 whole ISO weeks and the current one so far) or months "
        "(default period: 6 months); tiles compare the last complete week or month with the one "
        "before.",
    )
    return chosen if chosen in BY else "week"


def _period(timezone: str, by: str = "week") -> tuple[date, date]:
    """The sidebar's period: first and last day, both included; by default the default period."""
    default = default_days(timezone, by)
    chosen = st.sidebar.date_input(
        "Period",
        value=default,
        key="period",
        bind="query-params",
        format="YYYY-MM-DD",
        help="First and last day (both included); default: the last 12 whole ISO weeks and the "
        "current week so far, or (by month) 6 months.",
    )
    days: list[date] = [d for d in (chosen if isinstance(chosen, tuple) else (chosen,)) if d]
    return (min(days), max(days)) if days else default


def link_problems(params: dict[str, list[str]], options: dict[str, list[str]]) -> list[str]:
    """What is wrong with a link's filters (`params`, the query parameters), which the widgets
    would otherwise drop silently and show the whole organisation or the default period: names
    the warehouse does not know (with the closest known, `analytics.scope.unknown_names`) and
    dates that are not YYYY-MM-DD or run backwards."""
    problems = []
    for kind, key in (("team", "team"), ("service", "service"), ("environment", "env")):
        asked = [v for v in params.get(key, []) if v != PRODUCTION]
        problem = unknown_names(kind, asked, options[f"{kind}s"])
        if problem:
            problems.append(f"This link's filter names {problem}: it is left out.")
    days = params.get("period", [])
    for value in days:
        try:
            date.fromisoformat(value)
        except ValueError:
            problems.append(
                f"This link's period {value!r} is not a date (YYYY-MM-DD): the default period "
                "is shown."
            )
            return problems
    if len(days) == 2 and days[0] > days[1]:
        problems.append(
            f"This link's period runs backwards ({days[0]} after {days[1]}): it is shown "
            f"from {days[1]} to {days[0]}."
        )
    return problems


def _filters(settings: Settings, url: str) -> tuple[Scope, str]:
    options = data.filter_options(url)
    params = {key: st.query_params.get_all(key) for key in ("team", "service", "env", "period")}
    for problem in link_problems(params, options):
        st.warning(problem, icon=":material/link_off:")
    with st.sidebar:
        st.header("Filters")
        by = _by(settings.sync.timezone)
        first, last = _period(settings.sync.timezone, by)
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
    try:
        scope = period_of(
            first,
            last,
            settings.sync.timezone,
            tuple(teams),
            tuple(services),
            None if environment == PRODUCTION else environment,
        )
    except PeriodError as exc:
        _stop_with(f"The period cannot be used: {exc}.")
    return scope, by


def prepare() -> View:
    """Read the settings, open the warehouse, draw the sidebar filters; the page's View."""
    settings = _settings()
    url, shown = _open(settings)
    scope, by = _filters(settings, url)
    view = View(
        url,
        shown,
        scope,
        FailureRules.from_settings(settings),
        tuple(settings.environments.promotion_path),
        data.presence(url),
        by,
        settings.targets.for_teams(scope.teams),
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
    # one read of the URL's parameters, then only the filters present (a table's row links call
    # this per row; every st.query_params call is a Streamlit command of its own)
    present = st.query_params.to_dict()
    return {k: st.query_params.get_all(k) for k in FILTER_KEYS if k in present}


def current() -> View:
    """The View the entry point prepared for this run."""
    view: View = st.session_state[SESSION_KEY]
    return view


GUIDANCE = """\
**The warehouse `{url}` has no deployments or pipelines yet.**

- **Sync your sources:** describe them in `cdmetrics.toml` (`cdmetrics init` writes a commented
  example), then run `cdmetrics sync`. The dashboard shows what the sync brought within minutes.
- **Or try the demo:** `cdmetrics demo` generates an organisation, serves it as GitLab, Jenkins,
  registries and Kubernetes over HTTP, syncs it through the real collectors into
  `cdmetrics-demo.db` (or the `--warehouse` given) and opens a dashboard on it.

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
