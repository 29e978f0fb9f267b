"""PagerDuty payloads into incident rows, on payloads in the documented shapes (built by
sandbox/pagerduty_payloads.py: PagerDuty's own examples carry no open licence, so they shaped the
builders and are not copied here) and named edge cases; pure functions, no server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collectors import pagerduty_normalize as norm
from collectors.pagerduty_normalize import RejectedPayload
from sandbox import pagerduty_payloads as pd

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def an_incident(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "iid": "PT4KHLK",
        "number": 1234,
        "title": "支付服务 5xx 激增",
        "created_at": T0,
        "acknowledged_at": T0 + timedelta(minutes=5),
        "resolved_at": T0 + timedelta(hours=2),
        "service_id": "PIJ90N7",
        "service_name": "payments-api",
        "urgency": "high",
        "priority": "P2",
    }
    return pd.incident(**(values | changes))


def entry(kind: str, minutes: int) -> dict[str, Any]:
    return pd.log_entry(f"Q{kind}{minutes}", kind, T0 + timedelta(minutes=minutes), "PT4KHLK", kind)


def event(eid: str, minutes: int, details: dict[str, Any], links: Any = ()) -> dict[str, Any]:
    return pd.change_event(
        event_id=eid,
        summary="deploy",
        at=T0 + timedelta(minutes=minutes),
        service_id="PIJ90N7",
        details=details,
        links=links,
        reason="most_recent",
    )


def test_resolved_incident_row() -> None:
    row = norm.normalize_incident(an_incident())
    assert row["external_id"] == "PT4KHLK" and row["key"] == "#1234"
    assert row["title"] == "支付服务 5xx 激增"
    assert (row["status"], row["raw_status"]) == ("resolved", "resolved")
    assert row["opened_at"] == T0 and row["resolved_at"] == T0 + timedelta(hours=2)
    assert (row["severity"], row["priority"]) == ("high", "P2")
    assert (row["service_ref"], row["raw_service"]) == ("PIJ90N7", "payments-api")


def test_open_incident_has_no_resolution() -> None:
    row = norm.normalize_incident(an_incident(resolved_at=None))
    assert (row["status"], row["raw_status"], row["resolved_at"]) == ("open", "acknowledged", None)


def test_incident_without_priority() -> None:
    assert norm.normalize_incident(an_incident(priority=None))["priority"] is None


def test_log_entries_give_first_acknowledge_and_last_resolve() -> None:
    entries = [
        entry("trigger", 0),
        entry("acknowledge", 7),
        entry("acknowledge", 3),
        entry("resolve", 90),
    ]
    assert norm.incident_times(entries) == {
        "acknowledged_at": T0 + timedelta(minutes=3),
        "resolved_at": T0 + timedelta(minutes=90),
    }


def test_resolution_logged_before_the_trigger_is_kept_as_logged() -> None:
    entries = [entry("trigger", 0), entry("resolve", -12)]
    assert norm.incident_times(entries)["resolved_at"] == T0 - timedelta(minutes=12)


@pytest.mark.parametrize(
    ("details", "links", "expected"),
    [
        ({"deployment_id": 4711}, (), ("deployment", "4711", None)),
        ({"pipeline_id": "88", "project": "pay/api"}, (), ("pipeline", "88", "pay/api")),
        (
            {"commit": "d27afa0805201322d846d7defc29b82c88d9b5ce"},
            (),
            ("commit", "d27afa0805201322d846d7defc29b82c88d9b5ce", None),
        ),
        (
            {},
            (("https://gitlab.example.com/api/v4/projects/12/deployments/17", "deploy"),),
            ("deployment", "17", None),
        ),
        (
            {},
            (("https://gitlab.example.com/pay/api/-/pipelines/901", "pipeline"),),
            ("pipeline", "901", None),
        ),
        (
            {"build_state": "passed", "build_number": "2"},
            (("https://acme.pagerduty.dev/build/2", "x"),),
            None,
        ),
        ({"commit": "not-a-sha"}, (), None),
        (
            {},
            (("https://gitlab.example.com/pay/api/-/environments/3/deployments/17", "web UI"),),
            None,  # the web UI numbers deployments per environment: not a deployment id
        ),
        (
            {},
            (("https://gitlab.example.com/pay/api/-/merge_requests/5", "MR"),),
            ("merge_request", "5", "pay/api"),
        ),
    ],
)
def test_change_event_references(details: dict[str, Any], links: Any, expected: Any) -> None:
    ref = norm.change_reference(event("E1", -10, details, links))
    assert (None if ref is None else (ref.kind, ref.value, ref.project)) == expected


def test_latest_change_before_opening_wins() -> None:
    events = [
        event("E1", -120, {"deployment_id": 1}),
        event("E2", -10, {"deployment_id": 2}),
        event("E3", 10, {"deployment_id": 3}),
        event("E4", -5, {"build_state": "passed"}),
    ]
    ref = norm.deployment_reference(events, T0)
    assert ref is not None and ref.value == "2"


def test_only_later_change_events_give_the_earliest() -> None:
    events = [event("E3", 30, {"deployment_id": 3}), event("E2", 10, {"deployment_id": 2})]
    ref = norm.deployment_reference(events, T0)
    assert ref is not None and ref.value == "2"


def test_no_reference_without_naming_events() -> None:
    assert norm.deployment_reference([event("E1", -1, {"build_state": "passed"})], T0) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": None}, "incident: missing incident.id"),
        ({"created_at": "soon"}, "incident: bad timestamp in incident.created_at"),
        ({"service": None}, "incident: missing incident.service.id"),
    ],
)
def test_malformed_incident_names_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RejectedPayload, match=message):
        norm.normalize_incident(an_incident() | changes)


def test_malformed_log_entry_is_rejected() -> None:
    with pytest.raises(
        RejectedPayload, match=re.escape("log_entries: missing log_entries[0].type")
    ):
        norm.incident_times([{"created_at": "2026-11-02T10:00:00Z"}])


def test_page_of() -> None:
    answer = pd.page("incidents", [an_incident()], limit=100, offset=0, more=True, total=None)
    items, more = norm.page_of(answer, "incidents")
    assert len(items) == 1 and more
