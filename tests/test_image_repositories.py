"""A service's images in several registry repositories (DESIGN.md section 9): every repository under
the service's prefix, or configured in `[[services]] image_repositories`, is the service's; a
deployment resolves by revision in the repository it names, and a commit built in two repositories
the deployment does not choose between is unpinned-image naming both (named cases, both backends).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from analytics.derive import derive
from analytics.images import named_repository
from analytics.policies import scan
from tests.analytics_world import World, at
from warehouse.image_repositories import RepositoryOwners
from warehouse.schema import (
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Image,
    ImageRepository,
    ImageTag,
    Service,
)

PREFIX = "registry.test/acme/shop"
WORKER = f"{PREFIX}/worker"
PATH = ["test", "staging", "production"]


@pytest.fixture
def world(engine: Engine) -> World:
    w = World(engine)
    w.line("a", "b")
    with engine.begin() as conn:
        conn.execute(update(Service).values(image_repository=PREFIX))
    return w


def image(digest: str, repository: str, revision: str = "b") -> dict[str, Any]:
    return {"digest": digest, "repository": repository, "revision": revision}


def unpinned_ref(world: World, ext: str, ref: str | None) -> None:
    """Give deployment `ext` an image reference naming no digest (`none` until resolved)."""
    with world.engine.begin() as conn:
        conn.execute(update(Deployment).where(Deployment.external_id == ext).values(image_ref=ref))


def resolved(world: World, ext: str) -> tuple[str | None, str]:
    with world.engine.connect() as conn:
        row = conn.execute(
            select(Deployment.image_digest, Deployment.image_resolution).where(
                Deployment.external_id == ext
            )
        ).one()
    return row[0], row[1]


def unpinned(world: World) -> dict[str, str]:
    with world.engine.connect() as conn:
        found = scan(conn, at(-48), at(48), PATH, only=["unpinned-image"])
    return {v.subject.rsplit(":", 1)[1]: v.message for v in found}


def test_images_in_a_sub_repository_resolve(world: World) -> None:
    world.add(Image, [image("sha256:b1", f"{PREFIX}/app")])
    d = world.deploy("b", at(1), pinned=False)
    world.derive()
    assert resolved(world, d) == ("sha256:b1", "revision")
    assert unpinned(world) == {}


def test_a_repository_of_another_service_or_a_look_alike_name_is_not_linked(world: World) -> None:
    world.add(
        Image,
        [image("sha256:x1", f"{PREFIX}-admin/app"), image("sha256:x2", "registry.test/other")],
    )
    d = world.deploy("b", at(1), pinned=False)
    world.derive()
    assert resolved(world, d) == (None, "none")
    with world.engine.connect() as conn:
        query = select(ImageRepository.repository, ImageRepository.service_id)
        links = {repository: service for repository, service in conn.execute(query)}
    assert links == {f"{PREFIX}-admin/app": None, "registry.test/other": None}


def test_two_repositories_from_one_commit_the_jobs_named_repository_wins(world: World) -> None:
    world.add(Image, [image("sha256:app", f"{PREFIX}/app"), image("sha256:wrk", WORKER)])
    app = world.deploy("b", at(1), pinned=False)
    # the tag says nothing, the repository does
    unpinned_ref(world, app, f"{PREFIX}/app:no-such-tag")
    worker = world.deploy("b", at(2), pinned=False)
    unpinned_ref(world, worker, f"{PREFIX}/worker")
    world.derive()
    assert resolved(world, app) == ("sha256:app", "revision")
    assert resolved(world, worker) == ("sha256:wrk", "revision")


def test_a_named_repository_without_a_build_of_the_commit_resolves_to_nothing(
    world: World,
) -> None:
    """The job names the app repository, which holds no build of the commit: the worker's build
    is not what it deployed."""
    world.add(Image, [image("sha256:app", f"{PREFIX}/app", "a"), image("sha256:wrk", WORKER)])
    d = world.deploy("b", at(1), pinned=False)
    unpinned_ref(world, d, f"{PREFIX}/app:b")
    world.derive()
    assert resolved(world, d) == (None, "none")
    assert "built in" not in unpinned(world)[d]


def test_a_name_that_is_none_of_the_services_repositories_says_nothing(world: World) -> None:
    """A reference through another name (a host alias) neither chooses nor excludes a build."""
    world.add(Image, [image("sha256:app", f"{PREFIX}/app")])
    d = world.deploy("b", at(1), pinned=False)
    unpinned_ref(world, d, "mirror.test/acme/shop/app:b")
    world.derive()
    assert resolved(world, d) == ("sha256:app", "revision")


def test_tag_resolution_reads_the_named_repository(world: World) -> None:
    """Both repositories carry the commit's tag; each deployment gets its own repository's image."""
    world.add(Image, [image("sha256:app", f"{PREFIX}/app"), image("sha256:wrk", WORKER)])
    world.add(
        ImageTag,
        [
            {"repository": f"{PREFIX}/{r}", "tag": "b", "digest": d, "seen_at": at(0)}
            for r, d in (("app", "sha256:app"), ("worker", "sha256:wrk"))
        ],
    )
    worker = world.deploy("b", at(1), pinned=False)
    unpinned_ref(world, worker, f"{PREFIX}/worker:b")
    world.derive()
    assert resolved(world, worker) == ("sha256:wrk", "tag")


def test_ambiguous_without_a_named_repository_unpinned_image_names_the_candidates(
    world: World,
) -> None:
    world.add(Image, [image("sha256:app", f"{PREFIX}/app"), image("sha256:wrk", WORKER)])
    d = world.deploy("b", at(1), pinned=False)
    world.derive()
    assert resolved(world, d) == (None, "none")
    message = unpinned(world)[d]
    assert f"built in {PREFIX}/app, {PREFIX}/worker and it names none of them" in message


def test_configured_image_repositories_link_a_repository_outside_the_prefix(
    world: World,
) -> None:
    world.add(Image, [image("sha256:h1", "harbor.test/shop-images/api")])
    d = world.deploy("b", at(1), pinned=False)
    derive(world.engine, image_repositories={"shop": ["harbor.test/shop-images/*"]})
    assert resolved(world, d) == ("sha256:h1", "revision")
    with world.engine.connect() as conn:
        link = conn.execute(select(ImageRepository.linked_by)).scalar_one()
    assert link == "config"


def test_the_longest_prefix_and_then_configuration_own_a_repository() -> None:
    owners = RepositoryOwners([(1, "r.test/g"), (2, "r.test/g/p")], [(3, "r.test/g/p/legacy-*")])
    assert owners.owner("r.test/g/p/api") == (2, "prefix")
    assert owners.owner("r.test/g/other") == (1, "prefix")
    assert owners.owner("r.test/g/p/legacy-web") == (3, "config")
    assert owners.owner("r.test/gx") is None


@pytest.mark.parametrize(
    ("ref", "repository"),
    [
        ("r.test/g/p/api:v1", "r.test/g/p/api"),
        ("r.test:5000/g/p/api", "r.test:5000/g/p/api"),
        ("r.test:5000/g/p/api@sha256:00", "r.test:5000/g/p/api"),
        ("", None),
    ],
)
def test_the_repository_an_image_reference_names(ref: str, repository: str | None) -> None:
    assert named_repository(ref) == repository


def test_a_tag_history_arriving_after_a_derive_resolves_a_deployment_by_tag_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync that failed on the registry's tags resolved `app:latest` by revision; the tag
    history arriving later resolves it by tag, to the digest the tag named then, and its chain
    is derived again for the new digest. A derive with nothing new re-resolves nothing."""
    monkeypatch.setattr("analytics.derive.CLOCK_SKEW", timedelta(0))  # only late rows count
    world.add(Image, [image("sha256:b1", f"{PREFIX}/app")])
    d = world.deploy("b", at(1), pinned=False)
    unpinned_ref(world, d, f"{PREFIX}/app:latest")
    world.derive()
    assert resolved(world, d) == ("sha256:b1", "revision")
    assert (world.derive().resolved_deployments, world.derive().chains) == (0, 0)
    world.add(
        ImageTag,
        [
            {
                "repository": f"{PREFIX}/app",
                "tag": "latest",
                "digest": "sha256:b2",
                "seen_at": at(0),
            },
            {
                "repository": f"{PREFIX}/app",
                "tag": "latest",
                "digest": "sha256:b3",
                "seen_at": at(2),
            },
        ],
    )
    again = world.derive()
    assert (again.resolved_deployments, again.chains) == (1, 1)  # its chain for the new digest
    assert resolved(world, d) == ("sha256:b2", "tag")
    assert (world.derive().resolved_deployments, world.derive().chains) == (0, 0)


