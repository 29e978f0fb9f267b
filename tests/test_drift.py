"""Drift between adjacent environments: named cases on a hand-built warehouse, both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from analytics.drift import drift, snapshot
from tests.analytics_world import World, at
from warehouse.schema import DriftSnapshot

PATH = ["test", "staging", "production"]


@pytest.fixture
def world(engine: Engine) -> World:
    w = World(engine)
    w.line("a", "b", "c", "d")
    return w


def rows(world: World, hours: float) -> dict[tuple[str, str], object]:
    world.derive()
    with world.engine.connect() as conn:
        return {(r.upstream, r.downstream): r for r in drift(conn, PATH, at=at(hours))}


def test_in_sync_everywhere(world: World) -> None:
    for env in PATH:
        world.deploy("b", at(1 + PATH.index(env)), env)
    result = rows(world, 10)
    for pair in (("test", "staging"), ("staging", "production")):
        r = result[pair]
        assert r.in_sync and r.commits_behind == 0 and r.drift_age_hours is None  # type: ignore[attr-defined]
        assert r.downstream_ever_upstream  # type: ignore[attr-defined]


def test_behind_since_the_upstream_image_arrived(world: World) -> None:
    world.deploy("b", at(1), "test")
    world.deploy("b", at(2), "staging")
    world.deploy("d", at(5), "test")  # test moves on: staging is 2 commits behind since +5h
    r = rows(world, 11)[("test", "staging")]
    assert not r.in_sync  # type: ignore[attr-defined]
    assert r.commits_behind == 2  # type: ignore[attr-defined]
    assert r.drift_age_hours == pytest.approx(6.0)  # type: ignore[attr-defined]
    assert r.upstream_digest == "sha256:d" and r.downstream_digest == "sha256:b"  # type: ignore[attr-defined]


def test_age_since_the_downstream_moved_away_from_the_upstream_image(world: World) -> None:
    world.deploy("c", at(1), "staging")
    world.deploy("c", at(2), "production")
    world.deploy("b", at(4), "production")  # production rolled back: drifting since +4h
    r = rows(world, 10)[("staging", "production")]
    assert r.drift_age_hours == pytest.approx(6.0)  # type: ignore[attr-defined]
    assert r.commits_behind == 1  # type: ignore[attr-defined]
    assert r.downstream_ever_upstream is False  # type: ignore[attr-defined]


def test_a_rebuilt_image_never_ran_upstream(world: World) -> None:
    world.deploy("c", at(1), "staging", digest="sha256:c-staging")
    world.deploy("c", at(2), "production", digest="sha256:c-rebuilt")
    r = rows(world, 3)[("staging", "production")]
    assert not r.in_sync and r.commits_behind == 0  # type: ignore[attr-defined]
    assert r.downstream_ever_upstream is False  # type: ignore[attr-defined]


def test_snapshot_is_stored_once_per_instant(world: World) -> None:
    world.deploy("b", at(1), "test")
    world.deploy("a", at(1), "staging")
    world.derive()
    with world.engine.begin() as conn:
        result = drift(conn, PATH, at=at(5))
        assert snapshot(conn, result, at(5)) == len(result) == 2
        assert snapshot(conn, result, at(5)) == 0
        assert conn.execute(select(func.count()).select_from(DriftSnapshot)).scalar_one() == 2
