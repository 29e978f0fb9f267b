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
from collectors.zentao_normalize import RejectedPayload

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
    row = norm.normalize_bug(bugs[0])
    assert row["title"] == "光敏元件显示错误"
    assert row["created_at"] == datetime(2026, 8, 19, 9, 38, 5, tzinfo=UTC)  # 17:38 +08:00
    assert row["updated_at"] == datetime(2026, 8, 19, 9, 38, 6, tzinfo=UTC)
    assert (row["kind"], row["status"], row["raw_status"]) == ("bug", "todo", "active")
    assert (row["severity"], row["priority"], row["product"]) == ("3", "3", "1")
    assert row["resolved_at"] is None and row["closed_at"] is None
    assert row["external_id"] == "bug-1" and row["key"] == "bug #1"


def test_empty_last_edited_falls_back_to_opened() -> None:
    bugs, _ = norm.page_of(load("products-id-bugs.GET.200.json"), "bugs")
    row = norm.normalize_bug(bugs[1])
    assert row["updated_at"] == row["created_at"]


def test_configured_time_zone_wins() -> None:
    row = norm.normalize_bug(load("bugs-id.GET.200.json")["bug"], tz="UTC")
    assert row["created_at"] == datetime(2026, 8, 19, 17, 38, 5, tzinfo=UTC)


def test_v1_zoned_times_and_account_objects() -> None:
    row = norm.normalize_bug(v1_bug(), tz=SHANGHAI)
    assert row["created_at"] == datetime(2026, 8, 19, 9, 38, 5, tzinfo=UTC)
    assert norm.account({"account": "admin"}, "openedBy") == "admin"
    assert norm.account("admin", "openedBy") == "admin"
    assert norm.account("", "openedBy") is None


def test_zero_dates_are_never() -> None:
    assert norm.zentao_time("0000-00-00 00:00:00", "closedDate", SHANGHAI) is None
    assert norm.zentao_time("0000-00-00", "closedDate", SHANGHAI) is None


def test_resolved_bug_is_done() -> None:
    row = norm.normalize_bug(
        v1_bug(status="resolved", resolvedDate="2026-08-20T01:00:00Z", resolution="fixed")
    )
    assert row["status"] == "done"
    assert row["resolved_at"] == datetime(2026, 8, 20, 1, tzinfo=UTC)


def test_reopened_bug_is_open_again() -> None:
    bug = v1_bug(
        status="active",
        activatedCount=1,
        resolvedDate="2026-08-20T01:00:00Z",
        closedDate="2026-08-20T02:00:00Z",
    )
    assert norm.is_reopened(bug)
    row = norm.normalize_bug(bug)
    assert row["status"] == "todo"
    assert row["resolved_at"] is None and row["closed_at"] is None


def test_story_from_fixture_is_a_requirement_in_review() -> None:
    stories, total = norm.page_of(load("products-id-stories.GET.200.json"), "stories")
    assert total is not None and total >= 1
    row = norm.normalize_story(stories[0])
    assert row["title"] == "智能照明的定时"
    assert (row["kind"], row["status"], row["raw_status"], row["stage"]) == (
        "requirement",
        "todo",
        "reviewing",
        "projected",
    )
    assert row["started_at"] is None


def test_story_started_at_first_stage_into_development() -> None:
    story = copy.deepcopy(load("products-id-stories.GET.200.json")["stories"][0])
    story |= {"status": "active", "stage": "testing"}
    actions = [
        {"action": "opened", "date": "2026-08-19 17:37:57", "history": []},
        {
            "action": "edited",
            "date": "2026-08-21 10:00:00",
            "history": [{"field": "stage", "old": "projected", "new": "developing"}],
        },
        {
            "action": "edited",
            "date": "2026-08-22 10:00:00",
            "history": [{"field": "stage", "old": "developing", "new": "testing"}],
        },
    ]
    moves = norm.transitions(actions)
    row = norm.normalize_story(story, transitions=moves)
    assert row["status"] == "in_progress"
    assert row["started_at"] == datetime(2026, 8, 21, 2, tzinfo=UTC)


def test_released_story_is_done() -> None:
    story = copy.deepcopy(load("products-id-stories.GET.200.json")["stories"][0])
    story |= {"status": "active", "stage": "released", "releasedDate": "2026-09-01 12:00:00"}
    row = norm.normalize_story(story)
    assert row["status"] == "done"
    assert row["resolved_at"] == datetime(2026, 9, 1, 4, tzinfo=UTC)


def test_transitions_from_actions_with_chinese_statuses_kept() -> None:
    actions = [
        {
            "action": "resolved",
            "date": "2026-08-20T01:00:00Z",
            "history": [{"field": "status", "old": "active", "new": "resolved"}],
        },
        {"action": "activated", "date": "2026-08-21T01:00:00Z", "history": []},
        {
            "action": "edited",
            "date": "2026-08-19T01:00:00Z",
            "history": [
                {"field": "title", "old": "a", "new": "b"},
                {"field": "status", "old": "", "new": "激活"},
            ],
        },
    ]
    moves = norm.transitions(actions)
    assert [(m.from_status, m.to_status) for m in moves] == [
        (None, "激活"),
        ("active", "resolved"),
        (None, "active"),
    ]
    assert moves[0].at == datetime(2026, 8, 19, 1, tzinfo=UTC)


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
        ({"title": None}, "bug: missing bug.title"),
        ({"openedDate": "yesterday"}, "bug: bad timestamp in bug.openedDate"),
        ({"status": 3}, "bug: bug.status is not a string"),
    ],
)
def test_malformed_bug_names_the_field(changes: dict[str, Any], message: str) -> None:
    bug = v1_bug(**changes)
    with pytest.raises(RejectedPayload, match=message):
        norm.normalize_bug(bug)


def test_builds_fixture_lists_build_names() -> None:
    builds, _ = norm.page_of(load("projects-id-builds.GET.200.json"), "builds")
    assert {b["name"] for b in builds} == {"版本v1.0"}
