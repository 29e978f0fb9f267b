"""The dashboard through Streamlit's AppTest: every page on the demo organisation renders without
an exception, shows its key elements, and the numbers it shows equal the analytics API's for the
same scope; every page on an empty warehouse shows how to fill it. The views behind the pages
run on SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest

from analytics import metrics, selects, views
from analytics.derive import derive
from analytics.rows import PARTS, ScopeData
from analytics.scope import Scope
from analytics.slices import SLICES, slices
from analytics.views import distributions, running
from dashboard import data, drill, launch, show, state, tiles
from sandbox.generate import generate
from tests.demo_warehouse import NOW, PERIOD
from tests.sandbox_load import load_org
from warehouse.engine import open_warehouse
from warehouse.schema import Deployment, Environment, Service

APP = Path(launch.APP)
SCOPE = Scope(datetime(2025, 12, 8, tzinfo=UTC), NOW)
# page file -> (title, metric labels it shows, Plotly charts drawn on the demo org)
PAGES: dict[str, tuple[str, list[str], int]] = {
    "overview": ("Overview", [t.label for t in tiles.DORA.values()], 1),
    "lead_time": ("Lead time for changes", ["Median lead time", "p90 lead time"], 4),
    "deployments": ("Deployments", ["Production deployments", "Deployment failure rate"], 3),
    "failures": ("Failures and recovery", ["Change failure rate", "Median recovery time"], 2),
    "builds": ("Builds", ["Pipeline failure rate", "Median duration", "Failed tests"], 4),
    "environments": ("Environments and drift", [], 1),
    "policies": ("Policies", [], 0),
    "data_sources": ("Data sources", ["gitlab"], 1),
    "deployments_list": ("Deployments list", [], 0),
    "changes_list": ("Changes list", [], 0),
    "pipelines_list": ("Pipelines list", [], 0),
}


@pytest.fixture
def dashboard_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No cdmetrics.toml and no CDMETRICS_* variable but the ones a test sets."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CDMETRICS_")]:
        monkeypatch.delenv(name)
    yield monkeypatch


def open_page(
    monkeypatch: pytest.MonkeyPatch, url: str, page: str, query: dict[str, Any] | None = None
) -> AppTest:
    """Run the dashboard on warehouse `url` and switch to `page` (a file of app_pages/)."""
    monkeypatch.setenv("CDMETRICS_WAREHOUSE__URL", url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"period": list(PERIOD), **(query or {})})
    if page != "overview":
        at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> Any:
    return next(m for m in at.metric if m.label == label)


def frame(at: AppTest, key: str) -> pd.DataFrame:
    """The table shown under `key`."""
    block = at.main.get_by_key(key)
    return block.dataframe[0].value  # type: ignore[attr-defined,no-any-return]


def expected(url: str, scope: Scope = SCOPE, by: str | None = "week") -> dict[str, Any]:
    engine = open_warehouse(url)
    with engine.connect() as conn:
        result = metrics.metrics(conn, scope, by=by)
    engine.dispose()
    return result


def view_rows(url: str, name: str, scope: Scope | None = SCOPE, **kw: Any) -> list[dict]:
    engine = open_warehouse(url)
    with engine.connect() as conn:
        rows = (
            getattr(views, name)(conn, **kw)
            if scope is None
            else getattr(views, name)(conn, scope, **kw)
        )
    engine.dispose()
    return rows  # type: ignore[no-any-return]


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_its_key_elements_on_the_demo_org(
    dashboard_env: pytest.MonkeyPatch, demo_url: str, page: str
) -> None:
    title, labels, charts = PAGES[page]
    at = open_page(dashboard_env, demo_url, page)
    assert [t.value for t in at.title] == [title]
    assert not at.error
    shown = {m.label for m in at.metric}
    assert set(labels) <= shown, shown
    assert len(at.get("plotly_chart")) >= charts
    assert at.query_params["period"] == list(PERIOD)  # the filters stay in the URL


def test_overview_tiles_equal_the_analytics_api(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    at = open_page(dashboard_env, demo_url, "overview")
    m = expected(demo_url)
    weeks = {row["week"]: row for row in m["rows"]}
    pair = (weeks["2026-W09"], weeks["2026-W08"])
    assert views.comparison_weeks(SCOPE)[0][0] == "2026-W09"  # type: ignore[index]
    for name, tile in tiles.DORA.items():
        shown = metric(at, tile.label)
        assert shown.value == tile.value(m[name]), name
        delta = tiles.change(tile, name, pair)
        assert shown.delta == ("" if delta is None else str(delta)), name
    assert metric(at, "Lead time for changes").value == show.hours(m["lead_time"]["median_hours"])
    assert metric(at, "Change failure rate").value == show.percent(m["change_failure_rate"]["rate"])
    teams, by_team = frame(at, "teams"), expected(demo_url, by="team")["rows"]
    assert list(teams["team"]) == [r["team"] for r in by_team]
    assert list(teams["lead time (h)"]) == [
        show.in_hours(r["lead_time"]["median_hours"]) for r in by_team
    ]
    assert list(teams["failure rate"]) == [
        show.percent(r["change_failure_rate"]["rate"]) for r in by_team
    ]
    attention = frame(at, "attention")
    assert list(attention["service"]) == [
        r["service"] for r in view_rows(demo_url, "services_needing_attention")
    ]
    assert len(attention) > 0


def test_lead_time_page_equals_the_analytics_api(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    at = open_page(dashboard_env, demo_url, "lead_time")
    lead = expected(demo_url, by=None)["lead_time"]
    assert metric(at, "Median lead time").value == show.hours(lead["median_hours"])
    assert metric(at, "p90 lead time").value == show.hours(lead["p90_hours"])
    assert metric(at, "Changes deployed").value == show.number(lead["changes"])
    assert metric(at, "Merge requests deployed").value == show.number(lead["merge_requests"])
    waiting = lead["merged_not_in_production"]
    assert metric(at, "Merged, not in production").value == show.number(waiting["count"])
    assert metric(at, "Oldest merged, not in production").value == show.hours(
        waiting["oldest_age_hours"]
    )
    assert waiting["count"] > 0  # the demo organisation has merges waiting
    slowest = frame(at, "slowest")
    rows = view_rows(demo_url, "slowest_changes")
    assert list(slowest["service"]) == [r["service"] for r in rows]
    assert list(slowest["lead time (h)"]) == [show.in_hours(r["lead_time_hours"]) for r in rows]
    assert all(u.startswith("http://gitlab.sandbox.test/") for u in slowest["commit_url"])
    assert slowest["merge_request_url"].notna().any()
    hours = [r["lead_time_hours"] for r in rows]
    assert hours == sorted(hours, reverse=True) and hours[-1] >= lead["p90_hours"]


def test_deployments_page_equals_the_analytics_api(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    at = open_page(dashboard_env, demo_url, "deployments")
    m = expected(demo_url, by=None)
    frequency, attempts = m["deployment_frequency"], m["deployment_failure_rate"]
    assert metric(at, "Production deployments").value == show.number(frequency["deployments"])
    assert metric(at, "Deployment days").value == show.number(frequency["deployment_days"])
    assert metric(at, "Deployment days per week").value == show.number(
        frequency["median_days_per_week"]
    )
    assert metric(at, "Deployment failure rate").value == show.percent(attempts["rate"])
    per_service = frame(at, "per-service")  # every environment: the per-environment breakdown
    assert per_service["successful"].sum() + per_service["failed"].sum() == sum(
        e["attempts"] for e in attempts["environments"].values()
    )
    assert per_service["failed"].sum() == sum(
        e["failed"] for e in attempts["environments"].values()
    )
    production = per_service[per_service["environment"] == "production"]
    assert production["failed"].sum() == attempts["failed"]  # the tile: the production tier


def test_failures_page_equals_the_analytics_api(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    at = open_page(dashboard_env, demo_url, "failures")
    m = expected(demo_url, by=None)
    cfr, recovery = m["change_failure_rate"], m["recovery_time"]
    assert metric(at, "Change failure rate").value == show.percent(cfr["rate"])
    assert metric(at, "Median recovery time").value == show.hours(recovery["median_hours"])
    assert metric(at, "Incidents").value == show.number(recovery["incidents"])
    assert metric(at, "Rework rate").value == show.percent(m["rework_rate"]["rate"])
    failed = frame(at, "failed")
    assert len(failed) == cfr["failed"] > 0
    for reason, count in cfr["reasons"].items():
        assert failed["reasons"].str.contains(reason).sum() == count
    assert failed["recovery (h)"].notna().sum() == recovery["failures"]
    incidents = frame(at, "incidents")
    assert len(incidents) == recovery["incidents"]
    # resolved before opened: said so, counted, never a negative time to restore
    restore = incidents["time to restore (h)"]
    backwards = recovery["incidents_resolved_before_opened"]
    assert incidents["resolved_before_opened"].sum() == backwards > 0
    assert (
        restore[incidents["resolved_before_opened"]].isna().all() and (restore.dropna() >= 0).all()
    )


def test_builds_page_equals_the_analytics_api(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    at = open_page(dashboard_env, demo_url, "builds")
    build = expected(demo_url, by=None)["build"]
    assert metric(at, "Pipeline failure rate").value == show.percent(build["failure_rate"])
    assert metric(at, "Median duration").value == show.seconds(build["median_duration_s"])
    assert metric(at, "Median queue time").value == show.seconds(build["median_queue_s"])
    assert metric(at, "Default branch red").value == show.percent(build["default_branch_red_share"])
    assert metric(at, "Failed tests").value == show.number(build["failed_tests"])
    assert frame(at, "tests")["failed_tests"].sum() == build["failed_tests"]
    branches = frame(at, "branches")
    assert set(branches["status"]) <= {"success", "failed"} and len(branches) > 0


def test_environments_page_shows_what_runs_where_and_a_service(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    at = open_page(dashboard_env, demo_url, "environments", {"detail": "payments-api"})
    assert any("No drift snapshot yet" in i.value for i in at.info)
    assert any("cdmetrics policy scan" in i.value for i in at.info)
    running = frame(at, "running")
    state = view_rows(demo_url, "environment_state")
    assert set(running["service"]) == {r["service"] for r in state}
    assert at.selectbox(key="detail").value == "payments-api"
    current = frame(at, "current")
    # payments-api also runs in a second production region, placed where production is
    assert list(current["environment"]) == ["test", "staging", "production", "production-us"]
    pairs = frame(at, "pairs")
    assert list(pairs["downstream"]) == ["staging", "production"]
    assert all("/-/compare/" in u for u in pairs["compare_url"].dropna())
    history = frame(at, "history")
    assert len(history) == len(view_rows(demo_url, "promotion_history", service="payments-api"))


def test_environments_page_colours_drift_and_violations(
    dashboard_env: pytest.MonkeyPatch, findings_url: str
) -> None:
    at = open_page(dashboard_env, findings_url, "environments", {"detail": "payments-api"})
    assert not any("No drift snapshot yet" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) >= 3  # drift, violations, promotion history
    snapshot = view_rows(findings_url, "drift_matrix")
    pairs = frame(at, "pairs")
    for pair in pairs.to_dict("records"):
        behind = next(
            d["commits_behind"]
            for d in snapshot
            if (d["service"], d["upstream"], d["downstream"])
            == ("payments-api", pair["upstream"], pair["downstream"])
        )
        assert pair["commits behind"] == behind


def test_policies_page_counts_filters_and_downloads(
    dashboard_env: pytest.MonkeyPatch, findings_url: str
) -> None:
    at = open_page(dashboard_env, findings_url, "policies")
    assert metric(at, "Open violations").value == "4"
    assert metric(at, "Errors").value == "2"
    assert metric(at, "New this week").value == "2"  # occurred 1 and 2 days before NOW
    assert len(at.get("plotly_chart")) == 1 and len(at.get("download_button")) == 1
    assert len(frame(at, "branch-strategies")) == len(view_rows(findings_url, "branch_strategies"))
    filtered = open_page(
        dashboard_env, findings_url, "policies", {"severity": "error", "team": ["payments"]}
    )
    shown = frame(filtered, "violations")
    assert list(shown["policy"]) == ["untested-image"] * 2
    assert filtered.query_params["severity"] == "error"
    for row in shown.to_dict("records"):  # its service's deployments there on its day
        day = row["occurred_at"][:10]
        followed = query_of(row["rows_url"])
        assert followed["page"] == "deployments_list"
        assert followed["query"]["service"] == ["payments-api"]
        assert followed["query"]["env"] == "production" and followed["query"]["team"] == [
            "payments"
        ]
        assert followed["query"]["period"] == [day, day]


def test_policies_page_without_violations_says_where_they_come_from(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    at = open_page(dashboard_env, demo_url, "policies")
    assert any("No violations recorded yet" in i.value for i in at.info)
    # beside the branch policies, each repository's branch strategy, as the analytics API says
    shown = frame(at, "branch-strategies")
    rows = view_rows(demo_url, "branch_strategies")
    assert list(shown["service"]) == [r["service"] for r in rows]
    assert list(shown["strategy"]) == [r["strategy"] for r in rows]
    assert list(shown["active_branches"]) == [r["active_branches"] for r in rows]
    assert {"git-flow", "gitlab-flow"} <= set(shown["strategy"])


def test_data_sources_page_shows_syncs_errors_and_rejected_payloads(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    at = open_page(dashboard_env, demo_url, "data_sources")
    assert metric(at, "gitlab").value == "failed"
    streams = frame(at, "streams")
    overview = view_rows(demo_url, "sync_overview", None)
    assert streams["requests"].sum() == sum(r["requests"] for r in overview) == 33
    assert list(frame(at, "errors")["stream"]) == ["merge_requests"]
    assert list(frame(at, "errors")["rows"]) == [200]  # stored before the partition failed
    assert list(frame(at, "rejected")["error"]) == ["no environment"]


def test_filters_come_from_the_url_and_narrow_the_numbers(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    query = {"team": ["payments", "search"], "env": "staging"}
    at = open_page(dashboard_env, demo_url, "deployments", query)
    assert at.multiselect(key="team").value == ["payments", "search"]
    assert at.selectbox(key="env").value == "staging"
    scope = Scope(SCOPE.since, SCOPE.until, ("payments", "search"), (), "staging")
    m = expected(demo_url, scope, by=None)
    assert metric(at, "Production deployments").value == show.number(
        m["deployment_frequency"]["deployments"]
    )
    assert (
        m["deployment_frequency"]["deployments"]
        != expected(demo_url, by=None)["deployment_frequency"]["deployments"]
    )
    assert at.query_params["team"] == ["payments", "search"] and at.query_params["env"] == "staging"


def test_the_default_period_is_twelve_whole_weeks_and_the_current_one(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    dashboard_env.setenv("CDMETRICS_WAREHOUSE__URL", demo_url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    today = datetime.now(UTC).date()
    monday = today - timedelta(days=today.weekday(), weeks=12)
    assert at.date_input(key="period").value == (monday, today)
    assert "period" not in at.query_params  # the default keeps the URL clean


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_on_an_empty_warehouse_shows_how_to_fill_it(
    dashboard_env: pytest.MonkeyPatch, tmp_path: Path, page: str
) -> None:
    at = open_page(dashboard_env, f"sqlite:///{tmp_path / 'empty.db'}", page)
    guidance = " ".join(i.value for i in at.info)
    assert "cdmetrics sync" in guidance and "cdmetrics demo" in guidance
    assert not at.error


def test_an_unusable_warehouse_is_an_error_message_not_a_traceback(
    dashboard_env: pytest.MonkeyPatch,
) -> None:
    at = open_page(dashboard_env, "mysql://nobody@nowhere/db", "overview")
    assert "not supported" in at.error[0].value
    at = open_page(dashboard_env, "postgresql+psycopg://nobody@127.0.0.1:9/none", "builds")
    assert "Cannot open the warehouse" in at.error[0].value
    dashboard_env.setenv("CDMETRICS_CONFIG", "missing.toml")
    at = open_page(dashboard_env, "sqlite:///w.db", "overview")
    assert "missing.toml: no such configuration file" in at.error[0].value


def test_the_dashboard_command_line_binds_to_localhost(tmp_path: Path) -> None:
    line = launch.command("127.0.0.1", 8600)
    assert line[line.index("--server.address") + 1] == "127.0.0.1"
    assert line[line.index("run") + 1] == str(APP) and APP.is_file()
    env = launch.environment("sqlite:///w.db", tmp_path / "c.toml")
    assert env["CDMETRICS_WAREHOUSE__URL"] == "sqlite:///w.db"
    assert env["CDMETRICS_CONFIG"] == str((tmp_path / "c.toml").resolve())


def test_one_slicing_puts_every_row_in_one_slice_over_its_own_scope(demo_url: str) -> None:
    engine = open_warehouse(demo_url)
    with engine.connect() as conn:
        data = selects.load(conn, SCOPE)
        for by in SLICES:
            cut = slices(data, by)
            # unreleased MRs: the whole scope's in every time slice; a team or service slice is
            # one owning a row of a part before the incidents (analytics.slices)
            if by in ("week", "month"):
                counted = tuple(p for p in PARTS if p != "unreleased")
            else:
                counted = PARTS[: PARTS.index("incidents")]
            for part in counted:
                assert sum(len(getattr(s.data, part)) for s in cut) == len(getattr(data, part))
            for s in cut:
                assert SCOPE.since <= s.data.scope.since < s.data.scope.until <= SCOPE.until
        for s in slices(data, "week")[-2:]:  # a week's figures are those of its own scope
            alone = metrics.metrics(conn, s.data.scope)
            assert {"scope": alone["scope"], **metrics.compute(s.data, s.weeks)} == alone
        parts = {p: getattr(selects.load(conn, SCOPE, parts=(p,)), p) for p in PARTS}
    assert metrics.compute(ScopeData(SCOPE, **parts)) == metrics.compute(data)
    engine.dispose()


def test_the_dashboards_distributions_count_what_the_metrics_count(demo_url: str) -> None:
    engine = open_warehouse(demo_url)
    with engine.connect() as conn:
        m = metrics.metrics(conn, SCOPE)
        lead = distributions.lead_time_histogram(conn, SCOPE)
        days = distributions.deployments_per_day(conn, SCOPE)
        weeks = distributions.deployments_per_bucket(conn, SCOPE, "week")
        durations = distributions.duration_histogram(conn, SCOPE)
        grid = running.whats_running(conn, SCOPE)
        state = views.environment_state(conn, SCOPE)
    engine.dispose()
    frequency = m["deployment_frequency"]
    assert sum(b["count"] for b in lead) == m["lead_time"]["changes"] > 0
    assert sum(d["deployments"] for d in days) == frequency["deployments"] > 0
    assert sum(1 for d in days if d["deployments"]) == frequency["deployment_days"]
    assert sum(w["deployments"] for w in weeks) == frequency["deployments"]
    assert sum(w["failed"] for w in weeks) == m["change_failure_rate"]["failed"]
    assert 0 < sum(b["count"] for b in durations) <= m["build"]["pipelines"]
    assert [r["service"] for r in grid] == sorted({r["service"] for r in state})
    running_at = {(r["service"], r["environment"]) for r in state if r["sha"]}
    cells = {
        (r["service"], env) for r in grid for env, cell in r.items() if env != "service" and cell
    }
    assert cells == running_at


def test_views_agree_with_the_metrics_on_both_backends(engine: Engine) -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    load_org(engine, generate(3, "small", now=now))
    derive(engine)
    scope = Scope(now - timedelta(days=42), now)
    with engine.connect() as conn:
        m = metrics.metrics(conn, scope)
        assert len(views.failed_changes(conn, scope)) == m["change_failure_rate"]["failed"]
        assert len(views.incidents(conn, scope)) == m["recovery_time"]["incidents"]
        tests = views.failing_tests(conn, scope, limit=1000)
        assert sum(r["failed_tests"] for r in tests) == m["build"]["failed_tests"]
        per_env = views.deployments_by_service_environment(conn, scope)
        # the attempts' days hold what the deployments table counts
        status = func.count().filter  # per status
        reference = conn.execute(
            select(
                Service.name,
                Environment.name,
                status(Deployment.status == "success"),
                status(Deployment.status == "failed"),
            )
            .join(Service, Service.id == Deployment.service_id)
            .join(Environment, Environment.id == Deployment.environment_id)
            .where(
                scope.period(Deployment.finished_at),
                Deployment.kind == "app",
                Deployment.status.in_(("success", "failed")),
            )
            .group_by(Service.name, Environment.name)
        ).all()
        assert {
            (r["service"], r["environment"]): (r["successful"], r["failed"]) for r in per_env
        } == {(service, env): (ok, failed) for service, env, ok, failed in reference}
        assert len(per_env) > len({r["service"] for r in per_env}) > 1  # several environments
        assert sum(r["successful"] + r["failed"] for r in per_env) == sum(
            e["attempts"] for e in m["deployment_failure_rate"]["environments"].values()
        )
        assert m["deployment_failure_rate"]["attempts"] == sum(
            r["successful"] + r["failed"]
            for r in per_env
            if r["environment"] in ("production", "production-us")  # the tier: regions too
        )
        slowest = views.slowest_changes(conn, scope, limit=5)
        assert [round(r["lead_time_hours"], 6) for r in slowest] == sorted(
            (round(r["lead_time_hours"], 6) for r in slowest), reverse=True
        )
        state = views.environment_state(conn, scope)
        assert len({(r["service"], r["environment"]) for r in state}) == len(state) > 0
        assert views.default_branches(conn, scope) and views.presence(conn)["deployments"]
        assert views.services_needing_attention(conn, scope) is not None
        assert views.drift_matrix(conn, scope) == views.select_violations(conn, scope) == []
        assert (
            views.sync_overview(conn)
            == views.sync_errors(conn)
            == views.rejected_payloads(conn)
            == []
        )


def test_with_oidc_configured_only_a_signed_in_user_sees_the_metrics(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    dashboard_env.setenv("CDMETRICS_WAREHOUSE__URL", demo_url)
    auth = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "a-long-random-secret-for-the-test-only",
        "client_id": "cdmetrics",
        "client_secret": "x",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = auth
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception and [b.label for b in at.button] == ["Log in"]
    assert not at.metric
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = auth
    at.user = {"is_logged_in": True, "email": "lead@example.com"}
    at.run()
    assert not at.exception and len(at.metric) == len(tiles.DORA)
    assert any("lead@example.com" in c.value for c in at.sidebar.caption)


def test_the_lists_behind_the_tiles_show_what_they_count_with_filters_from_the_url(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    m = expected(demo_url, by=None)
    at = open_page(
        dashboard_env, demo_url, "deployments_list", {"failed": "1", "team": ["payments"]}
    )
    shown = frame(at, "deployments-list")
    scope = Scope(SCOPE.since, SCOPE.until, ("payments",))
    failed = expected(demo_url, scope, by=None)["change_failure_rate"]["failed"]
    assert len(shown) == min(failed, drill.PAGE_SIZE) > 0
    assert shown["reasons"].str.len().min() > 0
    assert shown["digest"].dropna().str.len().max() <= drill.DIGEST_SHOWN
    assert at.query_params["failed"] == "1" and at.query_params["team"] in (
        "payments",
        ["payments"],
    )
    csv = data.drill_csv("deployments", demo_url, scope, drill.ListFilters(failed_change=True))
    lines = csv.decode().splitlines()
    assert len(lines) == failed + 1 and "image_digest" in lines[0]
    at = open_page(dashboard_env, demo_url, "changes_list", {"min_hours": "24"})
    changes = frame(at, "changes-list")
    assert len(changes) == drill.PAGE_SIZE and changes["lead_time_hours"].min() >= 24
    assert at.button(key="next-page")
    at.button(key="next-page").click().run()
    assert "after" in at.query_params
    assert set(frame(at, "changes-list")["commit_url"]).isdisjoint(changes["commit_url"])
    sha = changes["commit_url"].iloc[0].rsplit("/", 1)[1]
    at.text_input(key="commit").set_value(sha[:9]).run()  # a new filter starts at page one
    assert "after" not in at.query_params
    assert [u.rsplit("/", 1)[1] for u in frame(at, "changes-list")["commit_url"]] == [sha]
    assert m["lead_time"]["changes"] > drill.PAGE_SIZE
    at = open_page(dashboard_env, demo_url, "overview")  # a table row links to its rows
    links = frame(at, "teams")["rows_url"]
    assert all(u.startswith("deployments_list?") and "team=" in u for u in links)
    assert all("period=2025-12-08&period=2026-03-01" in u for u in links)  # the view's period


def test_the_month_view_compares_months_and_defaults_to_six_of_them(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    """`by=month`: the tiles compare the last complete month with the one before (as
    `metrics --by month` computes them) and the charts have a bar per month."""
    period = ("2025-09-01", "2026-03-01")
    at = open_page(dashboard_env, demo_url, "overview", {"by": "month", "period": list(period)})
    scope = Scope(datetime(2025, 9, 1, tzinfo=UTC), NOW)
    months = {row["month"]: row for row in expected(demo_url, scope, by="month")["rows"]}
    assert list(months) == [
        "2025-09",
        "2025-10",
        "2025-11",
        "2025-12",
        "2026-01",
        "2026-02",
        "2026-03",
    ]
    assert views.comparison_buckets(scope, "month")[0][0] == "2026-02"  # type: ignore[index]
    pair = (months["2026-02"], months["2026-01"])
    for name, tile in tiles.DORA.items():
        shown = metric(at, tile.label)
        delta = tiles.change(tile, name, pair)
        assert shown.delta == ("" if delta is None else str(delta)), name
    assert "per month" in " ".join(h.value for h in at.subheader)
    chart = at.get("plotly_chart")[0].proto.spec
    assert all(month in chart for month in months)
    dashboard_env.setenv("CDMETRICS_WAREHOUSE__URL", demo_url)
    fresh = AppTest.from_file(APP, default_timeout=60)
    fresh.query_params["by"] = "month"
    fresh.run()
    today = datetime.now(UTC).date()
    first, last = fresh.date_input(key="period").value
    assert (first.day, last) == (1, today) and 150 <= (today - first).days <= 185


@pytest.mark.parametrize(
    ("query", "said"),
    [
        (
            {"team": ["paymnts"]},
            "no team named paymnts in the warehouse; closest to paymnts: payments",
        ),
        ({"env": "prodution"}, "closest to prodution: production"),
        ({"period": ["2026-13-01", "2026-11-20"]}, "period '2026-13-01' is not a date"),
    ],
)
def test_a_link_with_an_unknown_name_or_a_bad_date_says_so(
    dashboard_env: pytest.MonkeyPatch, demo_url: str, query: dict[str, Any], said: str
) -> None:
    at = open_page(dashboard_env, demo_url, "overview", query)
    warnings = " ".join(w.value for w in at.warning)
    assert said in warnings, warnings


def test_tiles_say_whether_the_period_meets_the_targets(
    dashboard_env: pytest.MonkeyPatch, demo_url: str, tmp_path: Path
) -> None:
    (tmp_path / "cdmetrics.toml").write_text(  # dashboard_env runs in tmp_path
        "[targets]\nlead_time_median = '< 1m'\nchange_failure_rate = '<= 100%'\n"
    )
    at = open_page(dashboard_env, demo_url, "overview")
    captions = [c.value for c in at.caption]
    assert any(c.endswith(" · target < 1m: missed") for c in captions), captions
    assert any(c.endswith(" · target <= 100%: met") for c in captions), captions
    assert not any("target" in c for c in captions if "deployments on" in c)  # none set


def query_of(link: str) -> dict[str, Any]:
    """A row link's page and query parameters, as `open_page` takes them (lists kept as lists)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(link)
    query = {
        k: v if len(v) > 1 or k in ("service", "team") else v[0]
        for k, v in parse_qs(parts.query).items()
    }
    return {"page": parts.path, "query": query}


