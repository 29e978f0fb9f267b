"""The PagerDuty collector: the incidents of every mapped PagerDuty service, with their
acknowledge and resolve times and the change events that explicitly caused them (REST API v2 over
httpx, `collectors.tracker_client`).

    GET /services                                  mapping: a configured id or name -> the id
    per mapped service (a partition, leased):
      GET /incidents?service_ids[]=&since=&until=  windows of at most 6 months; offset paging
      GET /incidents/{id}/log_entries              new or changed incidents only
      GET /incidents/{id}/related_change_events    new or changed incidents only

Decisions where DESIGN.md is silent:
- Every incident of a mapped service is an incident of our service; services not in
  `[sources.pagerduty] services` are not read at all (their incidents cannot be attributed). A
  configured service PagerDuty does not know is an error of the sync naming it.
- Windows: `/incidents` filters on `created_at` in [since, until) and refuses ranges over 6 months,
  so a first sync (`[sync] history_days`) reads consecutive windows of at most 180 days. Offset
  paging stops at 10,000 (`offset + limit`); a window whose `total` is over that is split in two
  halves until each fits, so nothing is cut off.
- Cursor: the creation time of the oldest incident still open at the end of the sync (it can still
  be acknowledged or resolved), else the sync's start; the next sync re-reads from there minus
  `[sync] overlap`. PagerDuty incidents do not reopen once resolved, so nothing older changes.
- An incident whose `updated_at` and status equal what the warehouse holds is not read again
  (no log entries, no change events): a no-change sync costs the listing pages only.
- Times: acknowledged and resolved from the log entries (`pagerduty_normalize.incident_times`);
  explicit links from the related change events (`pagerduty_normalize.deployment_reference`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from collectors import pagerduty_normalize as norm
from collectors.payload import RejectedPayload, external_id_of
from collectors.refs import Refs
from collectors.sync import Batch, SyncRun
from collectors.tracker_client import TrackerCollector, TrackerError
from collectors.trackers import TrackerIncident, TrackerWriter
from config.settings import PagerDutySource
from warehouse.raw import Raw
from warehouse.references import ChangeRef
from warehouse.schema import Incident
from warehouse.sync_state import get_state

log = logging.getLogger(__name__)

STREAM = "incidents"
PAGE = 100
WINDOW = timedelta(days=180)
OFFSET_CAP = 10_000
STATUSES = {"triggered": "open", "acknowledged": "acknowledged", "resolved": "resolved"}


@dataclass(frozen=True)
class MappedService:
    """A PagerDuty service and the service of ours it maps to."""

    id: str
    name: str
    service: str


class PagerDutyCollector(TrackerCollector):
    """Syncs one `[[sources.pagerduty]]`; a partition is a mapped PagerDuty service."""

    kind = "pagerduty"
    unit = "services"
    offset_cap = OFFSET_CAP
    page = PAGE

    def __init__(self, source: PagerDutySource, options: Any) -> None:
        super().__init__(source, options)
        self.writer: TrackerWriter | None = None
        self.known: dict[str, tuple[datetime | None, str | None]] = {}

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Token token={os.environ.get(self.source.token_env, '')}",
            "Accept": "application/vnd.pagerduty+json;version=2",
        }

    def cannot_list(self, exc: Exception) -> str:
        return (
            f"{self.source.name}: cannot list the services of {self.base()}: {exc}; check the url "
            f"and the read-only API key in ${self.source.token_env}"
        )

    # -- partitions ---------------------------------------------------------------------------

    def partitions(self, run: SyncRun) -> list[MappedService]:
        listed: dict[str, str] = {}
        batch = Batch()
        offset = 0
        while True:
            answer = self.get("/services", {"limit": self.page, "offset": offset})
            items, more = norm.page_of(answer, "services")
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    listed[item["id"]] = str(item.get("name") or item.get("summary") or "")
                    batch.raws.append(Raw("services", item["id"], item))
            if not more or not items:
                break
            offset += len(items)
        run.write("services", batch)
        by_name = {name: sid for sid, name in listed.items()}
        found, unknown = [], []
        for key, service in self.source.services.items():
            sid = key if key in listed else by_name.get(key)
            if sid is None:
                unknown.append(key)
            else:
                found.append(MappedService(sid, listed[sid], service))
        if unknown:
            run.summary.errors.append(
                f"{self.source.name}: PagerDuty knows no service {', '.join(sorted(unknown))}; "
                f"check [sources.pagerduty] services (a service id or name)"
            )
        self.writer = TrackerWriter(self.engine, run.source_id, Refs.from_settings(self.settings))
        self.known = {} if self.full else self._known(run)
        return found

    def _known(self, run: SyncRun) -> dict[str, tuple[datetime | None, str | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Incident.external_id, Incident.updated_at, Incident.raw_status).where(
                    Incident.source_id == run.source_id
                )
            )
            return {ext: (updated, raw) for ext, updated, raw in rows}

    def lease_of(self, partition: MappedService) -> tuple[str, str]:
        return STREAM, partition.id

    def sync_partition(self, run: SyncRun, partition: MappedService) -> None:
        before = self.thread_requests()
        where = f"service {partition.name} ({partition.id})"
        try:
            run.attempt(
                STREAM,
                partition.id,
                where,
                lambda: self._service(run, partition, before),
                known=(TrackerError,),
                describe=self.describe(where, STREAM),
            )
        finally:
            run.count(STREAM, partitions=1, requests=self.thread_requests() - before)

    # -- one service ----------------------------------------------------------------------------

    def _service(self, run: SyncRun, service: MappedService, before: int) -> None:
        until = run.started_at
        since = self.options.since(run.started_at)
        if not self.full:
            with self.engine.connect() as conn:
                state = get_state(conn, run.source_id, STREAM, service.id)
            if state is not None and state.cursor:
                since = datetime.fromisoformat(state.cursor) - self.settings.sync.overlap
        oldest_open: datetime | None = None
        start = since
        while start < until:
            end = min(start + WINDOW, until)
            for window_open in self._window(run, service, start, end):
                oldest_open = window_open if oldest_open is None else min(oldest_open, window_open)
            start = end
        cursor = min(oldest_open or until, until)
        made = self.thread_requests() - before
        run.write(
            STREAM, Batch(), after=run.save_cursor(STREAM, service.id, cursor.isoformat(), made)
        )

    def _window(
        self, run: SyncRun, service: MappedService, since: datetime, until: datetime
    ) -> list[datetime]:
        """Read the incidents created in [since, until); returns the opening times of those still
        open. A window over the offset cap is split in halves."""
        params: dict[str, Any] = {
            "service_ids[]": service.id,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "sort_by": "created_at:asc",
            "limit": self.page,
            "total": "true",
        }
        first = self.get("/incidents", params | {"offset": 0})
        total = first.get("total")
        if (
            isinstance(total, int)
            and total > self.offset_cap
            and until - since > timedelta(seconds=2)
        ):
            middle = since + (until - since) / 2
            return self._window(run, service, since, middle) + self._window(
                run, service, middle, until
            )
        opened: list[datetime] = []
        answer, offset = first, 0
        while True:
            items, more = norm.page_of(answer, "incidents")
            batch = Batch()
            for item in items:
                open_at = self._incident(service, item, batch)
                if open_at is not None:
                    opened.append(open_at)
            run.write(STREAM, batch)
            offset += len(items)
            if not more or not items or offset + self.page > self.offset_cap:
                break
            answer = self.get("/incidents", params | {"offset": offset, "total": "false"})
        return opened

    def _incident(self, service: MappedService, item: Any, batch: Batch) -> datetime | None:
        """Add an incident's rows to `batch` (or keep it as rejected); returns its opening time
        when it is still open. An incident the warehouse holds unchanged costs no request."""
        try:
            row = norm.normalize_incident(item)
            ext = row["external_id"]
            if self.known.get(ext) != (row["updated_at"], row["raw_status"]):
                entries = self._log_entries(ext)
                answer = self.get(f"/incidents/{ext}/related_change_events")
                events = answer.get("change_events") or []
                incident = _tracked(service, row, entries, events)
                assert self.writer is not None
                self.writer.batch(incidents=[incident], batch=batch)
                detail = {"incident": item, "log_entries": entries, "related_change_events": events}
                batch.raws.append(Raw(STREAM, ext, detail))
        except RejectedPayload as exc:
            key = external_id_of(item)
            batch.raws.append(Raw(STREAM, key, item, error=str(exc)))
            batch.rejected += 1
            log.warning("%s: rejected incident %s: %s", self.source.name, key, exc)
            return None
        return row["opened_at"] if row["status"] != "resolved" else None

    def _log_entries(self, incident_id: str) -> list[Any]:
        entries: list[Any] = []
        offset = 0
        while True:
            answer = self.get(
                f"/incidents/{incident_id}/log_entries", {"limit": self.page, "offset": offset}
            )
            items, more = norm.page_of(answer, "log_entries")
            entries.extend(items)
            offset += len(items)
            if not more or not items:
                return entries


def _tracked(
    service: MappedService, row: dict[str, Any], entries: list[Any], events: list[Any]
) -> TrackerIncident:
    """The tracker incident of a listed incident, its times from the log entries and its explicit
    link from the related change events."""
    times = norm.incident_times(entries)
    ref = norm.deployment_reference(events, row["opened_at"])
    resolved = row["raw_status"] == "resolved"
    return TrackerIncident(
        external_id=row["external_id"],
        key=row["key"],
        title=row["title"],
        status=STATUSES.get(row["raw_status"], "open"),
        raw_status=row["raw_status"],
        opened_at=row["opened_at"],
        resolved_at=(times["resolved_at"] or row["resolved_at"]) if resolved else None,
        acknowledged_at=times["acknowledged_at"] or row["acknowledged_at"],
        updated_at=row["updated_at"],
        severity=row["severity"],
        priority=row["priority"],
        url=row["url"],
        mentions=tuple(row["mentions"]),
        service=service.service,
        raw_service=f"service={service.id}",
        links=() if ref is None else (ChangeRef(ref.kind, ref.value, ref.project or ""),),
    )
