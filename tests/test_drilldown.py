"""The drill-down lists (analytics.views.drilldown) on a generated organisation, on SQLite and
PostgreSQL: the rows behind each figure are exactly the ones the metrics count, pages walk the
whole result without gaps or repeats, and the filters narrow it as the dashboard's links ask."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from analytics import metrics, selects, stats
from analytics.derive import derive
from analytics.scope import Scope
from analytics.views import drilldown
from analytics.views.drilldown import ListFilters, Page
from sandbox.generate import generate
from tests.conftest import migrated_warehouse
from tests.sandbox_load import load_org

NOW = datetime(2026, 3, 2, tzinfo=UTC)
SCOPE = Scope(datetime(2025, 12, 8, tzinfo=UTC), NOW)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def warehouse(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with migrated_warehouse(request.param, tmp_path_factory.mktemp("drill")) as engine:
        load_org(engine, generate(1, "small", now=NOW))
        derive(engine)
        yield engine


def counted(engine: Engine) -> dict:
    with engine.connect() as conn:
        return metrics.metrics(conn, SCOPE)


def every_row(engine: Engine, name: str, scope: Scope, filters: ListFilters, size: int) -> list:
    with engine.connect() as conn:
        return [r for rows in drilldown.pages(conn, name, scope, filters, size) for r in rows]


def test_the_deployments_behind_the_tile_are_the_ones_it_counts(warehouse: Engine) -> None:
    figures = counted(warehouse)
    listed = every_row(
        warehouse, "deployments", SCOPE, ListFilters(status="success", kind="app"), 7
    )
    assert len(listed) == figures["deployment_frequency"]["deployments"] > 7
    assert len({r["id"] for r in listed}) == len(listed)  # pages neither repeat nor skip
    ends = [(r["finished_at"], r["id"]) for r in listed]
    assert ends == sorted(ends, reverse=True)
    failed = every_row(warehouse, "deployments", SCOPE, ListFilters(failed_change=True), 50)
    rate = figures["change_failure_rate"]
    assert len(failed) == rate["failed"] > 0
    assert all(r["reasons"] for r in failed)
    reasons = {
        k: sum(k in r["reasons"] for r in failed) for k in ("incident", "rollback", "hotfix")
    }
    assert reasons == rate["reasons"]
    first = failed[0]
    assert first["environment"].startswith("prod") and first["url"].startswith("http")
    everything = every_row(warehouse, "deployments", SCOPE, ListFilters(), 200)
    assert {r["status"] for r in everything} > {"success"}  # failed attempts are listed too


def test_the_changes_behind_lead_time_are_the_ones_it_counts(warehouse: Engine) -> None:
    lead = counted(warehouse)["lead_time"]
    listed = every_row(warehouse, "changes", SCOPE, ListFilters(), 40)
    assert len(listed) == lead["changes"] > 40
    hours = [r["lead_time_hours"] for r in listed]
    assert stats.percentile(hours, 0.5) == pytest.approx(lead["median_hours"])
    with_mr = [r for r in listed if r["merge_request"]]
    assert with_mr and all(r["merge_request"].startswith("!") for r in with_mr)
    assert any(r["review_hours"] is not None and r["deploy_hours"] >= 0 for r in with_mr)
    assert all(r["deployment"] and r["environment"].startswith("prod") for r in listed)
    assert all(r["commit_url"].endswith(r["sha"]) for r in listed)


def test_filters_narrow_a_list_to_a_week_a_lead_time_range_and_a_commit(
    warehouse: Engine,
) -> None:
    with warehouse.connect() as conn:
        data = selects.load(conn, SCOPE)
    week, figures = max(metrics.sliced(data, "week"), key=lambda w: w[1]["lead_time"]["changes"])
    in_week = every_row(warehouse, "changes", SCOPE, ListFilters(bucket=week), 500)
    assert len(in_week) == figures["lead_time"]["changes"] > 0
    zone = SCOPE.zone
    assert {stats.week_key(stats.local_day(r["deployed_at"], zone)) for r in in_week} == {week}
    slow = every_row(warehouse, "changes", SCOPE, ListFilters(min_hours=24, max_hours=168), 500)
    assert slow and all(24 <= r["lead_time_hours"] < 168 for r in slow)
    sha = in_week[0]["sha"]
    assert [
        r["sha"] for r in every_row(warehouse, "changes", SCOPE, ListFilters(commit=sha[:9]), 9)
    ] == [sha]
    month = stats.month_key(stats.local_day(in_week[0]["deployed_at"], zone))
    by_month = every_row(warehouse, "deployments", SCOPE, ListFilters(bucket=month), 500)
    assert by_month and all(stats.month_key(r["finished_at"].date()) == month for r in by_month)


def test_a_page_reads_only_its_rows_and_says_where_the_next_starts(warehouse: Engine) -> None:
    with warehouse.connect() as conn:
        first = drilldown.deployments(conn, SCOPE, ListFilters(), Page(5))
        assert len(first.rows) == 5 and first.next is not None
        text = drilldown.cursor_text(first.next)
        second = drilldown.deployments(
            conn, SCOPE, ListFilters(), Page(5, drilldown.parse_cursor(text))
        )
    assert second.rows[0]["finished_at"] <= first.rows[-1]["finished_at"]
    assert not {r["id"] for r in first.rows} & {r["id"] for r in second.rows}
    with pytest.raises(ValueError, match="open the list's first page"):
        drilldown.parse_cursor("yesterday")
    with pytest.raises(ValueError, match="neither an ISO week"):
        stats.bucket_bounds("2026-W99", SCOPE.zone)
