"""The raw payload store: every payload a collector fetched, verbatim, so a fix can re-derive rows
without re-fetching. A payload a normaliser rejected is kept too, flagged, with the reason."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from warehouse.schema import RawPayload, table_of
from warehouse.upsert import upsert

PAGE_SIZE = 1_000


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
