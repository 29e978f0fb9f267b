"""One number everywhere (issue #16): for the same scope and the default period, the CLI, the
dashboard's data layer, the weekly report (model and JSON export), the HTTP API (real HTTP) and
the notebooks' helper give the same headline, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from analytics import dora, frames, units
from analytics.derive import FailureRules, derive
from analytics.scope import Scope, parse_period
from cdmetrics.settings import Settings
from reports.model import build_report
from reports.render import render
from reports.week import last_complete_week
from sandbox.generate import generate
from tests.conftest import pg_schema
from tests.sandbox_load import load_org
from tests.service_helpers import READ, running_service
from tests.test_cli import run
from warehouse.engine import open_warehouse

ZONE = "Europe/Berlin"  # not UTC: weeks and days are counted in [sync] timezone everywhere
TEAM = "payments"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def warehouse(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Engine]]:
    """(url, engine) of the small generated organisation, loaded through the GitLab collector's
    normalisers and save path, and derived."""
    with pg_schema() if request.param == "postgresql" else _no_schema() as found:
        if found is None:
            url = f"sqlite:///{tmp_path_factory.mktemp('one-number') / 'w.db'}"
        else:
            url = f"{found[0]}?options=-csearch_path%3D{found[1]}"
        engine = open_warehouse(url)
        load_org(engine, generate(1, "small"))
        derive(engine)
        yield url, engine
        engine.dispose()


class _no_schema:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _settings() -> Settings:
    return Settings(sync={"timezone": ZONE})


def _rules(settings: Settings) -> FailureRules:
    m = settings.metrics
    return FailureRules(m.failure_window, m.hotfix_window, tuple(m.hotfix_refs))


def _cli(url: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    result = run(
        tmp_path,
        "--warehouse",
        url,
        "metrics",
        "--format",
        "json",
        *args,
        env={"CDMETRICS_SYNC__TIMEZONE": ZONE},
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def _dashboard(url: str, teams: tuple[str, ...]) -> tuple[Scope, dict[str, Any]]:
    """What the Overview page's tiles read: the sidebar's default period and `data.metrics`."""
    from dashboard import data, state, tiles

    since, until = state.period_of(*state.default_days(ZONE), ZONE)
    scope = Scope(since, until, teams, (), None, ZONE)
    figures = data.metrics(url, scope, _rules(_settings()), tuple(tiles.DORA), tiles.PARTS)
    return scope, figures["total"]


@pytest.mark.parametrize("teams", [(), (TEAM,)], ids=["organisation", "team"])
def test_every_surface_shows_the_same_headline(
    warehouse: tuple[str, Engine], teams: tuple[str, ...], tmp_path: Path
) -> None:
    url, engine = warehouse
    settings = _settings()
    now = datetime.now(UTC)
    since, until = parse_period(None, None, ZONE, now)

    cli = _cli(url, tmp_path, *(a for t in teams for a in ("--team", t)))
    assert (cli["scope"]["since"], cli["scope"]["until"]) == (since.isoformat(), until.isoformat())
    expected = dora.headline(cli)
    assert expected["deployments"] > 0 and expected["change_failure_rate"] is not None

    scope, tiles_figures = _dashboard(url, teams)
    assert (scope.since, scope.until) == (since, until)
    assert dora.headline(tiles_figures) == expected

    report = build_report(
        engine, last_complete_week(now, ZONE), teams, (), _rules(settings), now=now
    )
    assert report.period is not None and (report.period.since, report.period.until) == (
        since,
        until,
    )
    assert dora.headline(report.period_metrics) == expected
    exported = json.loads(render(report, "json"))
    assert dora.headline(exported["period_metrics"]) == expected

    with running_service(engine, settings) as svc:
        answer = svc.client.get("/api/v1/metrics", params={"team": list(teams)}, headers=READ)
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == cli["scope"]
    assert dora.headline(answer.json()) == expected

    notebook = frames.headline(engine, frames.default_scope(ZONE, teams), _rules(settings))
    assert notebook.to_dict("records") == [expected]


def test_a_human_surface_writes_the_machine_figure(warehouse: tuple[str, Engine]) -> None:
    """80.3 h and 3.3 d are the same figure: the dashboard's tile writes the JSON's hours."""
    from dashboard import tiles

    url, engine = warehouse
    _, figures = _dashboard(url, ())
    with engine.connect() as conn:
        api = dora.metrics(conn, Scope.default(ZONE), rules=_rules(_settings()))
    lead = api["lead_time"]["median_hours"]
    assert tiles.DORA["lead_time"].value(figures["lead_time"]) == units.hours(lead)
    rate = api["change_failure_rate"]["rate"]
    assert tiles.DORA["change_failure_rate"].value(figures["change_failure_rate"]) == (
        units.percent(rate)
    )
