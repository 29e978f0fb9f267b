"""Small dimension rows (source, team, service, environment, repo) written and looked up by id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, and_, select, update

from warehouse.schema import Base, Environment, Source, table_of
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
