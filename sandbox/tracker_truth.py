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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sandbox.model import Organisation
from sandbox.reference import hours, merge_requests
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
