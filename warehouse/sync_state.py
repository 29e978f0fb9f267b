"""Sync state per (source, stream, partition): the cursor a collector resumes from, its last run,
and a lease so that several sync workers sharing one PostgreSQL warehouse split the partitions.

The cursor is written in the same transaction as the rows it covers (a crash leaves the old cursor
with the old rows; the next run re-reads from there and the upserts absorb the overlap).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, or_, select, update

from warehouse.schema import SyncState, table_of
from warehouse.upsert import upsert

STATE = table_of(SyncState)


@dataclass(frozen=True)
class State:
    """The stored state of one partition of one stream."""

    cursor: str | None
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


def get_state(conn: Connection, source_id: int, stream: str, partition: str = "") -> State | None:
    """The stored state, or None when this partition never synced."""
    row = conn.execute(
        select(
            STATE.c.cursor, STATE.c.status, STATE.c.started_at, STATE.c.finished_at, STATE.c.error
        )
        .where(STATE.c.source_id == source_id, STATE.c.stream == stream)
        .where(STATE.c.partition == partition)
    ).first()
    return State(*row) if row else None


def save_state(
    conn: Connection,
    source_id: int,
    stream: str,
    partition: str = "",
    **fields: object,
) -> None:
    """Write fields (cursor, status, started_at, finished_at, error, requests, rows, rejected)."""
    unknown = set(fields) - set(STATE.c.keys())
    if unknown:
        raise ValueError(f"sync_state has no column(s) {sorted(unknown)}")
    upsert(
        conn, STATE, [{"source_id": source_id, "stream": stream, "partition": partition, **fields}]
    )


def claim(
    conn: Connection,
    source_id: int,
    stream: str,
    partition: str,
    owner: str,
    lease: timedelta,
    now: datetime | None = None,
) -> bool:
    """Take the lease on a partition unless another live worker holds it; True when taken.

    On PostgreSQL the row is locked with `FOR UPDATE SKIP LOCKED`, so two workers racing for the
    same partition never both win; an expired lease (a crashed worker) can be taken over.
    """
    now = now or datetime.now(UTC)
    save_state_if_missing(conn, source_id, stream, partition)
    query = (
        select(STATE.c.id)
        .where(STATE.c.source_id == source_id, STATE.c.stream == stream)
        .where(STATE.c.partition == partition)
        .where(
            or_(
                STATE.c.lease_owner.is_(None),
                STATE.c.lease_owner == owner,
                STATE.c.lease_expires_at < now,
            )
        )
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row_id = conn.execute(query).scalar()
    if row_id is None:
        return False
    conn.execute(
        update(STATE)
        .where(STATE.c.id == row_id)
        .values(lease_owner=owner, lease_expires_at=now + lease)
    )
    return True


def release(conn: Connection, source_id: int, stream: str, partition: str, owner: str) -> None:
    """Give the lease back (only the owner can)."""
    conn.execute(
        update(STATE)
        .where(STATE.c.source_id == source_id, STATE.c.stream == stream)
        .where(STATE.c.partition == partition, STATE.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )


def save_state_if_missing(conn: Connection, source_id: int, stream: str, partition: str) -> None:
    """Create the partition's row (status `never`) if it does not exist yet."""
    upsert(conn, STATE, [{"source_id": source_id, "stream": stream, "partition": partition}])
