"""Merged MRs not yet in production read from `merge_request.released_at` (maintained by derive,
`analytics/releases.py`) equal the computation the select made before (kept here as
`reference_unreleased`), across scopes, after an incremental derive with one more day of data and
after a full one, on SQLite and PostgreSQL; named environments (computed set-based at query time)
equal it too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, update
from sqlalchemy.orm import aliased

from analytics import ancestry, dora, first_commits, releases, selects
from analytics.derive import derive
from analytics.rollups import Rollup
from analytics.rows import UnreleasedRow
from analytics.scope import Scope
from analytics.slices import slices
from sandbox.generate import generate
from tests.analytics_world import World, at
from tests.conftest import migrated_warehouse
from tests.sandbox_load import load_org
from warehouse.schema import (
    Deployment,
    DeploymentChain,
    DeploymentChange,
    DeriveState,
    Environment,
    MergeRequest,
    Service,
    Team,
)

NOW = datetime(2025, 6, 5, tzinfo=UTC)  # a Thursday: the last day has production deployments


def reference_unreleased(conn: Connection, scope: Scope) -> list[UnreleasedRow]:
    """`analytics.selects.unreleased` as it was before `released_at` (one correlated computation
    per MR at query time): the reference the stored and set-based reads must equal."""
    owner = aliased(Service)
    deployed = (
        select(func.min(DeploymentChain.finished_at))
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .join(Environment, Environment.id == DeploymentChain.environment_id)
        .join(owner, owner.id == DeploymentChain.service_id)
        .where(
            func.coalesce(Deployment.repo_id, owner.repo_id) == MergeRequest.repo_id,
            Environment.name == scope.environment
            if scope.environment is not None
            else DeploymentChain.is_production,
        )
    )
    sha = DeploymentChange.sha
    brought = deployed.join(
        DeploymentChange, DeploymentChange.deployment_id == DeploymentChain.deployment_id
    ).where(
        or_(
            sha == MergeRequest.squash_commit_sha,
            sha == MergeRequest.merge_commit_sha,
            and_(
                sha == MergeRequest.head_sha,
                MergeRequest.merge_commit_sha.is_(None),
                MergeRequest.squash_commit_sha.is_(None),
            ),
        )
    )
    history = deployed.where(
        DeploymentChain.baseline, DeploymentChain.finished_at >= MergeRequest.merged_at
    )
    brought_at, history_at = brought.scalar_subquery(), history.scalar_subquery()
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            MergeRequest.merged_at.label("at"),
            brought_at.label("brought_at"),
            history_at.label("history_at"),
        ).select_from(MergeRequest),
        on=Service.repo_id == MergeRequest.repo_id,
    ).where(
        MergeRequest.state == "merged",
        MergeRequest.merged_at < scope.until,
        or_(brought_at.is_(None), brought_at > scope.since),
        or_(history_at.is_(None), history_at > scope.since),
    )
    return [
        UnreleasedRow(
            r.service,
            r.team,
            r.at,
            min((t for t in (r.brought_at, r.history_at) if t), default=None),
        )
        for r in conn.execute(query)
    ]


def _sorted(rows: list[UnreleasedRow]) -> list[tuple[Any, ...]]:
    return sorted(((r.service, r.team, r.at, r.released_at) for r in rows), key=repr)


def _stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(MergeRequest.id, MergeRequest.released_at).order_by(MergeRequest.id)
            )
        ]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def derived(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, Any, dict[str, Any]]]:
    """The small organisation loaded to one day before its end and derived, then loaded to its
    end and derived again (incremental): (engine, org, what each derive did)."""
    with migrated_warehouse(request.param, Path(tmp_path_factory.mktemp("unreleased"))) as engine:
        org = generate(1, "small", NOW)
        load_org(engine, org, org.now - timedelta(days=1))
        first = derive(engine)
        load_org(engine, org)
        incremental = derive(engine)
        yield engine, org, {"first": first, "incremental": incremental}


def _scopes(conn: Connection, org: Any) -> dict[str, Scope]:
    team = conn.execute(select(Team.name).order_by(Team.name)).scalars().first()
    service = conn.execute(select(Service.name).order_by(Service.name)).scalars().first()
    environments = conn.execute(select(Environment.name, Environment.tier)).all()
    start, end = org.start - timedelta(days=60), org.now + timedelta(days=1)
    scopes = {
        "whole": Scope(start, end),
        "since 2000": Scope(datetime(2000, 1, 1, tzinfo=UTC), end),  # past selects.MAX_ENDS
        "default": Scope.default(now=org.now),
        "last day": Scope(org.now - timedelta(days=1), end),
        "team": Scope(start, end, teams=(team,)),
        "service": Scope(start, end, services=(service,)),
        "before the first deployment": Scope(start, org.start + timedelta(days=1)),
    }
    weeks = 0
    while (until := org.now - timedelta(weeks=weeks)) > org.start:  # week scopes, as `--by
        weeks += 1  # week` cuts them, and a growing end
        scopes[f"week ending {weeks} w ago"] = Scope(until - timedelta(weeks=1), until)
        scopes[f"history to {weeks} w ago"] = Scope(start, until)
    for name, tier in environments:
        scopes[f"{tier} {name}"] = Scope(start, end, environment=name)
        scopes[f"{tier} {name}, a month back"] = Scope(
            org.now - timedelta(days=60), org.now - timedelta(days=30), environment=name
        )
    return scopes


def _waiting(rows: list[UnreleasedRow], scope: Scope) -> dict[str, list[Any]]:
    """What `dora.merged_not_in_production` makes of `rows` over the scope and each of its weeks
    and months (`analytics.slices`)."""
    data = Rollup(scope, unreleased=rows)
    return {
        "scope": [dora.merged_not_in_production(data)],
        **{
            by: [dora.merged_not_in_production(s.data) for s in slices(data, by)]
            for by in ("week", "month")
        },
    }


def _assert_equal_in(conn: Connection, scope: Scope, name: str) -> int:
    """The scope's rows equal the reference's waiting at the end of the scope or of one of its
    weeks or months (the select reads no other: most wait at none; a scope of more ends, every
    one released in it), and give the same figures
    over the scope and each of its weeks and months as every row of the reference; returns the
    reference's rows."""
    got, want = selects.unreleased(conn, scope), reference_unreleased(conn, scope)
    ends = {scope.until} | {
        s.data.scope.until for by in ("week", "month") for s in slices(Rollup(scope), by)
    }
    waiting = [
        r
        for r in want
        if len(ends) > selects.MAX_ENDS  # a long scope: every MR released in it
        or any(r.at < e and (r.released_at is None or r.released_at >= e) for e in ends)
    ]
    assert _sorted(got) == _sorted(waiting), name
    assert _waiting(got, scope) == _waiting(want, scope), name
    return len(want)