def test_a_pending_deployment_resolves_when_what_it_resolves_from_arrives_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An incremental derive reads a pending deployment (no digest, `none`) again only when what
    it resolves from changed since the last derive: an image of its commit synced later, a tag
    history entry of the reference it names, or the config linking its image repository to its
    service (a link, not a synced row: no `changed_at` says it changed). Each resolves it, as a
    full derive would; in between nothing is resolved again."""
    monkeypatch.setattr("analytics.derive.CLOCK_SKEW", timedelta(0))  # only late rows count
    by_build = world.deploy("b", at(1), pinned=False)
    by_tag = world.deploy("a", at(2), pinned=False)
    unpinned_ref(world, by_tag, f"{PREFIX}/web:v9")
    by_link = world.deploy("a", at(3), pinned=False)
    world.add(Image, [image("sha256:h1", "harbor.test/shop-images/api", "a")])  # not linked yet
    # the repositories known and linked from the start (a new one is a new link: all read again)
    world.add(Image, [image(f"sha256:{r}0", f"{PREFIX}/{r}", "x") for r in ("app", "web")])
    world.derive()
    assert {resolved(world, d) for d in (by_build, by_tag, by_link)} == {(None, "none")}
    assert world.derive().resolved_deployments == 0

    world.add(Image, [image("sha256:b1", f"{PREFIX}/app")])
    assert world.derive().resolved_deployments == 1
    assert resolved(world, by_build) == ("sha256:b1", "revision")

    tag = {"repository": f"{PREFIX}/web", "tag": "v9", "digest": "sha256:w9", "seen_at": at(0)}
    world.add(ImageTag, [tag])
    assert world.derive().resolved_deployments == 1
    assert resolved(world, by_tag) == ("sha256:w9", "tag")

    assert world.derive().resolved_deployments == 0
    configured = {"shop": ["harbor.test/shop-images/*"]}
    assert derive(world.engine, image_repositories=configured).resolved_deployments == 1
    assert resolved(world, by_link) == ("sha256:h1", "revision")


def test_a_pending_deployment_resolves_when_a_late_commit_gives_an_old_image_its_revision(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image whose tag names a commit the warehouse does not know yet has no revision; the
    commit arriving later gives it one in that derive, which resolves the commit's pending
    deployment though neither it nor the image nor the tag changed since the last derive."""
    monkeypatch.setattr("analytics.derive.CLOCK_SKEW", timedelta(0))  # only late rows count
    sha = "c" * 40
    d = world.deploy(sha, at(1), pinned=False)
    world.add(Image, [{"digest": "sha256:c1", "repository": f"{PREFIX}/app"}])
    tag = {"repository": f"{PREFIX}/app", "tag": sha[:12], "digest": "sha256:c1", "seen_at": at(0)}
    world.add(ImageTag, [tag])
    world.derive()
    assert resolved(world, d) == (None, "none")
    world.commit(sha, "b", authored=at(0))
    assert world.derive().resolved_deployments == 1
    assert resolved(world, d) == ("sha256:c1", "revision")


