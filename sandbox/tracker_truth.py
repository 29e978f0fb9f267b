"""Ground truth of the trackers (`sandbox.trackers`): what a sync of Jira, Zentao or PagerDuty must
store, and the requirement lead times and bug escapes analytics must compute from it.

Plain Python over the generated organisation, independent of the collectors and the warehouse.
Readings where DESIGN.md is silent (docs/METRICS.md says the same):
- A work item's `started_at` is its first move out of todo; `resolved_at` its last move into done
  while it is done now (None once reopened).
- Requirement lead time: the requirement's creation -> the finish of the first production
  deployment carrying any MR that references it (`reference.merge_requests`' `deployed_at`; an
  MR a baseline deployment carried has none: no change is recorded before a chain's first);
  stages: waiting (created -> started) and delivery (started -> production). A requirement none of
  whose MRs reached production has no lead time yet.
- Bug escape: a bug filed against an MR (the tracker's own link) that was already in production
  when the bug was opened; the rate is escaped bugs / bugs filed against an MR.
- An incident moved to another service (`TrackerItem.moved_from`, `moved_at`) counts, at an
  instant, for the service its records are filed under then (`incident_records`,
  `incident_failures`): before the move for the first, from it on for the second; its explicit
  link names a deployment of the second, so before the move it fails nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sandbox.model import Incident, Organisation
from sandbox.reference import (
    FAILURE_WINDOW,
    CommitGraph,
    attribute_incidents,
    hours,
    merge_requests,
    service_production,
)
from sandbox.trackers import TrackerItem


@dataclass(frozen=True)
class WorkItemTruth:
    key: str
    kind: str  # requirement | bug | task
    service: str | None
    category: str
    created_at: datetime
    started_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class TrackerIncidentTruth:
    key: str
    service: str | None
    opened_at: datetime
    resolved_at: datetime | None
    link: tuple[str, str] | None
    linked_deployment: int | None  # the deployment an explicit link names (it wins)


@dataclass(frozen=True)
class RequirementLeadTime:
    key: str
    service: str
    created_at: datetime
    started_at: datetime | None
    deployed_at: datetime
    hours: float
    waiting_hours: float | None
    delivery_hours: float | None


def times(item: TrackerItem) -> tuple[datetime | None, datetime | None]:
    """(started_at, resolved_at) of an item (module docstring)."""
    started = next((t.at for t in item.transitions if t.to_category != "todo"), None)
    if item.category != "done":
        return started, None
    resolved = [t.at for t in item.transitions if t.to_category == "done"][-1]
    return started or resolved, resolved


def work_items(org: Organisation, tracker: str) -> dict[str, WorkItemTruth]:
    """Every work item (not incident) filed in `tracker`, by key."""
    found = {}
    for item in org.trackers.of(tracker):
        if item.kind == "incident":
            continue
        started, resolved = times(item)
        found[item.key] = WorkItemTruth(
            item.key, item.kind, item.service, item.category, item.created_at, started, resolved
        )
    return found


def incidents(org: Organisation, tracker: str) -> dict[str, TrackerIncidentTruth]:
    """Every incident filed in `tracker`, by key (PagerDuty: those paged)."""
    found = {}
    for item in org.trackers.items:
        if item.kind != "incident" or not (
            item.tracker == tracker or (tracker == "pagerduty" and item.paged)
        ):
            continue
        resolved = item.incident.closed_at if item.incident else item.closed_at
        link = item.link
        if tracker == "zentao" and item.build is not None:  # found in a build of a tagged release
            link = ("deployment", f"tag:{item.build.tag}")
        found[item.key] = TrackerIncidentTruth(
            item.key,
            item.service,
            item.created_at,
            resolved,
            link,
            item.linked_deployment if link is not None else None,
        )
    return found


def reference_links(org: Organisation, tracker: str) -> set[tuple[str, str, int]]:
    """(work item key, project path, MR iid) for every MR whose title names a work item of
    `tracker`."""
    paths = {s.name: s.path for s in org.services}
    return {
        (item.key, paths[service], iid)
        for item in org.trackers.of(tracker)
        for service, iid in item.merge_requests
    }


def _deployed(org: Organisation) -> dict[tuple[str, int], datetime | None]:
    """(service, iid) -> when the MR first reached production; None when not yet, or when a
    baseline deployment carried it (the warehouse knows no change before a chain's first
    deployment, `reference.MergeRequestTruth.baseline`)."""
    return {(m.service, m.iid): None if m.baseline else m.deployed_at for m in merge_requests(org)}


def requirement_lead_times(
    org: Organisation, tracker: str | None = None
) -> list[RequirementLeadTime]:
    """The lead time of every requirement (of `tracker`, or every tracker) that reached
    production, by key."""
    deployed = _deployed(org)
    rows = []
    for item in org.trackers.items:
        if item.kind != "requirement" or (tracker and item.tracker != tracker):
            continue
        reached = [deployed.get(ref) for ref in item.merge_requests]
        done = [d for d in reached if d is not None]
        if not done or item.service is None:
            continue
        at = min(done)
        started, _ = times(item)
        rows.append(
            RequirementLeadTime(
                item.key,
                item.service,
                item.created_at,
                started,
                at,
                hours(item.created_at, at),
                hours(item.created_at, started) if started else None,
                hours(started, at) if started else None,
            )
        )
    return sorted(rows, key=lambda r: r.key)


def bug_escapes(org: Organisation, tracker: str | None = None) -> tuple[int, int]:
    """(escaped, filed against an MR) bugs of `tracker` (or every tracker)."""
    deployed = _deployed(org)
    by_path = {s.path: s.name for s in org.services}
    escaped = linked = 0
    for item in org.trackers.items:
        if item.kind != "bug" or item.caused_by is None or (tracker and item.tracker != tracker):
            continue
        linked += 1
        path, iid = item.caused_by
        at = deployed.get((by_path[path], iid))
        escaped += at is not None and at <= item.created_at
    return escaped, linked


def incident_records(org: Organisation, at: datetime | None = None) -> Counter[str]:
    """service -> the tracker records of the incidents opened by `at` (default: the organisation's
    `now`) filed under it at `at`: one in its team's Jira or Zentao, one more in PagerDuty when
    paged. Unmapped ones are left out."""
    at = at or org.now
    found: Counter[str] = Counter()
    for item in org.trackers.items:
        service = item.service_at(at)
        if item.kind == "incident" and item.created_at <= at and service is not None:
            found[service] += 1 + item.paged
    return found


def incident_failures(
    org: Organisation, at: datetime | None = None, failure_window: timedelta = FAILURE_WINDOW
) -> dict[str, set[int]]:
    """service -> its production deployments that the incidents the trackers hold at `at`
    (default: the organisation's `now`) fail, each incident counted for the service its records
    are filed under at `at` (by the window, or its explicit link when it has one: a link naming
    another service's deployment fails nothing). At `now` these are the reference's failed changes
    with an incident reason (`reference.change_failures`)."""
    at = at or org.now
    filed: dict[str, dict[int, Incident]] = {}
    links: dict[int, int | None] = {}
    for item in org.trackers.items:
        service = item.service_at(at)
        if item.incident is None or service is None or item.created_at > at:
            continue
        filed.setdefault(service, {})[item.incident.id] = item.incident
        if item.linked_deployment is not None:
            links[item.incident.id] = item.linked_deployment
    found: dict[str, set[int]] = {}
    for service in org.services:
        incidents = filed.get(service.name, {})
        if service.deploy_name or not incidents:
            continue  # its deployments go by another name: none meets its incidents
        production = service_production(service, CommitGraph(service))
        attributed = attribute_incidents(
            production, incidents.values(), failure_window, links=links
        )
        failed = {d for d in attributed.values() if d is not None}
        if failed:
            found[service.name] = failed
    return found
