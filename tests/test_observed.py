"""Rollouts seen in a cluster against recorded deployments: image resolution `observed`, the
unrecorded-change policy and the environment state (named cases, both backends)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update

from analytics.drift import drift, environment_state
from analytics.policies import scan
from tests.analytics_world import World, at
from warehouse.dimensions import ensure_source
from warehouse.schema import Deployment, DeploymentChain, Image, ObservedWorkload, Service

PATH = ["test", "staging", "production"]


class Cluster:
    """Rollouts of the world's service as a Kubernetes collector would write them."""

    def __init__(self, world: World, name: str = "prod-cluster") -> None:
        self.world, self.name, self.revision = world, name, 0
        with world.engine.begin() as conn:
            self.source = ensure_source(conn, name, "kubernetes")

    def rollout(
        self, digest: str, began: datetime, env: str = "production", status: str = "success"
    ) -> str:
        self.revision += 1
        self.world.add(
            ObservedWorkload,
            [
                {
                    "source_id": self.source,
                    "cluster": self.name,
                    "namespace": f"shop-{env}",
                    "workload": "shop",
                    "revision": str(self.revision),
                    "replica_set": f"shop-{self.revision:08x}",
                    "observed_at": began,
                    "finished_at": began + timedelta(minutes=1) if status == "success" else None,
                    "status": status,
                    "service_id": self.world.service,
                    "environment_id": self.world.env[env],
                    "images": [f"registry.test/shop@{digest}"],
                    "digests": [digest],
                    "ready": status == "success",
                }
            ],
        )
        return f"rollout {self.name}/shop-{env}/shop#{self.revision}"


def resolved(world: World) -> dict[str, tuple[str | None, str]]:
    with world.engine.connect() as conn:
        return {
            ext: (digest, how)
            for ext, digest, how in conn.execute(
                select(Deployment.external_id, Deployment.image_digest, Deployment.image_resolution)
            )
        }


def unrecorded(world: World) -> list[str]:
    with world.engine.connect() as conn:
        found = scan(conn, at(-48), at(48), PATH, only=["unrecorded-change"])
    return sorted(v.subject for v in found)


@pytest.fixture
def world(engine: Engine) -> World:
    w = World(engine)
    w.line("a", "b", "c", "d")
    return w


def test_a_deployment_naming_no_image_takes_the_rollout_that_ran_during_it(world: World) -> None:
    cluster = Cluster(world)
    d = world.deploy("b", at(2), pinned=False)
    cluster.rollout("sha256:bbb", at(2) - timedelta(minutes=3))  # while the job ran
    cluster.rollout("sha256:zzz", at(5))  # later: not this deployment's
    world.derive()
    assert resolved(world)[d] == ("sha256:bbb", "observed")
    assert unrecorded(world) == ["rollout prod-cluster/shop-production/shop#2"]


def test_observation_beats_a_revision_and_the_chain_is_derived_again(world: World) -> None:
    """The revision rule gives c's deployment c's build; a rollout found later shows the job
    really ran b1: observation wins and the chain is derived again from that deployment."""
    with world.engine.begin() as conn:
        conn.execute(update(Service).values(image_repository="registry.test/shop"))
    world.add(
        Image,
        [
            {"digest": "sha256:b1", "repository": "registry.test/shop", "revision": "b"},
            {"digest": "sha256:c1", "repository": "registry.test/shop", "revision": "c"},
        ],
    )
    first = world.deploy("b", at(1), digest="sha256:b1")
    second = world.deploy("c", at(2), pinned=False)
    world.derive()
    assert resolved(world)[second] == ("sha256:c1", "revision")
    Cluster(world).rollout("sha256:b1", at(2) - timedelta(minutes=2))  # c's job really ran b1
    world.derive()
    assert resolved(world)[second] == ("sha256:b1", "observed")
    assert resolved(world)[first] == ("sha256:b1", "explicit")
    with world.engine.connect() as conn:
        rollback = conn.execute(
            select(DeploymentChain.rollback)
            .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
            .where(Deployment.external_id == second)
        ).scalar_one()
    assert rollback is False  # the same image again is no rollback: nothing changed


