"""The PagerDuty collector: the incidents of every mapped PagerDuty service, with their
acknowledge and resolve times and the change events that explicitly caused them (REST API v2 over
httpx, `collectors.tracker_client`).

    GET /services                                  mapping: a configured id or name -> the id
    per mapped service (a partition, leased):
      GET /incidents?service_ids[]=&since=&until=  windows of at most 6 months; offset paging
      GET /incidents/{id}/log_entries              new or changed incidents only
      GET /incidents/{id}/related_change_events    new or changed incidents only
      GET /incidents/{id}                          open ones it no longer lists (reassigned)

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
- An incident whose `updated_at`, status and service equal what the warehouse holds is not read
  again (no log entries, no change events): a no-change sync costs the listing pages only.
- Reassigned incidents (PagerDuty moves an open incident to another service): `/incidents`
  lists an incident under its service now, by creation, so after a move neither the old
  service's listing nor the new one's window (its cursor may be past the creation) shows it. An
  incident the warehouse holds open under a partition's service that the partition's listing did
  not show is read by id (`GET /incidents/{id}`) and written under the service it is in now: its
  mapping, or no service when that PagerDuty service is not mapped (kept, counted as unmapped).
  A normal sync lists every open incident it holds (the cursor is the oldest open one), so this
  costs a request only per moved incident; one moved in and still open is listed from its new
  service's next cursor on. PagerDuty moves open incidents only, so a resolved one stays put.
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
    service: str | None  # None: a PagerDuty service no mapping names (an incident moved there)


class PagerDutyCollector(TrackerCollector):
    """Syncs one `[[sources.pagerduty]]`; a partition is a mapped PagerDuty service."""

    kind = "pagerduty"
    unit = "services"
    offset_cap = OFFSET_CAP
    page = PAGE

    def __init__(self, source: PagerDutySource, options: Any) -> None:
        super().__init__(source, options)
        self.writer: TrackerWriter | None = None
        self.known: dict[str, tuple[datetime | None, str | None, str | None]] = {}
        self.mapped: dict[str, MappedService] = {}

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
        self.mapped = {m.id: m for m in found}
        return found

    def _known(self, run: SyncRun) -> dict[str, tuple[datetime | None, str | None, str | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    Incident.external_id,
                    Incident.updated_at,
                    Incident.raw_status,
                    Incident.raw_service,
                ).where(Incident.source_id == run.source_id)
            )
            return {ext: (updated, raw, service) for ext, updated, raw, service in rows}

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
        opened: list[datetime] = []
        listed: set[str] = set()
        start = since
        while start < until:
            end = min(start + WINDOW, until)
            opened.extend(self._window(run, service, start, end, listed))
            start = end
        opened.extend(self._unlisted(run, service, listed))
        cursor = min([*opened, until])
        made = self.thread_requests() - before
        run.write(
            STREAM, Batch(), after=run.save_cursor(STREAM, service.id, cursor.isoformat(), made)
        )

    def _window(
        self,
        run: SyncRun,
        service: MappedService,
        since: datetime,
        until: datetime,
        listed: set[str],
    ) -> list[datetime]:
        """Read the incidents created in [since, until) (their ids added to `listed`); returns the
        opening times of those still open. A window over the offset cap is split in halves."""
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
            return self._window(run, service, since, middle, listed) + self._window(
                run, service, middle, until, listed
            )
        opened: list[datetime] = []
        answer, offset = first, 0
        while True:
            items, more = norm.page_of(answer, "incidents")
            batch = Batch()
            for item in items:
                listed.add(external_id_of(item))
                open_at = self._incident(service, item, batch)
                if open_at is not None:
                    opened.append(open_at)
            run.write(STREAM, batch)
            offset += len(items)
            if not more or not items or offset + self.page > self.offset_cap:
                break
            answer = self.get("/incidents", params | {"offset": offset, "total": "false"})
        return opened

    def _unlisted(self, run: SyncRun, service: MappedService, listed: set[str]) -> list[datetime]:
        """The open incidents the warehouse files under `service` that its listing did not show
        (reassigned to another service: module docstring), read by id and written under the
        service they are in now; returns the opening times of those open in `service`."""
        with self.engine.connect() as conn:
            held = conn.execute(
                select(Incident.external_id).where(
                    Incident.source_id == run.source_id,
                    Incident.raw_service == raw_service(service.id),
                    Incident.status != "resolved",
                )
            ).scalars()
            missing = sorted(set(held) - listed)
        opened: list[datetime] = []
        batch = Batch()
        for ext in missing:
            try:
                item = self.get(f"/incidents/{ext}").get("incident")
            except TrackerError as exc:
                if exc.status != 404:
                    raise
                log.warning("%s: incident %s is gone; kept as it was", self.source.name, ext)
                continue
            now = _service_of(item)
            if now is None:  # malformed: rejected and kept by `_incident`
                self._incident(service, item, batch)
                continue
            moved_to = self.mapped.get(now) or MappedService(now, now, None)
            open_at = self._incident(moved_to, item, batch)
            if open_at is not None and moved_to.id == service.id:
                opened.append(open_at)
            log.info("%s: incident %s moved to service %s", self.source.name, ext, now)
        run.write(STREAM, batch)
        return opened

    def _incident(self, service: MappedService, item: Any, batch: Batch) -> datetime | None:
        """Add an incident's rows to `batch` (or keep it as rejected); returns its opening time
        when it is still open. An incident the warehouse holds unchanged costs no request."""
        try:
            row = norm.normalize_incident(item)
            ext = row["external_id"]
            stored = (row["updated_at"], row["raw_status"], raw_service(row["service_ref"]))
            if self.known.get(ext) != stored:
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


def raw_service(service_id: str) -> str:
    """An incident's `raw_service`: the PagerDuty service the mapping read."""
    return f"service={service_id}"


def _service_of(item: Any) -> str | None:
    """The id of the service an incident payload names, None when it names none."""
    service = item.get("service") if isinstance(item, dict) else None
    ident = service.get("id") if isinstance(service, dict) else None
    return ident if isinstance(ident, str) and ident else None


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
        raw_service=raw_service(service.id),
        links=() if ref is None else (ChangeRef(ref.kind, ref.value, ref.project or ""),),
    )
