"""A Zentao bug found in a build of a tagged release is explicitly linked to the production
deployment from that tag (`tag:<name>` in `incident.linked_deployment`), in derive on SQLite and
PostgreSQL: the link wins over the time window."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from collectors import zentao_normalize as norm
from tests.analytics_world import World, at
from warehouse.dimensions import ensure_source
from warehouse.schema import ChangeFailure, Deployment, Incident


@pytest.fixture
def world(engine: Engine) -> World:
    w = World(engine)
    w.line("a", "b", "c")
    w.deploy("a", at(0), ref="v1.0.0")  # d1: the baseline
    w.deploy("b", at(10), ref="v1.1.0")  # d2
    w.deploy("c", at(20), ref="v1.2.0")  # d3
    return w


def zentao_incident(
    world: World, opened_h: float, build: str, builds: dict[str, Any] | None = None
) -> None:
    bug = {
        "id": 45,
        "title": "支付失败",
        "status": "active",
        "severity": 1,
        "openedDate": at(opened_h).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "openedBuild": build,
    }
    releases = [
        {"name": f"v1.{n}.0", "builds": [{"id": n + 10, "name": f"build {n}"}]} for n in range(4)
    ]
    incident = norm.normalize_incident(bug, releases, builds=builds)
    link = next((r.value for r in incident.links if r.kind == "deployment"), None)
    sha = next((r.value for r in incident.links if r.kind == "commit"), None)
    with world.engine.begin() as conn:
        source = ensure_source(conn, "zentao", "zentao")
    world.add(
        Incident,
        [
            {
                "source_id": source,
                "external_id": incident.external_id,
                "key": incident.key,
                "service_id": world.service,
                "opened_at": incident.opened_at,
                "linked_deployment": link,
                "linked_sha": sha,
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


@pytest.mark.parametrize("build", ["trunk", "14"])  # no release ships build 14
def test_without_a_tagged_build_the_window_decides(world: World, build: str) -> None:
    zentao_incident(world, 22, build)
    assert failed(world) == {"d3": True}


def test_a_build_of_a_tagged_release_links_the_deployment_from_that_tag(world: World) -> None:
    zentao_incident(world, 22, "11")  # build 11 ships in release v1.1.0; the window says d3
    assert failed(world) == {"d2": True}


def test_a_tag_no_production_deployment_ran_fails_nothing(world: World) -> None:
    world.deploy("c", at(19), env="staging", ref="v1.3.0")
    zentao_incident(world, 22, "13")  # v1.3.0 ran in staging only: the link names no change
    assert failed(world) == {}


def test_a_tag_deployed_from_a_branch_links_the_deployment_of_the_builds_commit(
    engine: Engine,
) -> None:
    """The team deploys from main: no deployment ran from the tag's ref, the build's scm path
    names the tag's commit, whose production deployment the incident is linked to."""
    w = World(engine)
    w.line("aaaa111", "bbbb222", "cccc333")
    for n, sha in enumerate(("aaaa111", "bbbb222", "cccc333")):
        w.deploy(sha, at(n * 10), ref="main")
    build = {"id": 11, "scmPath": "https://gitlab.example.com/g/p/-/commit/bbbb222"}
    zentao_incident(w, 22, "11", {"11": build})  # the window says d3, the build's commit d2
    assert failed(w) == {"d2": True}
    assert norm.build_commits({"scmPath": "https://gitlab.example.com/g/p"}) == []  # a repo only
