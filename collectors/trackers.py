"""What every tracker (Jira, Zentao, PagerDuty) writes, written one way: incidents, work items,
their status transitions and their links to changes.

A tracker's normaliser (`*_normalize.py`) turns a payload into a `TrackerIncident` or a
`TrackerWorkItem`, with the service its mapping rules chose (`map_service`) and the raw value the
mapping read; `TrackerWriter.batch` turns them into the rows of one `Batch` (`collectors.sync`),
written with the payloads and the stream's cursor in one transaction.

Decisions where DESIGN.md is silent:
- A row no mapping rule matches is kept with no service (`service_id` NULL) and its raw value;
  metrics leave it out (it belongs to no service), the Data sources page counts it
  (`analytics.views.sources.unmapped_tracker_rows`) and the sync logs how many; nothing guesses a
  service from a name.
- A mapped service the warehouse does not know yet is created (team from `[[teams]]`), as a
  Jenkins deploy job's service is.
- Work item times: `started_at` is the first transition out of the todo category; `resolved_at`
  the last transition into done while the item is done now, else None: a reopened bug is open
  again. An item created done (no transition) is resolved when created.
- Incident links: the first deployment, pipeline, commit and merge request the tracker names are
  kept as given (`linked_*`); derive resolves them to a production deployment of the incident's
  service, and a resolved link wins over the time window (docs/METRICS.md).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from collectors.refs import Refs, ServiceRef
from collectors.sync import Batch
from config.settings import TrackerServiceRule
from warehouse.references import ChangeRef, first_of
from warehouse.schema import Incident, Service, WorkItem, WorkItemLink, WorkItemTransition

log = logging.getLogger(__name__)

TODO, IN_PROGRESS, DONE = "todo", "in_progress", "done"
CATEGORIES = (TODO, IN_PROGRESS, DONE)
INCIDENT_STATUSES = ("open", "acknowledged", "resolved", "closed")
WORK_ITEM_KINDS = ("requirement", "bug", "task")


@dataclass(frozen=True)
class Transition:
    """One status change from a tracker's history."""

    external_id: str
    at: datetime
    from_status: str | None
    to_status: str | None
    from_category: str | None = None
    to_category: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class TrackerWorkItem:
    """A requirement, bug or task as a tracker's normaliser reads it."""

    external_id: str
    key: str
    kind: str  # requirement | bug | task
    raw_kind: str | None
    title: str | None
    status: str | None
    status_category: str  # todo | in_progress | done
    created_at: datetime
    updated_at: datetime | None = None
    closed_at: datetime | None = None
    priority: str | None = None
    url: str | None = None
    service: str | None = None  # the mapped service; None: no rule matched
    raw_service: str | None = None
    transitions: tuple[Transition, ...] = ()
    links: tuple[ChangeRef, ...] = ()  # the tracker's own links to commits and MRs


@dataclass(frozen=True)
class TrackerIncident:
    """An incident as a tracker's normaliser reads it."""

    external_id: str
    key: str | None
    title: str | None
    status: str  # open | acknowledged | resolved | closed
    raw_status: str | None
    opened_at: datetime
    resolved_at: datetime | None = None
    acknowledged_at: datetime | None = None
    closed_at: datetime | None = None
    updated_at: datetime | None = None
    severity: str | None = None
    priority: str | None = None
    url: str | None = None
    service: str | None = None
    raw_service: str | None = None
    transitions: tuple[Transition, ...] = ()
    links: tuple[ChangeRef, ...] = ()  # explicit links to the change that caused it
    mentions: tuple[str, ...] = ()  # other records of it its text names (`incident_mentions`)


def map_service(
    rules: Sequence[TrackerServiceRule], values: Mapping[str, Collection[str]]
) -> tuple[str | None, str | None]:
    """(service, raw) by the first rule whose every given key is among `values[key]` (a rule
    with `field` and `value` matches when `value` is among `values["field:<field>"]`); raw is
    what the matching rule read (`project=PAY,component=api`), or, unmapped, the first key's
    values. Keys a rule leaves out match anything; a rule giving none matches nothing."""
    for rule in rules:
        wanted = {
            k: str(v)
            for k, v in rule.model_dump(exclude={"service", "field", "value"}).items()
            if v is not None
        }
        field = getattr(rule, "field", None)
        if field:
            wanted[f"field:{field}"] = str(getattr(rule, "value", None))
        if wanted and all(v in values.get(k, ()) for k, v in wanted.items()):
            return rule.service, ",".join(f"{k}={v}" for k, v in wanted.items())
    first = next(iter(values.items()), None)
    raw = f"{first[0]}={','.join(sorted(first[1]))}" if first and first[1] else None
    return None, raw


def item_times(
    created_at: datetime, category: str, transitions: Iterable[Transition]
) -> tuple[datetime | None, datetime | None]:
    """(started_at, resolved_at) of a work item from its transitions (module docstring)."""
    ordered = sorted(transitions, key=lambda t: (t.at, t.external_id))
    started = next((t.at for t in ordered if t.to_category not in (None, TODO)), None)
    if category != DONE:
        return started, None
    into_done = [t.at for t in ordered if t.to_category == DONE]
    resolved = into_done[-1] if into_done else created_at
    return started or resolved, resolved


