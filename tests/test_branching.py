"""Branch strategy per repository: named hand-built cases, and the generated organisations, where
the classifier must find the generator's git-flow and GitLab-flow services and read every other
service's signals as the truth does (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from analytics import branching as b
from analytics.derive import derive
from analytics.frames import branch_strategies
from analytics.policies import scan
from analytics.scope import Scope
from analytics.views.delivery import slowest_changes
from sandbox import truth
from sandbox.flows import ENVIRONMENT_BRANCHES, GIT_FLOW, GITLAB_FLOW, TRUNK
from sandbox.generate import generate
from tests.analytics_world import T0, World, at
from tests.sandbox_load import load_org

TWO_WEEKS = Scope(T0, T0 + timedelta(days=13))  # Monday 9:00 to Sunday: ten working days
NOW = datetime(2025, 6, 2, tzinfo=UTC)


def feature(
    world: World,
    iid: int,
    first_h: float,
    merged_h: float,
    *,
    target: str = "main",
    source: str | None = None,
    author: str = "ana",
) -> None:
    """A merge request of one commit authored at `first_h`, merged at `merged_h`."""
    sha = world.commit(f"c{iid}", authored=at(first_h))
    world.merge_request(
        iid,
        [sha],
        created=at(first_h),
        merged=at(merged_h),
        source=source or f"feature/{iid}",
        target=target,
        author=author,
    )


def classified(world: World, scope: Scope = TWO_WEEKS) -> b.BranchStrategy:
    world.derive()  # the merge requests' first commits
    with world.engine.connect() as conn:
        (only,) = b.classify(conn, scope)
    return only


def test_short_branches_merged_daily_are_trunk_based(engine: Engine) -> None:
    world = World(engine)
    for day in range(10):  # one a working day, four hours from first commit to merge
        start = (day + day // 5 * 2) * 24 + 1
        feature(world, day + 1, start, start + 4, author=("ana", "ben")[day % 2])
    world.branch("feature/open", at(12 * 24))
    s = classified(world)
    assert (s.strategy, s.feature_merges, s.authors, s.active_branches) == (b.TRUNK_BASED, 10, 2, 1)
    assert s.median_branch_life_hours == 4 and s.merges_per_day == 1.0
    assert s.default_share == 1.0 and s.environment_branches == []


def test_week_long_branches_are_github_flow(engine: Engine) -> None:
    world = World(engine)
    for i in range(10):  # as often, but each branch lives a week
        feature(world, i + 1, i * 24, i * 24 + 7 * 24)
    s = classified(world, Scope(T0, T0 + timedelta(days=21)))
    assert s.strategy == b.GITHUB_FLOW and s.median_branch_life_hours == 168
    assert "median branch life 168 h" in s.decided_by


def test_too_many_active_branches_is_not_trunk_based(engine: Engine) -> None:
    world = World(engine)
    for day in range(10):
        start = (day + day // 5 * 2) * 24 + 1
        feature(world, day + 1, start, start + 4)
    for n in range(3):  # one author with three open branches
        world.branch(f"feature/open-{n}", at(12 * 24))
    s = classified(world)
    assert (s.active_branches, s.authors, s.strategy) == (3, 1, b.GITHUB_FLOW)


def test_feature_work_on_develop_with_releases_is_git_flow(engine: Engine) -> None:
    world = World(engine)
    for i in range(6):
        feature(world, i + 1, i * 24, i * 24 + 4, target="develop")
    feature(world, 7, 100, 102, source="release/1.1", target="main")
    feature(world, 8, 100, 103, source="release/1.1", target="develop")
    world.branch("release/1.1", at(100))
    s = classified(world)
    assert s.strategy == b.GIT_FLOW
    assert (s.integration_branch, s.integration_share, s.release_branches) == ("develop", 7 / 8, 1)
    assert s.default_share == 1 / 8 and s.environment_branches == []


def test_merges_from_main_into_environment_branches_are_gitlab_flow(engine: Engine) -> None:
    world = World(engine)
    for i in range(6):
        feature(world, i + 1, i * 24, i * 24 + 4)
    feature(world, 7, 30, 31, source="main", target="pre-production")
    feature(world, 8, 80, 81, source="main", target="pre-production")
    feature(world, 9, 90, 91, source="pre-production", target="production")
    feature(world, 10, 95, 96, source="pre-production", target="production")
    s = classified(world)
    assert s.strategy == b.GITLAB_FLOW
    assert s.environment_branches == ["pre-production", "production"]
    assert (s.feature_merges, s.merged, s.default_share) == (6, 10, 1.0)


def test_a_single_merge_into_another_branch_is_no_environment_branch(engine: Engine) -> None:
    world = World(engine)
    for day in range(10):
        start = (day + day // 5 * 2) * 24 + 1
        feature(world, day + 1, start, start + 4)
    feature(world, 11, 30, 31, source="main", target="production")  # below the threshold
    s = classified(world)
    assert s.environment_branches == [] and s.strategy == b.TRUNK_BASED


def test_no_merge_in_the_period_is_unknown(engine: Engine) -> None:
    world = World(engine)
    feature(world, 1, -100, -90)  # before the period
    s = classified(world)
    assert (s.strategy, s.merged, s.median_branch_life_hours) == (b.UNKNOWN, 0, None)


# -- the generated organisations --------------------------------------------------------------


def expected_strategy(signals: dict) -> str:
    """The generator's flow; for its trunk services, trunk-based or GitHub flow by their signals
    (DESIGN.md: few active branches, median branch life under about two days, daily merges)."""
    if signals["flow"] != TRUNK:
        return {GIT_FLOW: b.GIT_FLOW, GITLAB_FLOW: b.GITLAB_FLOW}[signals["flow"]]
    life = signals["median_branch_life_hours"]
    trunk = (
        life is not None
        and life <= b.TRUNK_MAX_BRANCH_LIFE_HOURS
        and signals["merges_per_day"] >= b.TRUNK_MIN_MERGES_PER_DAY
        and signals["active_branches"] <= b.TRUNK_MAX_ACTIVE_PER_AUTHOR * max(1, signals["authors"])
    )
    return b.TRUNK_BASED if trunk else b.GITHUB_FLOW


@pytest.mark.parametrize("size", ["small", "demo"])
def test_generated_strategies_match_the_generators_truth(engine: Engine, size: str) -> None:
    org = generate(1, size, NOW)
    load_org(engine, org)
    derive(engine)  # the merge requests' first commits
    scope = Scope(org.start, org.now)
    with engine.connect() as conn:
        found = {s.service: s for s in b.classify(conn, scope)}
    signals = truth.branch_signals(org, scope.since, scope.until)
    assert set(found) == set(signals) == {s.name for s in org.services}
    assert sorted(s["flow"] for s in signals.values() if s["flow"] != TRUNK) == [
        GIT_FLOW,
        GITLAB_FLOW,
    ]
    for name, want in signals.items():
        got = found[name]
        assert got.strategy == expected_strategy(want), (name, got.decided_by)
        assert got.feature_merges == want["feature_merges"], name
        assert got.median_branch_life_hours == pytest.approx(want["median_branch_life_hours"])
        assert got.merges_per_day == pytest.approx(want["merges_per_day"]), name
        assert (got.active_branches, got.authors) == (want["active_branches"], want["authors"])
        assert got.environment_branches == want["environment_branches"], name
    git_flow = next(s for s in found.values() if s.strategy == b.GIT_FLOW)
    assert git_flow.integration_branch == "develop" and git_flow.release_branches > 0
    gitlab_flow = next(s for s in found.values() if s.strategy == b.GITLAB_FLOW)
    assert gitlab_flow.environment_branches == sorted(ENVIRONMENT_BRANCHES.values())
    frame = branch_strategies(engine, scope)
    assert dict(zip(frame["service"], frame["strategy"], strict=True)) == {
        n: s.strategy for n, s in found.items()
    }


def test_non_release_ref_is_the_gitlab_flow_production_branch(engine: Engine) -> None:
    org = generate(1, "small", NOW)
    load_org(engine, org)
    with engine.connect() as conn:
        found = scan(
            conn,
            org.start - timedelta(days=60),
            org.now + timedelta(days=1),
            ["test", "staging", "production"],
            only=["non-release-ref"],
        )
    from_branch = {
        str(d.id)
        for s in org.services
        if s.flow == GITLAB_FLOW
        for d in s.deployments
        if d.environment.tier == "production"
        and d.status == "success"
        and d.ref == ENVIRONMENT_BRANCHES["production"]
    }
    assert from_branch and {v.subject.split(":", 1)[1] for v in found} == from_branch


def test_a_merge_request_of_the_same_commits_closed_later_is_not_the_one_named(
    engine: Engine,
) -> None:
    """GitLab allows a second merge request of a merged branch's commits, closed unmerged (a
    duplicate, a re-opened branch): both list the same commits. The slowest changes name the
    merged one (the closed one is read after it), and only the merged one is feature work."""
    world = World(engine)
    world.deploy(world.commit("c0", authored=at(0)), at(0.5))  # the chain's baseline
    sha = world.commit("c1", "c0", authored=at(1))
    for iid, state in ((1, "merged"), (2, "closed")):
        world.merge_request(
            iid, [sha], created=at(1), merged=at(5), source="feature/x", state=state
        )
    world.deploy(sha, at(6))
    world.derive()
    with engine.connect() as conn:
        (slowest,) = slowest_changes(conn, TWO_WEEKS)
    assert slowest["merge_request"].startswith("!1 ")
    s = classified(world)
    assert (s.merged, s.feature_merges, s.median_branch_life_hours) == (1, 1, 4)
