"""Small dimension rows (source, team, service, environment, repo) written and looked up by id."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, select, update

from warehouse.schema import (
    Base,
    Branch,
    CodeAnalysis,
    Commit,
    CommitGeneration,
    CommitParent,
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Environment,
    MergeRequest,
    MrCommit,
    Pipeline,
    Repo,
    RollupPipelineDay,
    RollupSuiteDay,
    Service,
    Source,
    table_of,
)
from warehouse.upsert import natural_key_columns, upsert
from warehouse.vocabulary import CanonicalEnvironment


def ensure_id(conn: Connection, table: Table | type[Base], row: Mapping[str, Any]) -> int:
    """Upsert one row on its natural key and return its id."""
    target = table_of(table)
    upsert(conn, target, [row])
    key = natural_key_columns(target)
    found = conn.execute(
        select(target.c.id).where(and_(*(target.c[k] == row[k] for k in key)))
    ).scalar_one()
    return int(found)


def ensure_source(conn: Connection, name: str, kind: str, base_url: str | None = None) -> int:
    """The id of source `name`, created or updated with its kind and base URL."""
    return ensure_id(conn, Source, {"name": name, "kind": kind, "base_url": base_url})


def ensure_environment(
    conn: Connection, env: CanonicalEnvironment, promotion_path: list[str], raw_name: str
) -> int:
    """The id of canonical environment `env`, adding `raw_name` to the names that map to it; its
    position is its place on the promotion path (a production region stands where production does).

    Takes no lock when the row already says all this (the usual case). Otherwise the
    read-modify-write of `raw_names` locks the row `FOR NO KEY UPDATE` on PostgreSQL: concurrent
    sync workers serialise on it, but the `FOR KEY SHARE` locks of foreign-key checks (another
    thread's deployment rows) do not wait for it, so the two cannot deadlock. On SQLite the caller
    holds the single writer's lock.
    """
    stage = env.path_name
    position = promotion_path.index(stage) if stage in promotion_path else None
    current = select(Environment.id, Environment.raw_names, Environment.tier, Environment.position)
    found = conn.execute(current.where(Environment.name == env.name)).first()
    if (
        found
        and raw_name in (found.raw_names or [])
        and (found.tier, found.position)
        == (
            env.tier,
            position,
        )
    ):
        return int(found.id)
    upsert(conn, Environment, [{"name": env.name, "tier": env.tier, "position": position}])
    locked = conn.execute(
        current.where(Environment.name == env.name).with_for_update(key_share=True)
    ).one()
    if raw_name not in (locked.raw_names or []):
        raw_names = sorted({*(locked.raw_names or []), raw_name})
        conn.execute(
            update(Environment).where(Environment.id == locked.id).values(raw_names=raw_names)
        )
    return int(locked.id)


def merge_repo(conn: Connection, *, shadow: int, into: int) -> int:
    """Fold repo `shadow` into repo `into`: what refers to it (pipelines, deployments, services,
    code analyses) refers to `into`, and `shadow` goes with the rows only it held (commits and
    parent links from build changelogs, branches, its pipeline and suite day rollups). A build
    server registers such a repo from a remote URL no code source knew yet; once one does, its
    builds belong to the code source's repo, as they would had it been known from the start.

    Moved pipelines and deployments are stamped changed and the deployments' derived links
    dropped, so the next derive re-derives their chains on `into`'s history and rolls their days
    up again. Returns the deployments moved (0 when `shadow` is gone already: another worker
    merged it)."""
    if conn.execute(select(Repo.id).where(Repo.id == shadow)).first() is None:
        return 0
    now = datetime.now(UTC)
    moved = list(
        conn.execute(
            select(Deployment.id)
            .outerjoin(Service, Service.id == Deployment.service_id)
            .where(func.coalesce(Deployment.repo_id, Service.repo_id) == shadow)
        ).scalars()
    )
    for start in range(0, len(moved), 500):
        part = moved[start : start + 500]
        conn.execute(delete(DeploymentChange).where(DeploymentChange.deployment_id.in_(part)))
        conn.execute(delete(DeploymentChain).where(DeploymentChain.deployment_id.in_(part)))
        conn.execute(update(Deployment).where(Deployment.id.in_(part)).values(changed_at=now))
    for fact in (Pipeline, Deployment):
        conn.execute(
            update(fact).where(fact.repo_id == shadow).values(repo_id=into, changed_at=now)
        )
    for dimension in (Service, CodeAnalysis):
        conn.execute(update(dimension).where(dimension.repo_id == shadow).values(repo_id=into))
    held_only = (
        RollupPipelineDay,
        RollupSuiteDay,
        MrCommit,
        MergeRequest,
        Branch,
        CommitGeneration,
        CommitParent,
        Commit,
    )
    for held in held_only:
        conn.execute(delete(held).where(held.repo_id == shadow))
    conn.execute(delete(Repo).where(Repo.id == shadow))
    return len(moved)
