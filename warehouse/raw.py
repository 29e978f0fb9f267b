"""The raw payload store: every payload a collector fetched, verbatim, so a fix can re-derive rows
without re-fetching. A payload a normaliser rejected is kept too, flagged, with the reason.

One row per object (source, stream, external id): a changed payload replaces the one before, so
the store holds the newest version of each object and older versions never accumulate. The body is
kept zlib-compressed (`warehouse.types.CompressedJson`; every read of `raw_payload.payload` goes
through its decoder, `warehouse.types.unpack_json`), the sha256 of its canonical JSON beside it for
change detection. `[warehouse] raw_retention_days` bounds how long the bodies of accepted payloads
are kept (`prune_raw`, at the end of every sync and by `cdmetrics db prune-raw`): a pruned row keeps
its key, hash and time, so "seen before" and change checks still work; rejected payloads are kept
whole (docs/OPERATIONS.md, disk)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, select, update

from warehouse.schema import RawPayload, table_of
from warehouse.upsert import upsert

PAGE_SIZE = 1_000
PRUNE_BATCH = 5_000  # rows per transaction when dropping bodies (short write locks)


def payload_hash(payload: Any) -> str:
    """sha256 of the canonical JSON form (sorted keys, no spaces) of `payload`."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Raw:
    """One payload as fetched: its stream, its id in the source, the JSON, and a rejection reason."""

    stream: str
    external_id: str
    payload: Any
    error: str | None = None


def store_raw(
    conn: Connection, source_id: int, items: list[Raw], fetched_at: datetime | None = None
) -> int:
    """Upsert payloads for one source; returns how many were new or changed."""
    fetched_at = fetched_at or datetime.now(UTC)
    rows = [
        {
            "source_id": source_id,
            "stream": item.stream,
            "external_id": item.external_id,
            "payload": item.payload,
            "hash": payload_hash(item.payload),
            "fetched_at": fetched_at,
            "rejected": item.error is not None,
            "error": item.error,
        }
        for item in items
    ]
    return upsert(conn, RawPayload, rows)


def iter_raw(
    conn: Connection, source_id: int, stream: str, rejected: bool | None = None
) -> Iterator[Row[Any]]:
    """Every stored payload of one stream, in id order, read a page at a time (keyset paging)."""
    table = table_of(RawPayload)
    last_id = 0
    while True:
        query = (
            select(table)
            .where(table.c.source_id == source_id, table.c.stream == stream, table.c.id > last_id)
            .order_by(table.c.id)
            .limit(PAGE_SIZE)
        )
        if rejected is not None:
            query = query.where(table.c.rejected == rejected)
        page = conn.execute(query).all()
        if not page:
            return
        yield from page
        last_id = page[-1].id


def prune_raw(engine: Engine, keep_days: int, now: datetime | None = None) -> int:
    """Drop the body of every accepted payload last written more than `keep_days` days before
    `now`, keeping its row (key, hash, time); rejected payloads are kept whole. Works in keyset
    batches of PRUNE_BATCH rows, one short transaction each. Returns how many bodies it dropped."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    table = table_of(RawPayload)
    last_id, pruned = 0, 0
    while True:
        with engine.begin() as conn:
            ids = list(
                conn.execute(
                    select(table.c.id)
                    .where(
                        table.c.id > last_id,
                        table.c.fetched_at < cutoff,
                        table.c.rejected.is_(False),
                        table.c.payload.is_not(None),
                    )
                    .order_by(table.c.id)
                    .limit(PRUNE_BATCH)
                ).scalars()
            )
            if not ids:
                return pruned
            conn.execute(update(table).where(table.c.id.in_(ids)).values(payload=None))
        pruned += len(ids)
        last_id = ids[-1]
