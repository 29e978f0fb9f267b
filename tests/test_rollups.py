"""Rollups (issue #21, DESIGN.md section 9): metrics read per (service, environment, local day)
and per (repository, default-branch flag, local day) rollups maintained by derive, with every
figure equal to the one computed from the rows, on SQLite and PostgreSQL; an incremental derive
rolls up only the days new data touched and leaves the rollups a full rebuild would."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from analytics import rollups, selects
from analytics.derive import derive
from analytics.metrics import compute, sliced
from analytics.scope import Scope
from analytics.views import builds
from sandbox.generate import generate
from tests.conftest import migrated_warehouse
from tests.sandbox_load import load_org
from warehouse.schema import (
    Environment,
    RollupDay,
    RollupPipelineDay,
    RollupSuiteDay,
    Service,
    Team,
    table_of,
)

NOW = datetime(2025, 6, 2, tzinfo=UTC)
ZONE = "America/New_York"  # days are local: a UTC day would cut them elsewhere


# rolled-up parts read alone, the parts kept as rows they need, and the figures they answer
ROLLED_FIGURES = {
    ("deployments",): ((), ("deployment_frequency", "change_failure_rate", "rework_rate")),
    ("attempts",): ((), ("deployment_failure_rate",)),
    ("changes", "merge_requests"): (("unreleased",), ("lead_time",)),
    ("pipelines",): ((), ("build",)),
}
# whether a day holds figures of a part rolled up per day
CARRIES = {
    "deployments": lambda d: d.deployments > 0 or bool(d.recovery_hours),
    "changes": lambda d: d.changes > 0 or bool(d.lead_hours),
    "merge_requests": lambda d: d.merge_requests > 0 or any(d.stages.values()),
    "attempts": lambda d: d.attempts_success + d.attempts_failed > 0 or d.tier is not None,
}


def _stored(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The rollup tables' rows without their ids, sorted (by their keys, which lead)."""
    found = {}
    with engine.connect() as conn:
        for model in (RollupDay, RollupPipelineDay, RollupSuiteDay):
            columns = [c for c in table_of(model).columns if c.name != "id"]
            found[table_of(model).name] = sorted(
                (tuple(row) for row in conn.execute(select(*columns))), key=repr
            )
    return found


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def derived(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, Any, dict[str, Any]]]:
    """The small organisation loaded to three days before its end and derived, then loaded to
    its end and derived again (incremental): (engine, org, what the incremental derive did)."""
    with migrated_warehouse(request.param, Path(tmp_path_factory.mktemp("rollups"))) as engine:
        org = generate(1, "small", NOW)
        load_org(engine, org, org.now - timedelta(days=3))
        first = derive(engine, timezone=ZONE)
        load_org(engine, org)
        incremental = derive(engine, timezone=ZONE)
        yield engine, org, {"first": first, "incremental": incremental}


def test_rollup_figures_equal_the_rows_and_incremental_equals_full(
    derived: tuple[Engine, Any, dict[str, Any]],
) -> None:
    engine, org, runs = derived
    zone = Scope(NOW, NOW + timedelta(days=1), timezone=ZONE).zone
    with engine.connect() as conn:
        team = conn.execute(select(Team.name).order_by(Team.name)).scalars().first()
        service = conn.execute(select(Service.name).order_by(Service.name)).scalars().first()
        region = (
            conn.execute(select(Environment.name).where(Environment.tier == "production"))
            .scalars()
            .first()
        )
    start = datetime.combine((org.start - timedelta(days=60)).date(), datetime.min.time(), zone)
    end = datetime.combine((org.now + timedelta(days=1)).date(), datetime.min.time(), zone)
    whole = Scope(start, end, timezone=ZONE)
    scopes = {  # name -> (scope, whether stored days answer it)
        "whole": (whole, True),
        "default": (Scope.default(ZONE, now=org.now), True),
        "partial days": (
            Scope(
                end - timedelta(days=40, hours=10, minutes=23),
                end - timedelta(hours=15),
                timezone=ZONE,
            ),
            True,
        ),
        "team": (Scope(start, end, teams=(team,), timezone=ZONE), True),
        "service": (Scope(start, end, services=(service,), timezone=ZONE), True),
        "named environment": (Scope(start, end, environment=region, timezone=ZONE), False),
        "other zone": (Scope(start, end, timezone="UTC"), False),
    }
    with engine.connect() as conn:
        for name, (scope, stored) in scopes.items():
            days = rollups.load(conn, scope)
            rows = selects.load(conn, scope)
            assert (days.stored > 0) is stored, name
            assert gc.isenabled(), "the read paused the garbage collector and left it paused"
            figures = compute(days)
            assert figures == compute(rows), name
            # a reader needing only some figures reads only their parts, computes only them
            for rolled, (kept, names) in ROLLED_FIGURES.items():
                part = rollups.load(conn, scope, rules=None, rows=kept, rolled=rolled)
                assert not getattr(part, "days" if rolled == ("pipelines",) else "pipelines"), name
                assert compute(part, names=names) == {n: figures[n] for n in names}, name
            # the days of each part read apart (as the dashboard holds them) carry only their
            # part, and add up to the days read together
            apart = replace(days, days=[])
            for rolled in rollups.ROLLED:
                alone = rollups.load(conn, scope, rules=None, rows=(), rolled=(rolled,)).days
                others = [p for p in rollups.ROLLED if p != rolled]
                assert all(
                    CARRIES[rolled](d) and not any(CARRIES[p](d) for p in others) for d in alone
                ), (name, rolled)
                apart.days.extend(alone)
            assert compute(apart) == figures, name
            assert sliced(apart, "team") == sliced(days, "team"), name
            # the failing test suites: stored suite days and edge rows, as the runs sum
            suites = [r for r in builds._suites_of_runs(conn, scope) if r["failed_tests"] > 0]
            suites.sort(key=lambda r: (-r["failed_tests"], r["service"], r["suite"]))
            assert builds.failing_tests(conn, scope, limit=len(suites) + 1) == suites, name
            assert (rollups.stored_span(conn, scope) is not None) is (
                stored or scope.environment is not None
            ), name
        days, rows = rollups.load(conn, whole), selects.load(conn, whole)
        for by in ("week", "month", "team", "service"):
            assert sliced(days, by) == sliced(rows, by), by
    figures = compute(rows)
    assert figures["deployment_frequency"]["deployments"] > 0
    assert figures["lead_time"]["changes"] > 0 and figures["build"]["pipelines"] > 0
    assert figures["change_failure_rate"]["failed"] > 0
    assert figures["build"]["default_branch_red_share"] is not None
    with engine.connect() as conn:
        assert builds.failing_tests(conn, whole)  # the organisation has failing suites
    # the incremental derive rolled up the last days only (on PostgreSQL, rows written within
    # derive's clock-skew margin of the last derive's start count as late: here, all of them),
    # and left what a full rebuild leaves
    incremental = _stored(engine)
    if engine.dialect.name == "sqlite":
        assert 0 < runs["incremental"].rollup_days < runs["first"].rollup_days / 4
    full = derive(engine, full=True, timezone=ZONE)
    assert full.rollup_days == sum(len(rows) for rows in incremental.values())
    assert _stored(engine) == incremental
