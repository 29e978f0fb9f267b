"""Views of the data sources: sync state per source and stream, errors, rejected payloads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select

from analytics.views._common import as_dicts
from warehouse.schema import (
    Incident,
    RawPayload,
    Source,
    SyncState,
    WorkItem,
)

TRACKER_KINDS = ("jira", "zentao", "pagerduty")


def sync_overview(conn: Connection) -> list[dict[str, Any]]:
    """Per source and stream: partitions, the last sync's start and finish, failed and running
    partitions, the requests, rows written and rejected payloads of each partition's last sync,
    and the raw payloads the warehouse keeps for the stream (`payloads`: what it has stored, which
    a sync that changed nothing leaves as it was)."""
    kept = (
        select(RawPayload.source_id, RawPayload.stream, func.count().label("payloads"))
        .group_by(RawPayload.source_id, RawPayload.stream)
        .subquery()
    )
    query = (
        select(
            Source.name.label("source"),
            Source.kind,
            SyncState.stream,
            func.count().label("partitions"),
            func.sum(case((SyncState.status == "failed", 1), else_=0)).label("failed"),
            func.sum(case((SyncState.status == "running", 1), else_=0)).label("running"),
            func.max(SyncState.started_at).label("last_started_at"),
            func.max(SyncState.finished_at).label("last_finished_at"),
            func.sum(SyncState.requests).label("requests"),
            func.sum(SyncState.rows).label("rows"),
            func.sum(SyncState.rejected).label("rejected"),
            func.coalesce(func.max(kept.c.payloads), 0).label("payloads"),
        )
        .join(Source, Source.id == SyncState.source_id)
        .outerjoin(
            kept, and_(kept.c.source_id == SyncState.source_id, kept.c.stream == SyncState.stream)
        )
        .group_by(Source.name, Source.kind, SyncState.stream)
        .order_by(Source.name, SyncState.stream)
    )
    return as_dicts(conn.execute(query))


def sync_errors(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Partitions whose last sync left an error, latest first, with the rows and rejected
    payloads that sync stored before it failed."""
    query = (
        select(
            Source.name.label("source"),
            SyncState.stream,
            SyncState.partition,
            SyncState.status,
            SyncState.finished_at,
            SyncState.rows,
            SyncState.rejected,
            SyncState.error,
        )
        .join(Source, Source.id == SyncState.source_id)
        .where(or_(SyncState.error.is_not(None), SyncState.status == "failed"))
        .order_by(SyncState.finished_at.is_(None), SyncState.finished_at.desc())
        .limit(limit)
    )
    return as_dicts(conn.execute(query))


def rejected_payloads(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The latest payloads a normaliser rejected, with the reason (kept verbatim in raw_payload)."""
    query = (
        select(
            Source.name.label("source"),
            RawPayload.stream,
            RawPayload.external_id,
            RawPayload.fetched_at,
            RawPayload.error,
        )
        .join(Source, Source.id == RawPayload.source_id)
        .where(RawPayload.rejected)
        .order_by(RawPayload.fetched_at.desc(), RawPayload.id.desc())
        .limit(limit)
    )
    return as_dicts(conn.execute(query))


def unmapped_tracker_rows(conn: Connection) -> list[dict[str, Any]]:
    """Per tracker source (Jira, Zentao, PagerDuty): the incidents and work items its service
    mapping matched to no service (kept, left out of every metric), with a few of the raw values
    the mapping read, so a missing `[[sources.<kind>.services]]` rule shows."""
    rows: dict[str, dict[str, Any]] = {}
    for table, column in ((Incident, "incidents"), (WorkItem, "work_items")):
        query = (
            select(
                Source.name.label("source"),
                Source.kind,
                func.count().label("n"),
                func.min(table.raw_service).label("example"),
            )
            .join(Source, Source.id == table.source_id)
            .where(table.service_id.is_(None), Source.kind.in_(TRACKER_KINDS))
            .group_by(Source.name, Source.kind)
        )
        for r in conn.execute(query):
            row = rows.setdefault(
                r.source,
                {
                    "source": r.source,
                    "kind": r.kind,
                    "incidents": 0,
                    "work_items": 0,
                    "example": None,
                },
            )
            row[column] = int(r.n)
            row["example"] = row["example"] or r.example
    return [rows[name] for name in sorted(rows)]