def test_a_platform_digest_is_the_same_image_as_its_index(world: World) -> None:
    world.add(
        Image,
        [
            {"digest": "sha256:index", "repository": "registry.test/shop", "revision": "b"},
            {
                "digest": "sha256:amd64",
                "repository": "registry.test/shop",
                "revision": "b",
                "index_digest": "sha256:index",
                "platform": "linux/amd64",
            },
        ],
    )
    cluster = Cluster(world)
    recorded = world.deploy("b", at(2), digest="sha256:index")
    pinned_to_platform = world.deploy("b", at(3), "staging", digest="sha256:amd64")
    cluster.rollout("sha256:amd64", at(2) - timedelta(minutes=1))  # the node reports its platform
    world.derive()
    assert unrecorded(world) == []
    got = resolved(world)
    assert got[recorded] == ("sha256:index", "explicit")
    assert got[pinned_to_platform] == ("sha256:index", "explicit")
    with world.engine.connect() as conn:
        ref = conn.execute(
            select(Deployment.image_ref).where(Deployment.external_id == pinned_to_platform)
        ).scalar_one()
    assert ref == "sha256:amd64"  # what the source said is kept


def test_a_change_by_hand_is_unrecorded_and_wins_the_environment_state(world: World) -> None:
    cluster = Cluster(world)
    world.deploy("b", at(1))
    cluster.rollout("sha256:b", at(1) - timedelta(minutes=4))
    hand = cluster.rollout("sha256:debug", at(3))  # kubectl set image
    cluster.rollout("sha256:broken", at(3.5), status="failed")  # never ran: not a change
    world.derive()
    assert unrecorded(world) == [hand]
    with world.engine.connect() as conn:
        state = environment_state(conn, at(4))
        assert state[("shop", "production")].image == "sha256:debug"
        assert state[("shop", "production")].deployment_id is None
        assert environment_state(conn, at(2))[("shop", "production")].image == "sha256:b"
    world.deploy("c", at(6))  # the pipeline puts things right
    world.derive()
    with world.engine.connect() as conn:
        assert environment_state(conn, at(7))[("shop", "production")].image == "sha256:c"


def test_a_digest_other_than_the_recorded_one_is_unrecorded(world: World) -> None:
    cluster = Cluster(world)
    world.deploy("b", at(1), digest="sha256:b")  # the pipeline said b ...
    swapped = cluster.rollout(
        "sha256:other", at(1) - timedelta(minutes=2)
    )  # ... the cluster ran other
    world.derive()
    assert resolved(world)["d1"] == ("sha256:b", "explicit")  # an explicit digest is kept
    assert unrecorded(world) == [swapped]


def test_rollouts_a_cluster_records_itself_do_not_account_for_themselves(world: World) -> None:
    cluster = Cluster(world)
    hand = cluster.rollout("sha256:b", at(1))
    with (
        world.engine.begin() as conn
    ):  # `deployments = "record"`: the same rollout, as a deployment
        conn.execute(
            Deployment.__table__.insert().values(
                source_id=cluster.source,
                external_id="prod-cluster/shop-production/shop/1",
                service_id=world.service,
                environment_id=world.env["production"],
                status="success",
                started_at=at(1),
                finished_at=at(1) + timedelta(minutes=1),
                image_digest="sha256:b",
                image_resolution="observed",
                kind="app",
            )
        )
    world.derive()
    assert unrecorded(world) == [hand]


def test_drift_from_a_change_by_hand_upstream_counts_from_the_change(world: World) -> None:
    cluster = Cluster(world)
    world.deploy("b", at(1), "staging")
    world.deploy("b", at(2))
    cluster.rollout("sha256:debug", at(3), env="staging")  # staging changed by hand
    world.derive()
    with world.engine.connect() as conn:
        [row] = [r for r in drift(conn, PATH, at=at(5)) if r.upstream == "staging"]
    assert row.upstream_digest == "sha256:debug" and not row.in_sync
    assert row.drift_age_hours == pytest.approx(2.0)
