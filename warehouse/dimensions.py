"""Small dimension rows (source, team, service, environment, repo) written and looked up by id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, and_, select

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

    The read-modify-write of `raw_names` locks the row on PostgreSQL (concurrent sync workers);
    on SQLite the caller holds the single writer's lock.
    """
    existing = conn.execute(
        select(Environment.raw_names).where(Environment.name == env.name).with_for_update()
    ).scalar()
    raw_names = sorted(set(existing or []) | {raw_name})
    stage = env.path_name
    position = promotion_path.index(stage) if stage in promotion_path else None
    row = {"name": env.name, "tier": env.tier, "position": position, "raw_names": raw_names}
    return ensure_id(conn, Environment, row)
