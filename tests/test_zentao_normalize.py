"""Zentao payloads into tracker rows, on recorded payloads (tests/fixtures/SOURCES.md, zentao/)
and named edge cases; pure functions, no server."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collectors import zentao_normalize as norm
from collectors.trackers import DONE, IN_PROGRESS, TODO
from collectors.zentao_normalize import RejectedPayload
from warehouse.references import ChangeRef

FIXTURES = Path(__file__).parent / "fixtures" / "zentao"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def v1_bug(**changes: Any) -> dict[str, Any]:
    """A v1 bug: people as objects, times zoned."""
    bug = copy.deepcopy(load("bugs-id.GET.200.json")["bug"])
    bug |= {
        "openedBy": {"id": 1, "account": "admin", "realname": "管理员"},
        "openedDate": "2026-08-19T09:38:05Z",
        "lastEditedDate": "2026-08-19T09:38:06Z",
    }
    return bug | changes


def test_v2_bug_list_local_times_read_in_shanghai_and_chinese_round_trips() -> None:
    bugs, total = norm.page_of(load("products-id-bugs.GET.200.json"), "bugs")
    assert total == 2
    item = norm.normalize_work_item("bug", bugs[0])
    assert item.title == "光敏元件显示错误"
    assert item.created_at == datetime(2026, 8, 19, 9, 38, 5, tzinfo=UTC)  # 17:38 +08:00
    assert item.updated_at == datetime(2026, 8, 19, 9, 38, 6, tzinfo=UTC)
    assert (item.kind, item.status, item.status_category) == ("bug", "active", TODO)
    assert (item.external_id, item.key, item.priority, item.raw_kind) == (
        "bug-1",
        "bug-1",
        "3",
        "codeerror",
    )
    assert item.closed_at is None and item.transitions == ()


def test_empty_last_edited_falls_back_to_opened() -> None:
    bugs, _ = norm.page_of(load("products-id-bugs.GET.200.json"), "bugs")
    item = norm.normalize_work_item("bug", bugs[1])
    assert item.updated_at == item.created_at


def test_configured_time_zone_wins() -> None:
    item = norm.normalize_work_item("bug", load("bugs-id.GET.200.json")["bug"], tz="UTC")
    assert item.created_at == datetime(2026, 8, 19, 17, 38, 5, tzinfo=UTC)


def test_v1_zoned_times_and_account_objects() -> None:
    item = norm.normalize_work_item("bug", v1_bug(), tz=SHANGHAI)
    assert item.created_at == datetime(2026, 8, 19, 9, 38, 5, tzinfo=UTC)
    assert norm.account({"account": "admin"}, "openedBy") == "admin"
    assert norm.account("admin", "openedBy") == "admin"
    assert norm.account("", "openedBy") is None


def test_zero_dates_are_never() -> None:
    assert norm.zentao_time("0000-00-00 00:00:00", "closedDate", SHANGHAI) is None
    assert norm.zentao_time("0000-00-00", "closedDate", SHANGHAI) is None


def test_confirmed_bug_is_in_progress_and_resolved_is_done() -> None:
    assert norm.normalize_work_item("bug", v1_bug(confirmed=1)).status_category == IN_PROGRESS
    assert norm.normalize_work_item("bug", v1_bug(status="resolved")).status_category == DONE


def action(aid: int, at: str, verb: str, *history: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "id": aid,
        "action": verb,
        "actor": {"account": "dev"},
        "date": at,
        "history": [{"field": f, "old": old, "new": new} for f, old, new in history],
    }


def test_reopened_bug_transitions() -> None:
    actions = [
        action(2, "2026-08-20T01:00:00Z", "resolved", ("status", "active", "resolved")),
        action(3, "2026-08-21T01:00:00Z", "activated"),  # v1 leaves out some histories
        action(1, "2026-08-19T12:00:00Z", "bugconfirmed", ("confirmed", "0", "1")),
        action(4, "2026-08-21T02:00:00Z", "edited", ("title", "a", "b")),
    ]
    moves = norm.transitions("bug", actions)
    assert [(m.external_id, m.from_category, m.to_category, m.to_status) for m in moves] == [
        ("1", TODO, IN_PROGRESS, "active"),
        ("2", IN_PROGRESS, DONE, "resolved"),
        ("3", DONE, TODO, "active"),
    ]
    assert moves[0].author == "dev" and moves[0].at == datetime(2026, 8, 19, 12, tzinfo=UTC)
    item = norm.normalize_work_item("bug", v1_bug(activatedCount=1, actions=actions))
    assert item.status_category == TODO and len(item.transitions) == 3


def test_story_from_fixture_is_a_requirement_waiting() -> None:
    stories, total = norm.page_of(load("products-id-stories.GET.200.json"), "stories")
    assert total is not None and total >= 1
    item = norm.normalize_work_item("story", stories[0])
    assert item.title == "智能照明的定时"
    assert (item.kind, item.status, item.status_category, item.key) == (
        "requirement",
        "reviewing",
        TODO,
        "story-1",
    )


def test_story_stages_give_its_category_and_transitions() -> None:
    story = copy.deepcopy(load("products-id-stories.GET.200.json")["stories"][0])
    story |= {"status": "active", "stage": "testing"}
    actions = [
        action(7, "2026-08-21 10:00:00", "edited", ("stage", "wait", "developing")),
        action(8, "2026-08-22 10:00:00", "edited", ("stage", "developing", "testing")),
        action(9, "2026-08-23 10:00:00", "closed", ("status", "active", "closed")),
    ]
    item = norm.normalize_work_item("story", story | {"actions": actions})
    assert item.status == "testing" and item.status_category == IN_PROGRESS
    assert [(t.to_status, t.to_category) for t in item.transitions] == [
        ("developing", IN_PROGRESS),
        ("testing", IN_PROGRESS),
        ("closed", DONE),
    ]
    assert item.transitions[0].at == datetime(2026, 8, 21, 2, tzinfo=UTC)  # Shanghai local


def test_released_story_is_done() -> None:
    story = copy.deepcopy(load("products-id-stories.GET.200.json")["stories"][0])
    story |= {"status": "active", "stage": "released"}
    assert norm.normalize_work_item("story", story).status_category == DONE


def test_links_from_steps() -> None:
    bug = v1_bug(steps="<p>Regression from acme/pay/api!12 and commit 3f2a9c1d</p>")
    item = norm.normalize_work_item("bug", bug)
    assert set(item.links) == {
        ChangeRef("merge_request", "12", "acme/pay/api"),
        ChangeRef("commit", "3f2a9c1d"),
    }


def test_incident_bug_with_links_statuses_and_times() -> None:
    releases, _ = norm.page_of(load("products-id-releases.GET.200.json"), "releases")
    actions = [
        action(1, "2026-08-19T10:00:00Z", "bugconfirmed", ("confirmed", "0", "1")),
        action(2, "2026-08-19T12:00:00Z", "resolved", ("status", "active", "resolved")),
    ]
    bug = v1_bug(
        status="resolved",
        severity=1,
        openedBuild="1",
        steps="Caused by deployment 4711.",  # the full stop is not part of the id
        actions=actions,
    )
    assert norm.is_incident(bug, severity=1)
    incident = norm.normalize_incident(bug, releases)
    assert (incident.status, incident.raw_status, incident.severity) == (
        "resolved",
        "resolved",
        "1",
    )
    assert incident.opened_at == datetime(2026, 8, 19, 9, 38, 5, tzinfo=UTC)
    assert incident.acknowledged_at == datetime(2026, 8, 19, 10, tzinfo=UTC)
    assert incident.resolved_at == datetime(2026, 8, 19, 12, tzinfo=UTC)
    assert incident.links == (
        ChangeRef("deployment", "4711"),
        ChangeRef("deployment", "tag:v1.0"),
    )


def test_reopened_incident_is_open_again() -> None:
    actions = [
        action(2, "2026-08-20T01:00:00Z", "resolved", ("status", "active", "resolved")),
        action(3, "2026-08-21T01:00:00Z", "activated", ("status", "resolved", "active")),
    ]
    incident = norm.normalize_incident(v1_bug(severity=1, activatedCount=1, actions=actions))
    assert (incident.status, incident.resolved_at) == ("open", None)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({}, False),
        ({"severity": 2}, True),
        ({"severity": 1}, False),
        ({"types": ["codeerror"]}, True),
        ({"types": ["security"]}, False),
        ({"modules": ["0", "4"]}, False),
        ({"modules": ["7"]}, True),
        ({"modules": ["支付"], "module_name": "支付"}, True),
        ({"severity": 2, "types": ["security"]}, False),
    ],
)
def test_incident_rule(rule: dict[str, Any], expected: bool) -> None:
    assert norm.is_incident(v1_bug(severity=2, module=7), **rule) is expected


def test_opened_build_naming_a_release_tag() -> None:
    releases, _ = norm.page_of(load("products-id-releases.GET.200.json"), "releases")
    assert norm.release_builds(releases[0]) == ("v1.0", ["1"])
    assert norm.release_tag(v1_bug(openedBuild="1"), releases) == "v1.0"
    assert norm.release_tag(v1_bug(openedBuild="trunk"), releases) is None
    assert norm.release_tag(v1_bug(openedBuild="主干"), releases) is None
    assert norm.release_tag(v1_bug(openedBuild="7,1"), releases) == "v1.0"
    assert norm.release_tag(v1_bug(openedBuild="1"), releases, tag_pattern=r"release-.*") is None


def test_opened_build_as_v1_list() -> None:
    assert norm.opened_builds(v1_bug(openedBuild=[{"id": 3}, "trunk"])) == ["3"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": None}, "work item: missing bug.title"),
        ({"openedDate": "yesterday"}, "work item: bad timestamp in bug.openedDate"),
        ({"status": 3}, "work item: bug.status is not a string"),
        ({"actions": [{"id": 1, "date": None}]}, r"work item: actions: missing actions\[0\]\.date"),
    ],
)
def test_malformed_bug_names_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RejectedPayload, match=message):
        norm.normalize_work_item("bug", v1_bug(**changes))
