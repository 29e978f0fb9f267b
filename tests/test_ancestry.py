"""The bounded commit-graph walks (`analytics.ancestry`) against plain whole-history walks, and the
commit generations they stand on, maintained incrementally as parent links arrive in any order
(late ones included), against a computation from scratch; on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from analytics.ancestry import CommitGraph, RanLast, mark_generations, refresh_generations
from tests.analytics_world import World
from warehouse.schema import CommitGeneration, CommitParent


def dag(rng: random.Random, size: int) -> dict[str, list[str]]:
    """A history like a busy repository's: a trunk, branches forking from recent or old commits,
    merges back, a second root (an unrelated history merged in) and a few octopus merges."""
    parents: dict[str, list[str]] = {"c0": [], "r0": []}
    names = ["c0"]
    for i in range(1, size):
        sha = f"c{i}"
        first = names[-1] if rng.random() < 0.6 else rng.choice(names[-20:])
        merged = []
        if rng.random() < 0.25:
            merged.append(rng.choice(names[: max(1, len(names) - rng.randint(1, 60))]))
        if rng.random() < 0.03:
            merged.append(rng.choice(names))
        if i == size // 2:
            merged.append("r0")
        parents[sha] = list(dict.fromkeys([first, *merged]))
        names.append(sha)
    return parents


def reachable(parents: dict[str, list[str]], sha: str) -> set[str]:
    seen, stack = set(), [sha]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(parents.get(current, ()))
    return seen


def generations(parents: dict[str, list[str]]) -> dict[str, int]:
    """From scratch, by definition, for the commits with parent links."""
    out: dict[str, int] = {}

    def of(sha: str) -> int:
        if sha not in out:
            out[sha] = 1 + max((of(p) for p in parents.get(sha, ())), default=0)
        return out[sha]

    for sha in parents:
        of(sha)
    return {s: g for s, g in out.items() if parents.get(s)}


def stored(engine: Engine, repo: int) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(CommitGeneration.sha, CommitGeneration.generation).where(
                CommitGeneration.repo_id == repo
            )
        ).all()
    return {sha: generation for sha, generation in rows}


def links(repo: int, parents: dict[str, list[str]], shas: list[str]) -> list[dict[str, object]]:
    return [
        {"repo_id": repo, "sha": sha, "parent_sha": parent}
        for sha in shas
        for parent in parents[sha]
    ]


def loaded(engine: Engine, rng: random.Random, size: int) -> tuple[World, dict[str, list[str]]]:
    """A repository holding a random history of `size` commits, its generations computed."""
    world = World(engine)
    parents = dag(rng, size)
    world.add(CommitParent, links(world.repo, parents, [s for s, ps in parents.items() if ps]))
    with engine.begin() as conn:
        refresh_generations(conn, None)
    return world, parents


def test_generations_follow_links_arriving_late_and_in_any_order(engine: Engine) -> None:
    world = World(engine)
    rng = random.Random(7)
    parents = dag(rng, 400)
    with_links = [s for s, ps in parents.items() if ps]
    rng.shuffle(with_links)  # children before parents, parents of old commits last
    batches = [with_links[:150], with_links[150:250], with_links[250:330], with_links[330:]]
    with engine.begin() as conn:
        refresh_generations(conn, None)  # nothing yet
        mark_generations(conn, datetime.now(UTC))
    seen: dict[str, list[str]] = {}
    for batch in batches:
        after = datetime.now(UTC) - timedelta(milliseconds=1)
        world.add(CommitParent, links(world.repo, parents, batch))
        seen.update({s: parents[s] for s in batch})
        with engine.begin() as conn:
            refresh_generations(conn, after)
            mark_generations(conn, after)
        assert stored(engine, world.repo) == generations(seen)
    with engine.begin() as conn:  # from scratch: the same
        refresh_generations(conn, None)
    assert stored(engine, world.repo) == generations(parents)


def test_bounded_walks_equal_whole_history_walks(engine: Engine) -> None:
    rng = random.Random(11)
    world, parents = loaded(engine, rng, 500)
    with engine.begin() as conn:
        shas = sorted(parents)
        pairs = [(rng.choice(shas), rng.choice(shas)) for _ in range(150)]
        pairs += [(f"c{i + rng.randint(1, 5)}", f"c{i}") for i in range(0, 480, 12)]  # near
        for tip, base in pairs:
            graph = CommitGraph(conn, world.repo)  # each pair read afresh: the frontier reads
            expected = reachable(parents, tip) - reachable(parents, base)
            found = graph.difference(tip, base)
            assert len(found) == len(set(found)) and set(found) == expected, (tip, base)
            assert graph.is_ancestor(base, tip) == (base in reachable(parents, tip))
            targets = rng.sample(shas, 8)
            assert graph.ancestors_among(targets, tip) == set(targets) & reachable(parents, tip)
        graph = CommitGraph(conn, world.repo)
        assert graph.difference("c10", None) == sorted(reachable(parents, "c10"))
        assert graph.difference("unknown", "c3") == ["unknown"]  # a commit without links


def test_history_ran_last_as_a_set_equals_bounded_walks(engine: Engine) -> None:
    """A chain's history held as a set (a full derive) and asked by bounded walks (incremental)
    say the same for every deployment: rollbacks, and the commits each brings."""
    rng = random.Random(5)
    world, parents = loaded(engine, rng, 300)
    with engine.begin() as conn:
        deployed = [f"c{min(299, 5 * i + rng.randint(-30, 3))}" for i in range(1, 60)]
        held = RanLast(CommitGraph(conn, world.repo), "c2", as_set=True)
        asked = RanLast(CommitGraph(conn, world.repo), "c2", as_set=False)
        rollbacks = 0
        for sha in deployed:
            ran = reachable(parents, held.base or "")
            assert held.holds(sha) == asked.holds(sha) == (sha in ran), sha
            if sha in ran:
                rollbacks += 1
                held.move(sha)
                asked.move(sha)
                continue
            brought = held.bring(sha)
            assert set(brought) == set(asked.bring(sha)) == reachable(parents, sha) - ran
        assert rollbacks  # the sequence went back now and then
