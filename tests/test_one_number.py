"""One number everywhere (issue #16): for the same scope and the default period, the CLI, the
dashboard's data layer, the weekly report (model and JSON export), the HTTP API (real HTTP) and
the notebooks' helper give the same headline, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from analytics import frames, metrics, stats, units
from analytics.derive import derive
from analytics.rules import FailureRules
from analytics.scope import PeriodError, Scope, parse_period
from config.settings import Settings
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
    return FailureRules.from_settings(settings)


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

    scope = state.period_of(*state.default_days(ZONE), ZONE, teams)
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
    expected = metrics.headline(cli)
    assert expected["deployments"] > 0 and expected["change_failure_rate"] is not None

    scope, tiles_figures = _dashboard(url, teams)
    assert (scope.since, scope.until) == (since, until)
    assert metrics.headline(tiles_figures) == expected

    report = build_report(
        engine, last_complete_week(now, ZONE), teams, (), _rules(settings), now=now
    )
    assert report.period is not None and (report.period.since, report.period.until) == (
        since,
        until,
    )
    assert metrics.headline(report.period_metrics) == expected
    exported = json.loads(render(report, "json"))
    assert metrics.headline(exported["period_metrics"]) == expected

    with running_service(engine, settings) as svc:
        answer = svc.client.get("/api/v1/metrics", params={"team": list(teams)}, headers=READ)
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == cli["scope"]
    assert metrics.headline(answer.json()) == expected

    notebook = frames.headline(engine, frames.default_scope(ZONE, teams), _rules(settings))
    assert notebook.to_dict("records") == [expected]


def test_a_human_surface_writes_the_machine_figure(warehouse: tuple[str, Engine]) -> None:
    """80.3 h and 3.3 d are the same figure: the dashboard's tile writes the JSON's hours."""
    from dashboard import tiles

    url, engine = warehouse
    _, figures = _dashboard(url, ())
    with engine.connect() as conn:
        api = metrics.metrics(conn, Scope.default(ZONE), rules=_rules(_settings()))
    lead = api["lead_time"]["median_hours"]
    assert tiles.DORA["lead_time"].value(figures["lead_time"]) == units.hours(lead)
    rate = api["change_failure_rate"]["rate"]
    assert tiles.DORA["change_failure_rate"].value(figures["change_failure_rate"]) == (
        units.percent(rate)
    )


# -- the period parser (analytics.scope): one default, errors that name the dates --

WEDNESDAY = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # ISO week 2026-W49


def test_the_default_period_is_twelve_whole_weeks_and_the_current_one() -> None:
    since, until = parse_period(None, None, ZONE, WEDNESDAY)
    assert since.isoformat() == "2026-09-07T00:00:00+02:00"  # Monday of 2026-W37, summer time
    assert until.isoformat() == "2026-12-03T00:00:00+01:00"  # tomorrow 00:00, today included
    scope = Scope.default(ZONE, now=WEDNESDAY)
    weeks = stats.weeks_between(scope.since, scope.until, scope.zone)
    assert len(weeks) == 13 and weeks[-1] == "2026-W49"
    assert [w for w in weeks if scope.partial(w, WEDNESDAY)] == ["2026-W49"]


def test_a_given_until_keeps_twelve_whole_weeks_before_its_week() -> None:
    """until 2026-11-30 (a Monday, exclusive) ends 2026-W48, which is then whole too."""
    since, until = parse_period(None, "2026-11-30", "UTC", WEDNESDAY)
    assert (since.date().isoformat(), until.date().isoformat()) == ("2026-08-31", "2026-11-30")
    scope = Scope(since, until)
    assert not any(scope.partial(w, WEDNESDAY) for w in stats.weeks_between(since, until, UTC))


def test_a_week_cut_by_the_period_is_partial() -> None:
    scope = Scope.parse("2026-11-04", "2026-11-30", timezone="UTC")  # starts on a Wednesday
    assert scope.partial("2026-W45", WEDNESDAY) and not scope.partial("2026-W46", WEDNESDAY)


def test_a_reversed_period_names_both_dates() -> None:
    with pytest.raises(PeriodError) as caught:
        Scope.parse("2026-12-01", "2026-11-01", timezone="UTC")
    message = str(caught.value)
    assert "reversed period" in message and "2026-12-01" in message and "2026-11-01" in message


@pytest.mark.parametrize(
    ("since", "until", "named"),
    [
        ("last tuesday", None, "since: 'last tuesday' is not a date"),
        (None, "9999-12-31", "until: 9999-12-31 is outside 1970-01-01 .. 2100-01-01"),
        ("2026-11-01", "2026-11-01", "empty period"),
    ],
)
def test_a_bad_period_is_a_period_error(since: str | None, until: str | None, named: str) -> None:
    with pytest.raises(PeriodError, match=named):
        parse_period(since, until, "UTC", WEDNESDAY)


# -- charts that do not mislead --


def test_weekly_charts_start_at_zero_and_mark_the_partial_week() -> None:
    from dashboard import charts

    frame = pd.DataFrame(
        {
            "week": ["2026-W47", "2026-W48", "2026-W49"],
            "deployments": [12, 0, 3],
            "rate": [0.25, None, 0.0],
            "partial": [False, False, True],
        }
    )
    figure = charts.bars_and_rate(frame, "week", "deployments", "rate", "deployments", "rate")
    assert figure.layout.yaxis.rangemode == "tozero" and figure.layout.yaxis2.rangemode == "tozero"
    bars, line = figure.data
    assert list(bars.marker.pattern.shape) == ["", "", "/"]
    assert list(line.marker.symbol) == ["circle", "circle", "circle-open"]
    assert [a.text for a in figure.layout.annotations] == ["partial"]
    assert list(bars.y) == [12, 0, 3]  # the empty week is a zero bar on the axis
    lines = charts.lines(frame, "week", {"rate": "rate"}, "share")
    assert lines.layout.yaxis.rangemode == "tozero"


def test_severities_and_heatmaps_have_their_colours() -> None:
    from dashboard import charts

    counts = pd.DataFrame(
        {"policy": ["a", "a", "b"], "severity": ["info", "error", "warn"], "violations": [1, 2, 3]}
    )
    figure = charts.bars(counts, "policy", "violations", "severity")
    colours = {trace.name: trace.marker.color for trace in figure.data}
    assert colours == {"error": "#d62728", "warn": "#f0a202", "info": "#9aa5b1"}
    days = pd.DataFrame(
        {"day": ["2026-11-30"], "week": ["2026-W49"], "weekday": ["Mon"], "deployments": [4]}
    )
    neutral = charts.calendar(days).data[0].colorscale
    per_env = pd.DataFrame({"service": ["s"], "environment": ["production"], "successful": [4]})
    assert charts.matrix(per_env, "service", "environment", "successful").data[0].colorscale == (
        neutral
    )
    assert (
        neutral[-1][1]
        != charts.matrix(per_env, "service", "environment", "successful", scale=charts.LEVEL_SCALE)
        .data[0]
        .colorscale[-1][1]
    )


def test_every_week_of_the_period_is_on_the_deployments_chart(
    warehouse: tuple[str, Engine],
) -> None:
    """The default period reaches before the small organisation's history: those weeks are
    zero rows, not missing ones, and the current week is flagged partial."""
    from dashboard import data

    url, _ = warehouse
    scope = Scope.default(ZONE)
    per_week = data.deployments_per_bucket(url, scope, _rules(_settings()))
    weeks = stats.weeks_between(scope.since, scope.until, scope.zone)
    teams = sorted(set(per_week["team"]))
    assert teams and list(zip(per_week["week"], per_week["team"], strict=True)) == [
        (w, t) for w in weeks for t in teams
    ]
    totals = per_week.groupby("week", sort=False)["deployments"].sum()
    assert totals.iloc[0] == 0 and totals.sum() > 0
    assert per_week.loc[per_week["partial"], "week"].unique().tolist() == [weeks[-1]]


def test_the_cli_table_writes_the_json_figures_as_people_read_them(
    warehouse: tuple[str, Engine], tmp_path: Path
) -> None:
    url, _ = warehouse
    figures = _cli(url, tmp_path)
    table = run(
        tmp_path, "--warehouse", url, "metrics", env={"CDMETRICS_SYNC__TIMEZONE": ZONE}
    ).stdout
    since, until = parse_period(None, None, ZONE)
    last_day = (until - timedelta(days=1)).date()
    assert f"{since.date()} to {last_day} ({ZONE})" in table
    lines = {line.split("│")[1].strip(): line for line in table.splitlines() if "│" in line}
    assert units.hours(figures["lead_time"]["median_hours"], "-") in lines["lead time p50"]
    assert (
        units.percent(figures["change_failure_rate"]["rate"], "-") in lines["change failure rate"]
    )
