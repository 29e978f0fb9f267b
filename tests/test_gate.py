"""The promotion gate on hand-built warehouses (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from analytics.gate import CannotDecide, evaluate
from analytics.policies import moved_tag, scan
from config.settings import PoliciesSettings
from tests.analytics_world import World, at
from warehouse.schema import Image, ImageTag

PATH = ["test", "staging", "production"]
REPO = "registry.test/shop"


@pytest.fixture
def world(engine: Engine) -> World:
    w = World(engine)
    w.line("a", "b", "c")
    w.add(
        Image,
        [{"digest": f"sha256:{sha}", "repository": REPO, "revision": sha} for sha in "abc"]
        + [{"digest": "sha256:b2", "repository": REPO, "revision": "b"}],
    )  # b rebuilt
    w.deploy("b", at(1), "test", digest="sha256:b")
    w.deploy("b", at(2), "staging", digest="sha256:b")
    w.deploy("c", at(3), "test", digest="sha256:c")
    w.derive()
    return w


def gate(world: World, image: str, env: str = "production", **options: object):  # type: ignore[no-untyped-def]
    with world.engine.connect() as conn:
        return evaluate(conn, "shop", image, env, PATH, now=at(10), **options)  # type: ignore[arg-type]


def test_a_digest_that_passed_test_and_staging_is_allowed(world: World) -> None:
    decision = gate(world, f"{REPO}@sha256:b")
    assert decision.decision == "allow" and decision.reasons == []
    assert decision.digest == "sha256:b"


def test_a_platform_manifest_of_a_tested_index_is_the_same_image(world: World) -> None:
    world.add(
        Image,
        [
            {
                "digest": "sha256:b-arm64",
                "repository": REPO,
                "revision": "b",
                "index_digest": "sha256:b",
                "platform": "linux/arm64",
            }
        ],
    )
    decision = gate(world, f"{REPO}@sha256:b-arm64")
    assert decision.decision == "allow" and decision.reasons == []
    assert decision.digest == "sha256:b"


def test_an_untested_digest_is_denied_saying_what_to_do(world: World) -> None:
    decision = gate(world, f"{REPO}@sha256:c")
    assert decision.decision == "deny"
    [reason] = decision.reasons
    assert reason.policy == "untested-image" and reason.severity == "error"
    assert "deploy sha256:c to staging first" in reason.message


def test_a_digest_rebuilt_from_the_same_commit_is_denied(world: World) -> None:
    decision = gate(world, f"{REPO}@sha256:b2")
    assert decision.decision == "deny"
    assert {r.policy for r in decision.reasons} == {"untested-image", "rebuilt-image"}
    assert any("promote sha256:b instead" in r.message for r in decision.reasons)


def test_the_first_environment_has_nothing_upstream(world: World) -> None:
    assert gate(world, f"{REPO}@sha256:c", env="test").decision == "allow"


def test_a_tag_is_resolved_and_a_moved_tag_is_warned(world: World) -> None:
    world.add(
        ImageTag,
        [
            {"repository": REPO, "tag": "latest", "digest": "sha256:a", "seen_at": at(0)},
            {"repository": REPO, "tag": "latest", "digest": "sha256:b", "seen_at": at(1)},
            {"repository": REPO, "tag": "b", "digest": "sha256:b", "seen_at": at(1)},
        ],
    )
    pinned = gate(world, f"{REPO}:b")
    assert (pinned.decision, pinned.digest, pinned.reasons) == ("allow", "sha256:b", [])
    moved = gate(world, f"{REPO}:latest")
    assert moved.decision == "allow" and moved.digest == "sha256:b"
    assert [r.policy for r in moved.reasons] == ["moved-tag"]


def test_the_gate_and_the_scan_read_a_tag_reference_alike() -> None:
    """One parser of image references for moved-tag in the gate and in the scan."""
    assert moved_tag.tag_of(f"{REPO}@sha256:a") is None
    assert moved_tag.tag_of("sha256:a") is None
    assert moved_tag.tag_of("registry:5000/team/app") == ("registry:5000/team/app", "latest")
    assert moved_tag.tag_of("registry:5000/team/app:1.2") == ("registry:5000/team/app", "1.2")
    assert moved_tag.moved(["sha256:a", "sha256:b", "sha256:a"])
    assert not moved_tag.moved(["sha256:a", "sha256:a"])


def test_a_tag_that_moves_after_the_decision_was_not_moved_then(world: World) -> None:
    world.add(
        ImageTag,
        [
            {"repository": REPO, "tag": "rc", "digest": "sha256:a", "seen_at": at(0)},
            {"repository": REPO, "tag": "rc", "digest": "sha256:b", "seen_at": at(5)},
        ],
    )
    with world.engine.connect() as conn:
        before = moved_tag.histories(conn, [(REPO, "rc")], at(1))
        after = moved_tag.histories(conn, [(REPO, "rc")], at(5))
    assert before == {(REPO, "rc"): ["sha256:a"]}
    assert after == {(REPO, "rc"): ["sha256:a", "sha256:b"]}


def test_an_unknown_tag_cannot_be_shown_tested(world: World) -> None:
    decision = gate(world, f"{REPO}:nightly")
    assert decision.decision == "deny"
    assert {r.policy for r in decision.reasons} == {"unpinned-image", "untested-image"}


@pytest.mark.parametrize(
    ("ref", "allowed"),
    [
        ("main", True),
        ("refs/heads/main", True),
        ("v1.4.2", True),
        ("refs/tags/r42", True),
        ("release/2026.11", True),
        ("hotfix/login", True),
        ("feature/x", False),
    ],
)
def test_non_release_refs_are_denied_for_production(world: World, ref: str, allowed: bool) -> None:
    decision = gate(world, f"{REPO}@sha256:b", ref=ref)
    assert (decision.decision == "allow") is allowed
    assert (
        gate(world, f"{REPO}@sha256:c", env="staging", ref=ref).decision == "allow"
    )  # only production


def test_unknown_service_cannot_be_decided(world: World) -> None:
    with (
        world.engine.connect() as conn,
        pytest.raises(CannotDecide, match="no service named nope in the warehouse"),
    ):
        evaluate(conn, "nope", "x@sha256:1", "production", PATH)


def test_an_image_that_skipped_test_is_denied_for_production(world: World) -> None:
    """require = "all" (the default): every environment before the target, not only staging."""
    world.add(Image, [{"digest": "sha256:a", "repository": REPO, "revision": "a"}])
    world.deploy("a", at(4), "staging", digest="sha256:a")  # straight to staging
    decision = gate(world, f"{REPO}@sha256:a")
    assert decision.decision == "deny"
    [reason] = decision.reasons
    assert "without a successful deployment to test before it" in reason.message
    previous = PoliciesSettings.model_validate({"untested-image": {"require": "previous"}})
    assert gate(world, f"{REPO}@sha256:a", policy=previous).decision == "allow"
    # an image seen nowhere is missing from both environments, named in path order
    [nowhere] = gate(world, f"{REPO}@sha256:zz").reasons
    assert "without a successful deployment to test, staging before it" in nowhere.message


def test_the_soak_counts_in_every_environment_before_the_target(world: World) -> None:
    soaked = PoliciesSettings.model_validate({"untested-image": {"min_soak_minutes": 60 * 8}})
    assert gate(world, f"{REPO}@sha256:b", policy=soaked).decision == "allow"  # staging at(2)
    soaked = PoliciesSettings.model_validate({"untested-image": {"min_soak_minutes": 60 * 8.5}})
    [reason] = gate(world, f"{REPO}@sha256:b", policy=soaked).reasons
    assert "to staging before it" in reason.message and "soak 510 minutes" in reason.message


def test_the_gate_and_the_scan_agree(world: World) -> None:
    """Deployments the scan flags are the ones the gate, asked just before each, denies."""
    world.add(Image, [{"digest": "sha256:a", "repository": REPO, "revision": "a"}])
    world.deploy("a", at(4), "staging", digest="sha256:a")
    world.deploy("a", at(5), "production", digest="sha256:a")  # skipped test
    world.deploy("b", at(6), "production", digest="sha256:b")  # test and staging
    world.deploy("c", at(7), "production", digest="sha256:c")  # test only
    with world.engine.connect() as conn:
        found = scan(conn, at(0), at(10), PATH, only=["untested-image"])
    assert sorted((v.environment, v.message[:8]) for v in found) == [
        ("production", "sha256:a"),
        ("production", "sha256:c"),
        ("staging", "sha256:a"),
    ]
    asked = [("a", "staging", 4), ("a", "production", 5), ("b", "production", 6)]
    for image, env, hour in [*asked, ("c", "production", 7)]:
        started = at(hour) - timedelta(minutes=5)
        with world.engine.connect() as conn:
            decision = evaluate(conn, "shop", f"{REPO}@sha256:{image}", env, PATH, now=started)
        flagged = [
            v.message
            for v in found
            if v.message.startswith(f"sha256:{image} ") and v.environment == env
        ]
        denied = [r.message for r in decision.reasons if r.policy == "untested-image"]
        assert flagged == denied
        assert denied or image == "b"


@pytest.mark.parametrize(
    ("index_revision", "platform_revision"),
    [("b", None), (None, "b")],
    ids=["commit-on-the-index", "commit-on-the-platform-manifest"],
)
def test_a_rebuilt_image_is_one_commit_for_its_index_and_platform_manifests(
    world: World, index_revision: str | None, platform_revision: str | None
) -> None:
    """The index and its platform manifests share one commit (analytics.promotion.revisions),
    whichever of them names it: the gate, asked with either digest, and the scan, over a
    deployment of either, find the same rebuild."""
    world.add(
        Image,
        [
            {"digest": "sha256:b3", "repository": REPO, "revision": index_revision},
            {
                "digest": "sha256:b3-arm64",
                "repository": REPO,
                "revision": platform_revision,
                "index_digest": "sha256:b3",
                "platform": "linux/arm64",
            },
        ],
    )
    for digest in ("sha256:b3", "sha256:b3-arm64"):
        reasons = gate(world, f"{REPO}@{digest}").reasons
        [rebuilt] = [r for r in reasons if r.policy == "rebuilt-image"]
        assert "promote sha256:b instead" in rebuilt.message
    world.deploy("b", at(5), "production", digest="sha256:b3-arm64")
    world.deploy("b", at(6), "production", digest="sha256:b3")
    with world.engine.connect() as conn:
        found = scan(conn, at(0), at(10), PATH, only=["rebuilt-image"])
    assert [v.message[:10] for v in found] == ["sha256:b3 "] * 2
    assert all("promote sha256:b instead" in v.message for v in found)


def test_non_release_ref_guards_the_last_environment_of_the_path_in_the_gate_and_the_scan(
    world: World,
) -> None:
    """An environment that ends the promotion path is production for non-release-ref, whatever
    its tier (here staging, tier `staging`, on a path that ends there)."""
    path = ["test", "staging"]
    world.deploy("b", at(4), "staging", digest="sha256:b", ref="feature/x")
    with world.engine.connect() as conn:
        decision = evaluate(
            conn, "shop", f"{REPO}@sha256:b", "staging", path, ref="feature/x", now=at(10)
        )
        found = scan(conn, at(0), at(10), path, only=["non-release-ref"])
    assert [r.policy for r in decision.reasons] == ["non-release-ref"]
    assert [(v.environment, v.policy) for v in found] == [("staging", "non-release-ref")]


def test_a_policy_s_severity_setting_holds_in_the_gate_as_in_the_scan(world: World) -> None:
    """`[policies.<id>] severity` raises or lowers a policy for the gate as for the scan: a
    lowered untested-image warns and allows; a raised moved-tag denies."""
    lowered = PoliciesSettings.model_validate({"untested-image": {"severity": "warn"}})
    decision = gate(world, f"{REPO}@sha256:c", policy=lowered)
    assert decision.decision == "allow"
    assert [(r.policy, r.severity) for r in decision.reasons] == [("untested-image", "warn")]
    world.deploy("c", at(5), "production", digest="sha256:c")  # skipped staging
    with world.engine.connect() as conn:
        found = scan(conn, at(0), at(10), PATH, lowered, only=["untested-image"])
    assert [(v.environment, v.severity) for v in found] == [("production", "warn")]
    world.add(
        ImageTag,
        [
            {"repository": REPO, "tag": "v1", "digest": "sha256:a", "seen_at": at(0)},
            {"repository": REPO, "tag": "v1", "digest": "sha256:b", "seen_at": at(1)},
        ],
    )
    raised = PoliciesSettings.model_validate({"moved-tag": {"severity": "error"}})
    decision = gate(world, f"{REPO}:v1", policy=raised)
    assert decision.decision == "deny"
    assert [(r.policy, r.severity) for r in decision.reasons] == [("moved-tag", "error")]