class TrackerWriter:
    """Turns normalised incidents and work items of one tracker source into rows."""

    def __init__(self, engine: Engine, source_id: int, refs: Refs) -> None:
        self.engine, self.source_id, self.refs = engine, source_id, refs
        self._services: dict[str, tuple[int, int | None]] = {}
        self.unmapped = 0

    def service(self, name: str | None) -> tuple[int | None, int | None]:
        """(service id, team id) of a mapped service, created when new; (None, None) unmapped."""
        if name is None:
            return None, None
        if name not in self._services:
            pending: dict[Any, int] = {}
            with self.engine.begin() as conn:
                service_id = self.refs.id(conn, ServiceRef(name), pending)
                team_id = conn.execute(
                    select(Service.team_id).where(Service.id == service_id)
                ).scalar_one()
            self.refs.remember(pending)
            self._services[name] = (service_id, team_id)
        return self._services[name]

    def batch(
        self,
        incidents: Iterable[TrackerIncident] = (),
        items: Iterable[TrackerWorkItem] = (),
        batch: Batch | None = None,
    ) -> Batch:
        """`batch` (or a new one) with the rows of `incidents` and `items`: incident, work_item,
        work_item_transition and work_item_link rows."""
        batch = batch if batch is not None else Batch()  # an empty Batch is falsy (len 0)
        for incident in incidents:
            batch.add(Incident, [self.incident_row(incident)])
            batch.add(WorkItemTransition, self.transition_rows(incident.external_id, incident))
        for item in items:
            batch.add(WorkItem, [self.work_item_row(item)])
            batch.add(WorkItemTransition, self.transition_rows(item.external_id, item))
            batch.add(WorkItemLink, self.link_rows(item))
        return batch

    def incident_row(self, i: TrackerIncident) -> dict[str, Any]:
        """The `incident` row of a tracker incident."""
        service_id, _ = self.service(i.service)
        self.unmapped += service_id is None
        refs = list(i.links)
        mr = first_of(refs, "merge_request")
        return {
            "source_id": self.source_id,
            "external_id": i.external_id,
            "service_id": service_id,
            "title": i.title,
            "severity": i.severity,
            "opened_at": i.opened_at,
            "resolved_at": i.resolved_at,
            "url": i.url,
            "key": i.key,
            "status": i.status,
            "raw_status": i.raw_status,
            "priority": i.priority,
            "acknowledged_at": i.acknowledged_at,
            "closed_at": i.closed_at,
            "updated_at": i.updated_at,
            "raw_service": i.raw_service,
            "mentions": " ".join(i.mentions) or None,
            "linked_deployment": _value(first_of(refs, "deployment")),
            "linked_pipeline": _value(first_of(refs, "pipeline")),
            "linked_sha": _value(first_of(refs, "commit")),
            "linked_merge_request": (
                None if mr is None else f"{mr.repo}!{mr.value}" if mr.repo else mr.value
            ),
        }

    def work_item_row(self, item: TrackerWorkItem) -> dict[str, Any]:
        """The `work_item` row of a tracker work item."""
        service_id, team_id = self.service(item.service)
        self.unmapped += service_id is None
        started, resolved = item_times(item.created_at, item.status_category, item.transitions)
        return {
            "source_id": self.source_id,
            "external_id": item.external_id,
            "key": item.key,
            "kind": item.kind,
            "raw_kind": item.raw_kind,
            "title": item.title,
            "status": item.status,
            "status_category": item.status_category,
            "priority": item.priority,
            "service_id": service_id,
            "team_id": team_id,
            "raw_service": item.raw_service,
            "created_at": item.created_at,
            "started_at": started,
            "resolved_at": resolved,
            "closed_at": item.closed_at,
            "updated_at": item.updated_at,
            "url": item.url,
        }

    def transition_rows(
        self, item: str, of: TrackerWorkItem | TrackerIncident
    ) -> list[dict[str, Any]]:
        """The `work_item_transition` rows of an item's (or incident's) history."""
        return [
            {
                "source_id": self.source_id,
                "item": item,
                "external_id": t.external_id,
                "at": t.at,
                "from_status": t.from_status,
                "to_status": t.to_status,
                "from_category": t.from_category,
                "to_category": t.to_category,
                "author": t.author,
            }
            for t in of.transitions
        ]

    def link_rows(self, item: TrackerWorkItem) -> list[dict[str, Any]]:
        """The `work_item_link` rows of the tracker's own links (commits and MRs only)."""
        return [
            {
                "source_id": self.source_id,
                "item": item.external_id,
                "kind": ref.kind,
                "repo_path": ref.repo,
                "target": ref.value,
                "origin": "tracker",
            }
            for ref in dict.fromkeys(item.links)
            if ref.kind in ("commit", "merge_request")
        ]


def _value(ref: ChangeRef | None) -> str | None:
    return ref.value if ref else None


__all__ = [
    "CATEGORIES",
    "DONE",
    "INCIDENT_STATUSES",
    "IN_PROGRESS",
    "TODO",
    "WORK_ITEM_KINDS",
    "TrackerIncident",
    "TrackerWorkItem",
    "TrackerWriter",
    "Transition",
    "item_times",
    "map_service",
]
