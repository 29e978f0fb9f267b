"""The weekly report model: every number equals the analytics API's for the same week and scope,
on SQLite and PostgreSQL; empty warehouses, weeks without deployments, DST weeks and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from analytics import drift, policies, views
from analytics.derive import derive
from analytics.metrics import metrics
from analytics.rules import FailureRules
from analytics.scope import Scope
from reports.model import HEADLINE, build_report, value_at
from reports.render import render
from reports.week import ReportError, Week, last_complete_week, parse_week
from sandbox.generate import generate
from tests.sandbox_load import load_org
from warehouse.schema import MergeRequest, Pipeline, Repo, Service, Team

NOW = datetime(2026, 11, 25, tzinfo=UTC)  # a Wednesday of 2026-W48: W47 is the last complete week
PATH = ["test", "staging", "production"]
RULES = FailureRules()


def fill(engine: Engine) -> None:
    """The small generated org as of NOW, derived, with a drift snapshot and a policy scan stored
    during 2026-W47 (as `cdmetrics sync` and `policy scan` would leave them)."""
    load_org(engine, generate(1, "small", NOW))
    derive(engine, RULES)
    drift.record(engine, PATH, datetime(2026, 11, 21, 12, tzinfo=UTC))
    with engine.begin() as conn:
        found = policies.scan(conn, NOW - timedelta(days=40), NOW, PATH)
        policies.store(conn, found, datetime(2026, 11, 20, 9, tzinfo=UTC))


def scope_of(week: Week, teams: tuple[str, ...] = (), services: tuple[str, ...] = ()) -> Scope:
    return Scope(week.since, week.until, teams, services, None, week.timezone)


def analytics_metrics(engine: Engine, scope: Scope) -> dict[str, Any]:
    with engine.connect() as conn:
        result = metrics(conn, scope, rules=RULES)
    result.pop("scope")
    return result


def check_equal_to_analytics(engine: Engine, week: Week, teams=(), services=()) -> None:  # type: ignore[no-untyped-def]
    report = build_report(engine, week, teams, services, RULES)
    scope = scope_of(week, teams, services)
    assert report.metrics == analytics_metrics(engine, scope)
    assert report.previous_metrics == analytics_metrics(
        engine, scope_of(week.shifted(-1), teams, services)
    )
    for row, (key, _, path, *_rest) in zip(report.headline, HEADLINE, strict=True):
        assert row["key"] == key
        assert row["value"] == value_at(report.metrics, path)
        assert row["previous"] == value_at(report.previous_metrics, path)
    assert [r["week"] for r in report.trend] == [week.shifted(i).key for i in range(-11, 1)]
    for row in report.trend:
        expected = analytics_metrics(
            engine, scope_of(parse_week(row["week"], week.timezone), teams, services)
        )
        assert {k: row[k] for k, *_ in HEADLINE} == {
            k: value_at(expected, p) for k, _, p, *_ in HEADLINE
        }
    with engine.connect() as conn:
        by_service = metrics(conn, scope, by="service", rules=RULES)["rows"]
        assert {r["service"]: r["deployments"] for r in report.services} == {
            r["service"]: r["deployment_frequency"]["deployments"] for r in by_service
        }
        assert {r["service"]: r["change_failure_rate"] for r in report.services} == {
            r["service"]: r["change_failure_rate"]["rate"] for r in by_service
        }
        assert {r["service"]: r["lead_time_median_hours"] for r in report.services} == {
            r["service"]: r["lead_time"]["median_hours"] for r in by_service
        }
        assert report.environments == views.deployments_by_service_environment(conn, scope)
        assert report.failures == views.failed_changes(conn, scope)
        assert report.incidents == views.incidents(conn, scope)
        every_pair = views.drift_matrix(conn, scope)
        behind = [r for r in every_pair if r["commits_behind"] or _unknown_and_apart(r)]
        assert sorted(report.drift, key=str) == sorted(behind, key=str)
        assert len(behind) < len(every_pair) or not every_pair  # pairs in sync are left out
        open_in_week = views.select_violations(conn, scope)
    new = [v for v in open_in_week if scope.since <= v["occurred_at"] < scope.until]
    assert {(v["policy"], v["subject"]) for v in report.violations} == {
        (v["policy"], v["subject"]) for v in new
    }
    assert len(report.failures) == report.metrics["change_failure_rate"]["failed"]
    assert len(report.incidents) == report.metrics["recovery_time"]["incidents"]


def _unknown_and_apart(row: dict[str, Any]) -> bool:
    """Commits behind unknown, and the downstream runs another image than the upstream or none."""
    return (
        row["commits_behind"] is None
        and row["upstream_digest"] is not None
        and row["downstream_digest"] != row["upstream_digest"]
    )


@pytest.mark.parametrize("scope", [{}, {"teams": ("payments",)}, {"services": ("checkout-api",)}])
def test_every_number_equals_the_analytics_api(engine: Engine, scope: dict[str, Any]) -> None:
    fill(engine)
    week = parse_week("2026-W47")
    check_equal_to_analytics(engine, week, **scope)
    report = build_report(engine, week, rules=RULES, **scope)
    assert (
        report.metrics["deployment_frequency"]["deployments"] > 0
    )  # the test has numbers to check
    assert report.violations and (report.drift or scope)  # the whole org has pairs behind


def test_a_first_scan_over_90_days_does_not_make_90_days_of_violations_new(
    engine: Engine,
) -> None:
    """A first `policy scan` finds months of violations at once: the week's report, the dashboard
    and the API call new only those that happened in the week (occurred_at, not first_seen_at)."""
    load_org(engine, generate(1, "small", NOW))
    derive(engine, RULES)
    scanned = datetime(2026, 11, 20, 9, tzinfo=UTC)  # during 2026-W47
    with engine.begin() as conn:
        found = policies.store(
            conn, policies.scan(conn, NOW - timedelta(days=90), NOW, PATH), scanned
        )
    week = parse_week("2026-W47")
    assert all(v.first_seen == scanned for v in found)  # all found during the week
    in_week = {
        (v.policy, v.subject)
        for v in found
        if v.occurred_at is not None and week.since <= v.occurred_at < week.until
    }
    report = build_report(engine, week, rules=RULES)
    assert {(v["policy"], v["subject"]) for v in report.violations} == in_week
    assert in_week and len(in_week) < len(found) / 4
    assert all(week.since <= v["occurred_at"] < week.until for v in report.violations)
    earlier = build_report(engine, week.shifted(-4), rules=RULES)
    assert earlier.violations  # what happened four weeks ago is that week's


def test_a_dst_week_in_a_local_time_zone_equals_the_analytics_api(engine: Engine) -> None:
    fill(engine)
    week = parse_week("2026-W43", "Europe/Berlin")  # summer time ends on Sunday 2026-10-25
    assert week.until.astimezone(UTC) - week.since.astimezone(UTC) == timedelta(hours=169)
    check_equal_to_analytics(engine, week)


def test_notable_items_are_the_slowest_oldest_and_most_failing(engine: Engine) -> None:
    fill(engine)
    week = parse_week("2026-W47")
    report = build_report(engine, week, rules=RULES, limit=5)
    slowest = report.notable["slowest_merge_requests"]
    assert slowest and len(slowest) <= 5
    hours = [r["lead_time_hours"] for r in slowest]
    assert hours == sorted(hours, reverse=True)
    assert len({(r["service"], r["merge_request"] or r["sha"]) for r in slowest}) == len(slowest)
    with engine.connect() as conn:
        changes = views.slowest_changes(conn, scope_of(week), limit=1)
        assert slowest[0]["lead_time_hours"] == changes[0]["lead_time_hours"]
        mrs = conn.execute(
            select(Service.name, MergeRequest.iid, MergeRequest.created_at, MergeRequest.merged_at,
                   MergeRequest.closed_at, MergeRequest.state)
            .join(Service, Service.repo_id == MergeRequest.repo_id)
        ).all()  # fmt: skip
        pipelines = conn.execute(
            select(Service.name, Pipeline.ref, Pipeline.job_name, Pipeline.status, Pipeline.finished_at)
            .join(Service, Service.repo_id == Pipeline.repo_id)
            .join(Repo, Repo.id == Pipeline.repo_id)
            .join(Team, Team.id == Service.team_id)
        ).all()  # fmt: skip
    still_open = sorted(
        (m.created_at, m.name, m.iid)
        for m in mrs
        if m.created_at < week.until
        and (m.merged_at is None or m.merged_at >= week.until)
        and (m.closed_at is None or m.closed_at >= week.until)
        and m.state != "locked"
    )[:5]
    oldest = report.notable["longest_lived_branches"]
    assert [(r["created_at"], r["service"], r["iid"]) for r in oldest] == still_open
    assert oldest[0]["age_days"] == (week.until - oldest[0]["created_at"]).total_seconds() / 86400
    failed: dict[tuple[Any, ...], int] = {}
    for p in pipelines:
        if p.finished_at and week.since <= p.finished_at < week.until and p.status == "failed":
            failed[(p.name, p.ref, p.job_name)] = failed.get((p.name, p.ref, p.job_name), 0) + 1
    most = report.notable["most_failing_pipelines"]
    assert most and most[0]["failed"] == max(failed.values())
    assert all(failed[(r["service"], r["ref"], r["job_name"])] == r["failed"] for r in most)


def test_a_week_without_deployments_is_a_clear_report(engine: Engine) -> None:
    fill(engine)
    week = parse_week("2026-W45")  # the generated organisation's holiday week
    report = build_report(engine, week, rules=RULES)
    assert report.metrics["deployment_frequency"]["deployments"] == 0
    assert report.metrics == analytics_metrics(engine, scope_of(week))
    html = render(report, "html").decode()
    assert "No production deployment finished in 2026-W45" in html
    assert "No failed change this week." in render(report, "md").decode()
    for output_format in ("xlsx", "json"):
        assert render(report, output_format)


def test_an_empty_warehouse_is_a_clear_report(engine: Engine) -> None:
    report = build_report(engine, parse_week("2026-W47"))
    assert report.warehouse_empty
    assert report.metrics["deployment_frequency"]["deployments"] == 0
    assert report.metrics["lead_time"]["median_hours"] is None
    for output_format in ("html", "md", "json", "xlsx"):
        text = render(report, output_format)
        assert text
    assert "holds no data yet" in render(report, "html").decode()


def test_unknown_team_and_service_name_the_known_ones(engine: Engine) -> None:
    fill(engine)
    with pytest.raises(ReportError, match=r"no team named nobody .*known: checkout, payments"):
        build_report(engine, parse_week("2026-W47"), teams=("nobody",))
    with pytest.raises(ReportError, match="no service named ghost"):
        build_report(engine, parse_week("2026-W47"), services=("ghost",))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-47", "not an ISO week"),
        ("2026-W54", "has no ISO week 54"),
        ("W47", "not an ISO week"),
    ],
)
def test_bad_week_strings_are_refused(text: str, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_week(text)


def test_week_windows_and_the_last_complete_week() -> None:
    assert parse_week("2020-W53").monday.isoformat() == "2020-12-28"  # a 53-week year
    assert parse_week("2026-W01").shifted(-1).key == "2025-W52"
    assert last_complete_week(NOW).key == "2026-W47"
    monday = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)  # early Monday: last week has just ended
    assert last_complete_week(monday).key == "2026-W47"
    # 23:30 UTC on Sunday is already Monday in Tokyo
    assert (
        last_complete_week(datetime(2026, 11, 22, 23, 30, tzinfo=UTC), "Asia/Tokyo").key
        == "2026-W47"
    )
    assert last_complete_week(datetime(2026, 11, 22, 23, 30, tzinfo=UTC)).key == "2026-W46"
