"""PagerDuty REST API v2 payloads for the sandbox's PagerDuty simulator: plain builders from
values, no model of their own.

Shapes follow PagerDuty's OpenAPI document (../shared/fixtures/pagerduty: its examples of
`/incidents`, `/incidents/{id}/log_entries` and `/incidents/{id}/related_change_events`). Lists
use classic pagination: `{<items>, limit, offset, more, total}` (`total` null unless asked with
`total=true`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

API = "https://api.pagerduty.com"
WEB = "https://sandbox.pagerduty.com"


def when(at: datetime | None) -> str | None:
    """A time as PagerDuty writes it (ISO 8601 UTC, seconds)."""
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reference(kind: str, ident: str, summary: str, path: str) -> dict[str, Any]:
    """A `<kind>_reference` object."""
    return {
        "id": ident,
        "type": f"{kind}_reference",
        "summary": summary,
        "self": f"{API}/{path}/{ident}",
        "html_url": f"{WEB}/{path}/{ident}",
    }


def page(
    key: str, items: Sequence[Any], limit: int, offset: int, more: bool, total: int | None
) -> dict[str, Any]:
    """One page of a list answer."""
    return {key: list(items), "limit": limit, "offset": offset, "more": more, "total": total}


def incident(
    *,
    iid: str,
    number: int,
    title: str,
    created_at: datetime,
    acknowledged_at: datetime | None,
    resolved_at: datetime | None,
    service_id: str,
    service_name: str,
    urgency: str,
    priority: str | None,
    moved_at: datetime | None = None,
) -> dict[str, Any]:
    """An incident as listed by `/incidents`: status from its acknowledgement and resolution;
    `updated_at` the latest of its status change and its reassignment to another service
    (`moved_at`)."""
    status = "resolved" if resolved_at else "acknowledged" if acknowledged_at else "triggered"
    changed = resolved_at or acknowledged_at or created_at
    return {
        "id": iid,
        "type": "incident",
        "summary": f"[#{number}] {title}",
        "self": f"{API}/incidents/{iid}",
        "html_url": f"{WEB}/incidents/{iid}",
        "incident_number": number,
        "title": title,
        "created_at": when(created_at),
        "updated_at": when(max(changed, moved_at or changed)),
        "status": status,
        "incident_key": f"key-{iid}",
        "service": reference("service", service_id, service_name, "services"),
        "assignments": [],
        "assigned_via": "escalation_policy",
        "last_status_change_at": when(changed),
        "resolved_at": when(resolved_at),
        "first_trigger_log_entry": reference(
            "trigger_log_entry", f"T{iid}", "Triggered", "log_entries"
        ),
        "alert_counts": {
            "all": 1,
            "triggered": 0 if resolved_at else 1,
            "resolved": 1 if resolved_at else 0,
        },
        "is_mergeable": True,
        "incident_type": {"name": "incident_default"},
        "escalation_policy": reference(
            "escalation_policy", "PESC001", "Default", "escalation_policies"
        ),
        "teams": [],
        "pending_actions": [],
        "acknowledgements": [],
        "priority": None
        if priority is None
        else {**reference("priority", f"PRI{priority}", priority, "priorities")},
        "resolve_reason": None,
        "urgency": urgency,
    }


def log_entry(
    entry_id: str, kind: str, at: datetime, incident_id: str, summary: str
) -> dict[str, Any]:
    """One log entry (`trigger`, `acknowledge`, `resolve`, `notify`, ...) of an incident."""
    return {
        "id": entry_id,
        "type": f"{kind}_log_entry",
        "summary": summary,
        "self": f"{API}/log_entries/{entry_id}?incident_id={incident_id}",
        "html_url": f"{WEB}/incidents/{incident_id}/log_entries/{entry_id}",
        "created_at": when(at),
        "agent": None,
        "channel": {"type": "api" if kind == "trigger" else "web_trigger"},
        "incident": reference("incident", incident_id, summary, "incidents"),
        "teams": [],
        "contexts": [],
    }


def change_event(
    *,
    event_id: str,
    summary: str,
    at: datetime,
    service_id: str,
    details: dict[str, Any],
    links: Sequence[tuple[str, str]] = (),
    reason: str | None = None,
) -> dict[str, Any]:
    """A change event (a deploy or build a CI system sent through Events API v2); `reason` is
    PagerDuty's `correlation_reason` in related_change_events answers."""
    event: dict[str, Any] = {
        "summary": summary,
        "id": event_id,
        "timestamp": when(at),
        "type": "change_event",
        "source": "gitlab-ci",
        "integration": {"id": "PINTCHG", "type": "inbound_integration_reference"},
        "services": [{"id": service_id, "type": "service_reference"}],
        "custom_details": details,
        "links": [{"href": href, "text": text} for href, text in links],
    }
    if reason is not None:
        event["correlation_reason"] = {"reason": reason}
    return event
