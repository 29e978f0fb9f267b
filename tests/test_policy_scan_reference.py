"""The policy scan on the demo organisation, on SQLite and PostgreSQL: its image policies equal the
straightforward computation the scan made before it asked SQL for the first run of each image
(tests/policy_reference.py), in the same order, for several periods and parameters; and the
whole scan finds the same violations, in the same order, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from analytics.derive import derive
from analytics.policies import scan
from config.settings import PoliciesSettings
from sandbox.generate import generate
from tests.conftest import migrated_warehouse
from tests.policy_reference import reference_rebuilt, reference_untested
from tests.sandbox_load import load_org

NOW = datetime(2025, 6, 2, tzinfo=UTC)
PATH = ["test", "staging", "production"]
PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "previous": {"untested-image": {"require": "previous"}},
    "soak": {"untested-image": {"min_soak_minutes": 90}},
}


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine]]:
    """The demo organisation loaded and derived in SQLite and in PostgreSQL."""
    org = generate(1, "demo", NOW)
    with (
        migrated_warehouse("sqlite", Path(tmp_path_factory.mktemp("scan"))) as sqlite,
        migrated_warehouse("postgresql", Path(tmp_path_factory.mktemp("scan"))) as postgresql,
    ):
        for engine in (sqlite, postgresql):
            load_org(engine, org)
            derive(engine)
        yield {"sqlite": sqlite, "postgresql": postgresql}


def periods() -> dict[str, tuple[datetime, datetime]]:
    return {
        "90 days": (NOW - timedelta(days=90), NOW),
        "whole history": (NOW - timedelta(days=400), NOW + timedelta(days=1)),
        "a week a month back": (NOW - timedelta(days=37), NOW - timedelta(days=30)),
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_image_policies_equal_the_straightforward_computation(
    warehouses: dict[str, Engine], backend: str
) -> None:
    compared = 0
    with warehouses[backend].connect() as conn:
        for (since, until), (name, params) in (
            (period, setting) for period in periods().values() for setting in PARAMS.items()
        ):
            settings = PoliciesSettings.model_validate(params)
            got = scan(conn, since, until, PATH, settings, only=["untested-image"])
            assert got == reference_untested(conn, since, until, PATH, settings), name
            compared += len(got)
        for since, until in periods().values():
            got = scan(conn, since, until, PATH, only=["rebuilt-image"])
            assert got == reference_rebuilt(conn, since, until, PATH)
    assert compared > 0


def test_the_scan_finds_the_same_violations_on_sqlite_and_postgresql(
    warehouses: dict[str, Engine],
) -> None:
    for name, (since, until) in periods().items():
        found = {}
        for backend, engine in warehouses.items():
            with engine.connect() as conn:
                found[backend] = [astuple(v) for v in scan(conn, since, until, PATH)]
        assert found["sqlite"] == found["postgresql"], name
        assert found["sqlite"], name
