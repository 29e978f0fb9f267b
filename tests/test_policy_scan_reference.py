"""The policy scan on the demo organisation, on SQLite and PostgreSQL: its image policies and the
unmerged branches equal the straightforward computation the scan made before issue #21 part 4
(tests/policy_reference.py), in the same order, for several periods and parameters; the whole
scan finds the same violations, in the same order, on both backends; and on a hand-made commit
graph the unmerged branches' own commits stop where the default branch reaches, through a merged
feature branch too, not only at its first-parent line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from analytics.derive import derive
from analytics.policies import scan
from analytics.unmerged import unmerged_branches
from config.settings import PoliciesSettings
from sandbox.generate import generate
from tests.conftest import migrated_warehouse
from tests.policy_reference import reference_rebuilt, reference_unmerged, reference_untested
from tests.sandbox_load import load_org
from warehouse.schema import Branch, Commit, CommitParent, Repo, Service, Source

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


def test_unmerged_branches_equal_the_whole_ancestry_walk(warehouses: dict[str, Engine]) -> None:
    for backend, engine in warehouses.items():
        with engine.connect() as conn:
            for days in (0, 7, 30, 200):
                cut = NOW - timedelta(days=days)
                got = unmerged_branches(conn, cut)
                assert got == reference_unmerged(conn, cut), (backend, days)
                assert days == 200 or got, (backend, days)


# A repository's graph, child: [parents, first parent first]. main's first-parent line is
# m0..m4; the feature f1-f2 was merged into it (m2); develop (protected) never was.
GRAPH = {
    "m0": [],
    "m1": ["m0"],
    "f1": ["m0"],
    "f2": ["f1"],
    "m2": ["m1", "f2"],
    "m3": ["m2"],
    "m4": ["m3"],
    "b1": ["f1"],  # wip/from-feature, forked from the merged feature: f1 is not its own
    "b2": ["b1"],
    "p1": ["m3"],  # wip/plain
    "d1": ["m1"],  # develop
    "d2": ["d1"],
    "e1": ["d2"],  # wip/from-develop: develop's commits are its own too
    "s1": ["m1"],  # wip/synced, main merged into it
    "s2": ["s1", "m3"],
}
BRANCHES = {
    "main": "m4",
    "develop": "d2",
    "wip/from-feature": "b2",
    "wip/plain": "p1",
    "wip/from-develop": "e1",
    "wip/synced": "s2",
    "merged-feature": "f2",  # reached by main through the merge: no own commit
    "behind-main": "m1",  # on main's line
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_own_commits_stop_where_the_default_branch_reaches(tmp_path: Path, backend: str) -> None:
    at = {sha: NOW - timedelta(days=60 - i) for i, sha in enumerate(GRAPH)}
    with migrated_warehouse(backend, tmp_path) as engine, engine.begin() as conn:
        source = conn.execute(insert(Source).values(name="git", kind="git")).inserted_primary_key[0]
        repo = conn.execute(
            insert(Repo).values(source_id=source, external_id="1", path="acme/app")
        ).inserted_primary_key[0]
        conn.execute(insert(Service).values(name="app", repo_id=repo))
        conn.execute(
            insert(Commit),
            [{"repo_id": repo, "sha": sha, "authored_at": at[sha]} for sha in GRAPH],
        )
        conn.execute(
            insert(CommitParent),
            [
                {"repo_id": repo, "sha": sha, "parent_sha": parent, "position": i}
                for sha, parents in GRAPH.items()
                for i, parent in enumerate(parents)
            ],
        )
        conn.execute(
            insert(Branch),
            [
                {
                    "repo_id": repo,
                    "name": name,
                    "head_sha": head,
                    "is_default": name == "main",
                    "protected": name in ("main", "develop"),
                }
                for name, head in BRANCHES.items()
            ],
        )
        got = {r.name: r.since for r in unmerged_branches(conn, NOW)}
        assert got == {r.name: r.since for r in reference_unmerged(conn, NOW)}
        assert got == {
            "wip/from-feature": at["b1"],
            "wip/plain": at["p1"],
            "wip/from-develop": at["d1"],
            "wip/synced": at["s1"],
        }
