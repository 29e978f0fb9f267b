"""One select of recorded policy violations and one rule of "new this week"
(analytics.views.violations), read by the dashboard, the weekly report, the API and the scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert

from analytics.scope import Scope
from analytics.views.violations import new_since, select_violations
from service.views import violations as api_violations
from tests.analytics_world import World
from warehouse.schema import PolicyViolation

MONDAY = datetime(2026, 11, 16, tzinfo=UTC)  # 2026-W47
SCOPE = Scope(MONDAY - timedelta(weeks=2), MONDAY + timedelta(weeks=1))  # W45..W47


@pytest.fixture
def world(engine: Engine) -> World:
    """Violations of service shop: one that occurred in the period's last week, one in its first
    week, one before the period and resolved in it, one resolved before it, one after it."""
    w = World(engine)
    rows = [
        ("last-week", "error", MONDAY + timedelta(days=2), None),
        ("first-week", "warn", SCOPE.since + timedelta(days=1), None),
        ("resolved-in", "info", SCOPE.since - timedelta(days=3), SCOPE.since + timedelta(days=1)),
        (
            "resolved-before",
            "warn",
            SCOPE.since - timedelta(days=9),
            SCOPE.since - timedelta(days=1),
        ),
        ("after", "error", SCOPE.until + timedelta(hours=1), None),
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(PolicyViolation),
            [
                {
                    "policy": "untested-image",
                    "subject": subject,
                    "severity": severity,
                    "service_id": w.service,
                    "environment_id": w.env["production"],
                    "message": subject,
                    "occurred_at": occurred,
                    "first_seen_at": SCOPE.until,  # one scan found them all
                    "resolved_at": resolved,
                }
                for subject, severity, occurred, resolved in rows
            ],
        )
    return w


def subjects(rows: list[dict[str, object]]) -> list[object]:
    return [r["subject"] for r in rows]


def test_new_this_week_is_the_period_s_last_iso_week_by_occurrence(world: World) -> None:
    with world.engine.connect() as conn:
        open_in_period = select_violations(conn, SCOPE)
        new = select_violations(conn, SCOPE, during="new")
        week = select_violations(conn, Scope(MONDAY, SCOPE.until), during="new")
    assert subjects(open_in_period) == ["last-week", "first-week", "resolved-in"]  # latest first
    assert [r["subject"] for r in open_in_period if r["new"]] == subjects(new) == ["last-week"]
    assert subjects(week) == subjects(new)  # the weekly report's week: the same rule
    assert [r["open"] for r in open_in_period] == [True, True, False]


def test_filters_and_order(world: World) -> None:
    with world.engine.connect() as conn:
        occurred = select_violations(conn, SCOPE, during="occurred", by_severity=True)
        errors = select_violations(conn, SCOPE, severities=["error"])
        unresolved = select_violations(conn, SCOPE, unresolved=True)
        other = select_violations(conn, SCOPE, policies=["direct-push"])
        elsewhere = select_violations(conn, Scope(SCOPE.since, SCOPE.until, services=("other",)))
    assert subjects(occurred) == ["last-week", "first-week"]  # errors first
    assert subjects(errors) == ["last-week"]
    assert subjects(unresolved) == ["last-week", "first-week"]
    assert other == elsewhere == []


def test_the_api_reads_the_same_select(world: World) -> None:
    with world.engine.connect() as conn:
        rows = api_violations(conn, since=SCOPE.since)
        every = api_violations(conn, include_resolved=True)
    assert [r["subject"] for r in rows] == ["after", "last-week", "first-week"]
    assert len(every) == 5


def test_new_since_counts_weeks_in_the_scope_s_time_zone() -> None:
    zone = "Pacific/Auckland"
    local_monday = datetime(2026, 11, 16, tzinfo=ZoneInfo(zone))
    scope = Scope(
        local_monday - timedelta(weeks=4), local_monday + timedelta(days=3), timezone=zone
    )
    assert new_since(scope) == local_monday
    assert new_since(Scope(MONDAY, MONDAY + timedelta(weeks=1))) == MONDAY
