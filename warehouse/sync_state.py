"""Sync state per (source, stream, partition): the cursor a collector resumes from, its last run,
and a lease so that several sync workers sharing one PostgreSQL warehouse split the partitions.

The cursor is written in the same transaction as the rows it covers (a crash leaves the old cursor
with the old rows; the next run re-reads from there and the upserts absorb the overlap).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, case, func, or_, select, update

from warehouse.schema import SyncState, table_of
from warehouse.upsert import upsert

STATE = table_of(SyncState)
DERIVE_STREAM = "derive"  # a source's row recording when derive last ran after its sync


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


def derived_after_last_finish(conn: Connection, source_ids: list[int]) -> bool:
    """True when, for every one of these sources, a derive started after the last finish of any
    of its partitions (another worker derived this round already); False when any source has a
    partition finished since its last derive, or was never derived."""
    if not source_ids:
        return False
    is_derive = STATE.c.stream == DERIVE_STREAM
    rows = conn.execute(
        select(
            STATE.c.source_id,
            func.max(case((is_derive, STATE.c.started_at))),
            func.max(case((~is_derive, STATE.c.finished_at))),
        )
        .where(STATE.c.source_id.in_(source_ids))
        .group_by(STATE.c.source_id)
    ).all()
    derived = {source: (started, finished) for source, started, finished in rows}
    return all(
        source in derived
        and derived[source][0] is not None
        and (derived[source][1] is None or derived[source][1] <= derived[source][0])
        for source in source_ids
    )


def mark_derived(
    conn: Connection, source_ids: list[int], started_at: datetime, finished_at: datetime
) -> None:
    """Record a derive that covered these sources' partitions finished before `started_at`."""
    for source_id in source_ids:
        save_state(
            conn,
            source_id,
            DERIVE_STREAM,
            status="ok",
            started_at=started_at,
            finished_at=finished_at,
        )
