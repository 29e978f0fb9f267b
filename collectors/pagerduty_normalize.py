"""PagerDuty REST v2 payloads into incident rows: pure functions, no I/O.

Each function takes a payload as PagerDuty's REST API gives it (`/incidents`, `/incidents/{id}/
log_entries`, `/incidents/{id}/related_change_events`) and returns rows keyed by warehouse column
names, times as aware UTC datetimes. A payload that cannot become a row raises `RejectedPayload`.

Decisions where DESIGN.md is silent:
- Every incident of a mapped PagerDuty service is an incident (PagerDuty pages only for them);
  its service is the mapping's, by the PagerDuty service id (the raw `service.id`, with its
  `summary` kept as the raw service field for the Data sources page).
- Opened at `created_at`. Acknowledged at the first `acknowledge_log_entry`, resolved at the last
  `resolve_log_entry` while the incident's status is resolved (PagerDuty does not reopen a resolved
  incident; a resolution logged before the trigger — clock skew between integrations — is kept as
  logged, and analytics flag it); without log entries, `resolved_at` of the incident payload, and
  `acknowledgements[0].at` for the acknowledgement.
- Key: `#<incident_number>`, as PagerDuty shows it (the external id is the incident's id).
- Severity is the incident's `urgency` (high, low); priority the `priority.summary` (P1..P5) when
  the account uses priorities. Status is `triggered`, `acknowledged` or `resolved`, kept raw.
- Explicit deployment links: a related change event carrying a deployment, a pipeline or a commit,
  read from its `custom_details` (`deployment_id`/`deployment`, `pipeline_id`/`pipeline`,
  `commit`/`sha`/`revision`, `project` naming the GitLab project when given), else from its
  links' URLs as `warehouse.references.change_refs` reads them (GitLab's API deployment URL,
  `/-/pipelines/<id>`, `/-/commit/<sha>`, `/-/merge_requests/<iid>`; not the web UI's
  per-environment deployment numbers).
  PagerDuty's correlation is a guess (`most_recent`, `related_service`); the link is explicit only
  because the change event itself names the deployment. When several do, the latest change event
  at or before the incident was opened wins (the deployment the incident followed); with none at
  or before, the earliest after.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collectors.payload import Fields, Payload, RejectedPayload, Row, rejects
from warehouse.references import change_refs, incident_mentions, is_sha

__all__ = ["RejectedPayload"]

KINDS = ("deployment", "pipeline", "merge_request", "commit")
DETAIL_KEYS = {
    "deployment": ("deployment_id", "deployment"),
    "pipeline": ("pipeline_id", "pipeline"),
    "commit": ("commit", "sha", "revision", "commit_sha"),
}


@dataclass(frozen=True)
class ChangeReference:
    """What a change event names: `kind` deployment, pipeline or commit, its id or sha, the
    change event's time and id, and the project path when a URL names one."""

    kind: str
    value: str
    at: datetime
    event_id: str
    project: str | None = None


@rejects("incident")
def normalize_incident(incident: Payload) -> Row:
    """The incident row of a PagerDuty incident, its times from the incident payload alone
    (`incident_times` refines them from the log entries)."""
    f = Fields(incident, "incident")
    service = f.obj("service")
    acks = f.objects("acknowledgements")
    status = f.required("status")
    return {
        "external_id": f.required("id"),
        "key": f"#{f.raw('incident_number')}" if f.integer("incident_number") else f.required("id"),
        "title": f.string("title") or f.string("summary"),
        "status": "resolved" if status == "resolved" else "open",
        "raw_status": status,
        "severity": f.string("urgency"),
        "priority": f.obj("priority").string("summary"),
        "opened_at": f.required_time("created_at"),
        "acknowledged_at": acks[0].time("at") if acks else None,
        "resolved_at": f.time("resolved_at") if status == "resolved" else None,
        "updated_at": f.time("updated_at") or f.time("last_status_change_at"),
        "service_ref": service.required("id"),
        "raw_service": service.string("summary") or service.required("id"),
        "url": f.string("html_url"),
        "mentions": incident_mentions(f.string("title"), f.string("description")),
    }


@rejects("log_entries")
def incident_times(entries: Iterable[Any]) -> dict[str, datetime | None]:
    """{acknowledged_at, resolved_at} from an incident's log entries: the first acknowledgement,
    the last resolution."""
    acknowledged = resolved = None
    for i, entry in enumerate(entries):
        f = Fields(entry, f"log_entries[{i}]")
        kind = f.required("type")
        at = f.required_time("created_at")
        if kind == "acknowledge_log_entry" and (acknowledged is None or at < acknowledged):
            acknowledged = at
        elif kind == "resolve_log_entry" and (resolved is None or at > resolved):
            resolved = at
    return {"acknowledged_at": acknowledged, "resolved_at": resolved}


def _detail(details: Fields, kind: str) -> str | None:
    for key in DETAIL_KEYS[kind]:
        value = details.raw(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


@rejects("change_event")
def change_reference(event: Payload) -> ChangeReference | None:
    """What a change event names — a deployment, else a pipeline, else a commit — or None."""
    f = Fields(event, "change_event")
    at, event_id = f.required_time("timestamp"), f.required("id")
    details = f.obj("custom_details")
    project = details.string("project") if isinstance(details.raw("project"), str) else None
    for kind in ("deployment", "pipeline", "commit"):
        value = _detail(details, kind)
        if value and (kind != "commit" or is_sha(value)):
            return ChangeReference(kind, value, at, event_id, project)
    for link in f.objects("links"):
        for ref in change_refs(link.string("href")):
            if ref.kind in KINDS:
                return ChangeReference(ref.kind, ref.value, at, event_id, ref.repo or None)
    return None


def deployment_reference(events: Iterable[Any], opened_at: datetime) -> ChangeReference | None:
    """The related change event an incident is explicitly linked to: the latest naming a
    deployment, pipeline or commit at or before `opened_at`, else the earliest after it."""
    refs = [r for r in (change_reference(e) for e in events) if r is not None]
    before = [r for r in refs if r.at <= opened_at]
    if before:
        return max(before, key=lambda r: (r.at, r.event_id))
    return min(refs, key=lambda r: (r.at, r.event_id)) if refs else None


def page_of(answer: Payload, key: str) -> tuple[list[Any], bool]:
    """(items, more) of a classic-paginated answer (`limit`, `offset`, `more`, `total`)."""
    f = Fields(answer, key)
    return f.array(key), bool(f.raw("more"))
