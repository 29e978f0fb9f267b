"""One write path: batched, idempotent `insert ... on conflict (natural key) do update`; and
derive's by-id writes of the values it maintains (`set_by_id`).

An existing row is only rewritten when a compared column differs (`IS DISTINCT FROM`), so re-running
a sync writes nothing and the returned count says how many rows were inserted or really changed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, UniqueConstraint, bindparam, or_, update
from sqlalchemy.dialects import postgresql, sqlite

from warehouse.schema import Base, table_of

BATCH_SIZE = 5_000


class UnsupportedDialectError(RuntimeError):
    """The warehouse URL names a database cdmetrics does not write to."""


def natural_key_columns(table: Table) -> tuple[str, ...]:
    """The column names of `table`'s natural key (the unique constraint marked `natural_key`)."""
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and constraint.info.get("natural_key"):
            return tuple(c.name for c in constraint.columns)
    raise LookupError(f"table {table.name} declares no natural key")


def _insert_for(dialect: str, table: Table) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise UnsupportedDialectError(
        f"cannot write to a {dialect} warehouse; use sqlite:/// or postgresql+psycopg://"
    )


def _statement(conn: Connection, table: Table, columns: frozenset[str]) -> Any:
    return _cached_statement(conn.dialect.name, table, columns)


@functools.lru_cache(maxsize=512)
def _cached_statement(dialect: str, table: Table, columns: frozenset[str]) -> Any:
    """The upsert statement for a table and a set of columns (built once per process)."""
    key = natural_key_columns(table)
    stmt = _insert_for(dialect, table)
    updated = [
        c
        for c in table.columns
        if c.name in columns and c.name not in key and not c.primary_key and not c.info.get("kept")
    ]
    compared = [c for c in updated if not c.info.get("volatile")]
    if not compared:  # nothing that could make an existing row count as changed
        return stmt.on_conflict_do_nothing(index_elements=list(key))
    changed = or_(*(c.is_distinct_from(stmt.excluded[c.name]) for c in compared))
    return stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={c.name: stmt.excluded[c.name] for c in updated},
        where=changed,
    )


def upsert(
    conn: Connection,
    table: Table | type[Base],
    rows: Iterable[Mapping[str, Any]],
    batch_size: int = BATCH_SIZE,
) -> int:
    """Insert `rows` into `table`, updating existing rows on the natural key.

    Rows may carry different column sets (each set is written with its own statement; a column a
    row leaves out is left as it is). Returns the number of rows inserted or actually changed.
    """
    target = table_of(table)
    key = natural_key_columns(target)
    stamps = [c.name for c in target.columns if c.info.get("changed_at")]
    if stamps:  # when the row last really changed (schema.changed)
        now = datetime.now(UTC)
        rows = ({**row, **dict.fromkeys(stamps, now)} for row in rows)
    groups: dict[frozenset[str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    written = 0
    for columns, group in groups.items():
        missing = [k for k in key if k not in columns]
        if missing:
            raise ValueError(f"rows for {target.name} lack natural-key column(s) {missing}")
        stmt = _statement(conn, target, columns)
        for start in range(0, len(group), batch_size):
            result = conn.execute(
                stmt,
                list(group[start : start + batch_size]),
                # psycopg reports an executemany's row count only when asked to keep it
                execution_options={"preserve_rowcount": True},
            )
            written += max(result.rowcount, 0)
    return written


def set_by_id(
    conn: Connection, table: Table | type[Base], column: str, values: Iterable[tuple[int, Any]]
) -> int:
    """Write `column` of `table`'s rows by id from (id, value) pairs, in one statement run for
    each (derived values of the few rows whose value moved; no `changed_at` stamp: derived data
    does not make a row new to the next derive). Returns how many pairs it wrote."""
    target = table_of(table)
    pairs = [{"set_row": i, "set_value": v} for i, v in values]
    if pairs:
        conn.execute(
            update(target)
            .where(target.c.id == bindparam("set_row"))
            .values({column: bindparam("set_value")}),
            pairs,
        )
    return len(pairs)
