"""A tracker's explicit incident -> change link wins over the time window (DESIGN.md §4), in
derive on SQLite and PostgreSQL and in the reference implementation."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from sandbox.reference import DeploymentTruth, attribute_incidents
from tests.analytics_world import World, at
from warehouse.dimensions import ensure_source
from warehouse.schema import ChangeFailure, Deployment, Incident


@pytest.fixture
def world(engine: Engine) -> World:
    w = World(engine)
    w.line("a", "b", "c")
    w.deploy("a", at(0))  # d1: the baseline
    w.deploy("b", at(10))  # d2
    w.deploy("c", at(20))  # d3
    return w


def tracker_incident(world: World, name: str, opened_h: float, **links: str) -> None:
    with world.engine.begin() as conn:
        source = ensure_source(conn, "jira", "jira")
    world.add(
        Incident,
        [
            {
                "source_id": source,
                "external_id": name,
                "key": name,
                "service_id": world.service,
                "opened_at": at(opened_h),
                "resolved_at": at(opened_h + 1),
                **{f"linked_{k}": v for k, v in links.items()},
            }
        ],
    )


def failed(world: World) -> dict[str, bool]:
    world.derive()
    with world.engine.connect() as conn:
        rows = conn.execute(
            select(Deployment.external_id, ChangeFailure.incident).join(
                ChangeFailure, ChangeFailure.deployment_id == Deployment.id
            )
        ).all()
    return {external: bool(incident) for external, incident in rows}


def test_without_a_link_the_window_decides(world: World) -> None:
    tracker_incident(world, "PAY-1", 22)
    assert failed(world) == {"d3": True}


@pytest.mark.parametrize(
    "link",
    [{"deployment": "d2"}, {"sha": "b"}, {"deployment": "d2", "sha": "c"}],
    ids=["deployment", "commit", "deployment-before-commit"],
)
def test_an_explicit_link_wins_over_the_window(world: World, link: dict[str, str]) -> None:
    tracker_incident(world, "PAY-1", 22, **link)  # the window says d3
    assert failed(world) == {"d2": True}


def test_a_link_to_a_change_not_in_production_fails_nothing(world: World) -> None:
    world.deploy("c", at(19), env="staging")  # d4: not production
    tracker_incident(world, "PAY-1", 22, deployment="d4")
    tracker_incident(world, "PAY-2", 23, sha="0000fff")
    assert failed(world) == {}


def test_a_linked_merge_request_resolves_through_its_merge_commit(world: World) -> None:
    world.merge_request(7, ["b"], created=at(8), merged=at(9), merge_sha="b")
    tracker_incident(world, "PAY-1", 22, merge_request="7")
    assert failed(world) == {"d2": True}


def _truth(i: int, finished_h: float) -> DeploymentTruth:
    return DeploymentTruth(
        i, "shop", "production", f"s{i}", "main", None, at(finished_h), None, (), False, False
    )


class _Incident:
    def __init__(self, id: int, opened_h: float) -> None:
        self.id, self.created_at = id, at(opened_h)


def test_the_reference_lets_an_explicit_link_win_too() -> None:
    production = [_truth(1, 0), _truth(2, 10), _truth(3, 20)]
    incidents: list[Any] = [_Incident(100, 22), _Incident(101, 22), _Incident(102, 22)]
    links = {101: 2, 102: 99}  # 99: not a production deployment
    assert attribute_incidents(production, incidents, links=links) == {
        100: 3,
        101: 2,
        102: None,
    }