def test_the_pipelines_list_holds_what_the_builds_page_counts(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    build = expected(demo_url, by=None)["build"]
    at = open_page(dashboard_env, demo_url, "pipelines_list", {"status": "failed"})
    assert [t.value for t in at.title] == ["Pipelines list"] and not at.error
    shown = frame(at, "pipelines-list")
    assert len(shown) == min(build["failed"], drill.PAGE_SIZE) > 0
    assert set(shown["status"]) == {"failed"} and at.query_params["status"] == "failed"
    every = drill.ListFilters()
    lines = data.drill_csv("pipelines", demo_url, SCOPE, every).decode().splitlines()
    assert len(lines) == build["pipelines"] + 1 and "web_url" in lines[0]
    failed = data.drill_csv("pipelines", demo_url, SCOPE, drill.ListFilters(status="failed"))
    assert len(failed.decode().splitlines()) == build["failed"] + 1
    with_tests = drill.ListFilters(failed_tests=True)
    csv = data.drill_csv("pipelines", demo_url, SCOPE, with_tests).decode().splitlines()
    assert len(csv) == build["pipelines_with_failed_tests"] + 1
    # the Builds page's rows lead to their pipelines, with the view's filters
    builds = open_page(dashboard_env, demo_url, "builds", {"team": ["payments"]})
    branches = frame(builds, "branches")
    assert all(
        u.startswith("pipelines_list?") and "team=payments" in u and "ref=" in u
        for u in branches["rows_url"]
    )
    row = branches.iloc[0]
    followed = query_of(row["rows_url"])
    assert followed["page"] == "pipelines_list"
    at = open_page(dashboard_env, demo_url, "pipelines_list", followed["query"])
    listed = frame(at, "pipelines-list")
    assert set(listed["service"]) == {row["service"]} and set(listed["ref"]) == {row["branch"]}
    assert at.text_input(key="ref").value == row["branch"]
    suites = frame(builds, "tests")
    assert all("suite=" in u for u in suites["rows_url"])
    suite = suites.iloc[0]
    at = open_page(dashboard_env, demo_url, "pipelines_list", query_of(suite["rows_url"])["query"])
    listed = frame(at, "pipelines-list")
    assert len(listed) == min(suite["failing_runs"], drill.PAGE_SIZE)
    assert (listed["failed_tests"] > 0).all()


PAGE = drill.Page(drill.PAGE_SIZE)


def test_environment_and_policy_rows_lead_to_the_deployments_behind_them(
    dashboard_env: pytest.MonkeyPatch, findings_url: str
) -> None:
    at = open_page(dashboard_env, findings_url, "environments", {"detail": "payments-api"})
    current = frame(at, "current")
    for row in current.to_dict("records"):
        followed = query_of(row["rows_url"])
        assert followed["page"] == "deployments_list"
        assert followed["query"]["env"] == row["environment"]
        listed = frame(
            open_page(dashboard_env, findings_url, "deployments_list", followed["query"]),
            "deployments-list",
        )
        # the list reaches the deployment running there, whenever it happened
        assert row["commit"][:8] in set(listed["commit"]), row
        assert set(listed["service"]) == {"payments-api"}
        assert set(listed["environment"]) == {row["environment"]}
    running = frame(at, "running")
    cells = [c for c in running.drop(columns="service").to_numpy().ravel() if pd.notna(c)]
    assert len(cells) > 0 and all(c.startswith("deployments_list?") and "#" in c for c in cells)
    assert all("commit=" in c and "env=" in c for c in cells)
    cell = cells[0]  # reads as the cell did; opens the deployments of that commit there
    followed = query_of(cell)
    shown_sha = cell.rsplit("#", 1)[1].split(" · ")[0]
    listed = frame(
        open_page(dashboard_env, findings_url, "deployments_list", followed["query"]),
        "deployments-list",
    )
    assert set(listed["commit"]) == {shown_sha}
    assert set(listed["environment"]) == {followed["query"]["env"]}
    drift = frame(at, "drift-pairs")
    assert len(drift) == len(view_rows(findings_url, "drift_matrix"))
    assert all(u.startswith("deployments_list?") and "service=" in u for u in drift["rows_url"])
    policies = open_page(dashboard_env, findings_url, "policies")
    violations = frame(policies, "violations")
    assert violations["rows_url"].notna().any()
    for v in violations.to_dict("records"):
        if v["rows_url"] is None:
            assert pd.isna(v["service"])
            continue
        followed = query_of(v["rows_url"])
        happened = datetime.fromisoformat(v["occurred_at"]).replace(tzinfo=UTC)  # shown in UTC
        day = happened.astimezone(SCOPE.zone).date().isoformat()
        assert followed["query"]["period"] == [day, day]
        expected_page = "pipelines_list" if pd.isna(v["environment"]) else "deployments_list"
        assert followed["page"] == expected_page
        at = open_page(dashboard_env, findings_url, expected_page, followed["query"])
        assert at.multiselect(key="service").value == [v["service"]]
        if expected_page == "deployments_list":
            assert at.selectbox(key="env").value == v["environment"]
            # the list holds the deployments of that service and environment on that day
            scope = state.period_of(
                date.fromisoformat(day),
                date.fromisoformat(day),
                SCOPE.timezone,
                services=(v["service"],),
                environment=v["environment"],
            )
            rows = data.drill_page("deployments", findings_url, scope, drill.ListFilters(), PAGE)
            shown = frame(at, "deployments-list") if len(rows[0]) else pd.DataFrame()
            assert len(shown) == len(rows[0])


def test_the_pipelines_list_counts_what_the_builds_figures_count_on_both_backends(
    engine: Engine,
) -> None:
    from analytics.views import drilldown

    now = datetime(2026, 3, 2, tzinfo=UTC)
    load_org(engine, generate(3, "small", now=now))
    derive(engine)
    scope = Scope(now - timedelta(days=42), now)

    def listed(**filters: Any) -> list[dict[str, Any]]:
        chosen = drilldown.ListFilters(**filters)
        return [r for rows in drilldown.pages(conn, "pipelines", scope, chosen, 7) for r in rows]

    with engine.connect() as conn:
        build = metrics.metrics(conn, scope, by=None)["build"]
        every = listed()
        assert len(every) == build["pipelines"] > 7  # more than one page
        assert len({r["id"] for r in every}) == len(every)
        times = [(r["finished_at"], r["id"]) for r in every]
        assert times == sorted(times, reverse=True)
        assert len(listed(status="failed")) == build["failed"]
        assert len(listed(failed_tests=True)) == build["pipelines_with_failed_tests"]
        assert sum(r["failed_tests"] for r in every) == build["failed_tests"]
        default = listed(default_branch=True)
        assert default and all(r["default_branch"] for r in default)
        ref = every[0]["ref"]
        assert {r["ref"] for r in listed(ref=ref)} == {ref}
        sha = every[0]["sha"]
        assert {r["sha"] for r in listed(commit=sha[:9])} == {sha}
        slow = listed(min_minutes=10)
        assert all(r["duration_s"] >= 600 for r in slow)
        assert len(slow) + len(listed(max_minutes=10)) == sum(
            1 for r in every if r["duration_s"] is not None
        )
        [suite] = views.failing_tests(conn, scope, limit=1)
        in_suite = [r for r in listed(suite=suite["suite"]) if r["service"] == suite["service"]]
        assert len(in_suite) == suite["failing_runs"]


def test_policies_page_shows_the_quality_gate_of_production_deployments(
    dashboard_env: pytest.MonkeyPatch, demo_url: str
) -> None:
    at = open_page(dashboard_env, demo_url, "policies")
    shown = frame(at, "quality-gates")
    found = view_rows(demo_url, "quality_gates")
    assert list(shown["service"]) == [r["service"] for r in found["services"]]  # type: ignore[call-overload]
    assert list(shown["deployments"]) == [r["deployments"] for r in found["services"]]  # type: ignore[call-overload]
    total = found["total"]  # type: ignore[call-overload]
    assert total["deployments"] > 0
    assert any(f"of {total['deployments']} production deployments" in c.value for c in at.caption)