def _assert_equal_to_the_reference(engine: Engine, org: Any) -> int:
    """Every scope's rows equal the reference's (`_assert_equal_in`); returns the reference's
    rows compared."""
    with engine.connect() as conn:
        return sum(
            _assert_equal_in(conn, scope, name) for name, scope in _scopes(conn, org).items()
        )


def test_released_at_reads_equal_the_old_computation_after_an_incremental_derive(
    derived: tuple[Engine, Any, dict[str, Any]],
) -> None:
    engine, org, runs = derived
    assert _assert_equal_to_the_reference(engine, org) > 0
    with engine.connect() as conn:
        whole = Scope(org.start - timedelta(days=60), org.now + timedelta(days=1))
        rows = selects.unreleased(conn, whole)
        # the organisation has MRs released in the period and MRs still waiting
        assert any(r.released_at is None for r in rows)
        assert any(r.released_at is not None for r in rows)
        states = {
            r.name: r.started_at
            for r in conn.execute(select(DeriveState.name, DeriveState.started_at))
        }
    assert set(states) == {"derive", releases.STATE, ancestry.STATE, first_commits.STATE}
    assert len(set(states.values())) == 1  # each recorded the derive's start
    assert runs["first"].released > 0
    # the last day's deployments released MRs waiting after the first derive
    assert runs["incremental"].released > 0


def test_an_incremental_derive_leaves_what_a_full_derive_leaves(
    derived: tuple[Engine, Any, dict[str, Any]],
) -> None:
    engine, org, _ = derived
    incremental = _stored(engine)
    assert derive(engine).released == 0  # nothing new: nothing moves
    full = derive(engine, full=True)
    assert full.released == 0 and _stored(engine) == incremental
    assert _assert_equal_to_the_reference(engine, org) > 0


def test_a_warehouse_without_released_progress_recomputes_every_mr(
    derived: tuple[Engine, Any, dict[str, Any]],
) -> None:
    """A warehouse migrated to 0025 after earlier derives: released_at empty, a `derive` row but
    no `released` one. The next (incremental) derive fills every MR."""
    engine, org, _ = derived
    before = _stored(engine)
    with engine.begin() as conn:
        conn.execute(update(MergeRequest).values(released_at=None))
        conn.execute(delete(DeriveState).where(DeriveState.name == releases.STATE))
    summary = derive(engine)
    assert summary.released == sum(at is not None for _, at in before)
    assert _stored(engine) == before
    assert _assert_equal_to_the_reference(engine, org) > 0


def _released(world: World) -> dict[int, datetime | None]:
    with world.engine.connect() as conn:
        return dict(conn.execute(select(MergeRequest.iid, MergeRequest.released_at)).all())


def _equal_to_the_reference(world: World) -> None:
    with world.engine.connect() as conn:
        for environment in (None, "production", "staging"):
            scope = Scope(at(-100), at(100), environment=environment)
            _assert_equal_in(conn, scope, str(environment))


def test_late_merge_requests_and_deployments_move_released_at_incrementally(
    engine: Engine,
) -> None:
    """a (baseline) <- b <- c <- d; production runs a, then c. Later derives see: an MR of b
    arriving late (released by c's deployment), a deployment of d (releases MR 4), and a late
    deployment of c slotted in before the one derived (MR 3's release moves earlier)."""
    w = World(engine)
    w.line("a", "b", "c", "d")
    w.merge_request(1, ["a"], created=at(-2), merged=at(-1), merge_sha="a")  # before history
    w.merge_request(3, ["c"], created=at(1), merged=at(2.5), squash_sha="c")
    w.merge_request(4, ["d"], created=at(2), merged=at(3.5), head="d")  # fast-forward
    w.deploy("a", at(1))
    w.deploy("c", at(10))
    w.deploy("d", at(5), "staging")
    w.derive()
    assert _released(w) == {1: at(1), 3: at(10), 4: None}
    w.merge_request(2, ["b"], created=at(0), merged=at(1.5), merge_sha="b")  # late
    w.deploy("d", at(20))
    assert w.derive().released == 2
    assert _released(w) == {1: at(1), 2: at(10), 3: at(10), 4: at(20)}
    _equal_to_the_reference(w)
    w.deploy("c", at(6))  # a deployment collected late, finished before the one derived
    assert w.derive().released == 2
    assert _released(w) == {1: at(1), 2: at(6), 3: at(6), 4: at(20)}
    _equal_to_the_reference(w)
    assert derive(engine, full=True).released == 0