def test_a_repository_found_from_images_after_a_derive_re_derives_the_chain(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy job naming a service no code source knows (`shop-be`, no repository) is chained
    without a history: a deployment brings the commit it names. The registry's images arriving
    later put its images under `shop`'s prefix, so its deployments get `shop`'s repository, and
    the next derive, incremental, links them on that history (`c` brings `b` too): what a full
    derive gives. (The image resolution drops their links without stamping them changed: derive
    must chain them again all the same.)"""
    monkeypatch.setattr("analytics.derive.CLOCK_SKEW", timedelta(0))  # only late rows count
    with world.engine.begin() as conn:
        team = conn.execute(select(Service.team_id).where(Service.id == world.service)).scalar()
        backend = conn.execute(
            insert(Service).values(name="shop-be", team_id=team).returning(Service.id)
        ).scalar_one()
    world.commit("c", "b", authored=at(2))
    for i, sha in enumerate(("a", "c")):
        last = world.deploy(sha, at(3 + i), digest=f"sha256:{sha}1", service=backend)
    assert world.derive().chains == 1
    assert changes_of(world, backend) == {(last, "c")}  # no repository, no history to read
    world.add(Image, [image(f"sha256:{s}1", f"{PREFIX}/backend", s) for s in ("a", "c")])
    assert world.derive().chains == 1
    assert changes_of(world, backend) == {(last, "b"), (last, "c")}
    incremental = derived_chains(world)
    derive(world.engine, full=True)
    assert derived_chains(world) == incremental


def changes_of(world: World, service: int) -> set[tuple[str, str]]:
    with world.engine.connect() as conn:
        rows = conn.execute(
            select(Deployment.external_id, DeploymentChange.sha)
            .join(DeploymentChange, DeploymentChange.deployment_id == Deployment.id)
            .where(Deployment.service_id == service)
        )
        return {(ext, sha) for ext, sha in rows}


def derived_chains(world: World) -> set[tuple[Any, ...]]:
    with world.engine.connect() as conn:
        chains = conn.execute(
            select(
                Deployment.external_id,
                DeploymentChain.previous_deployment_id,
                DeploymentChain.baseline,
                DeploymentChain.rollback,
                DeploymentChain.changes,
            ).join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        )
        return {tuple(row) for row in chains}
