"""Zentao (禅道) REST payloads into tracker rows: pure functions, no I/O.

Each function takes a payload as Zentao's REST API gives it — v1 (`/api.php/v1`, 16.0 and later)
or the v2 shapes where they differ — and returns rows keyed by warehouse column names, times as
aware UTC datetimes. A payload that cannot become a row raises `RejectedPayload` naming the field.

Decisions where DESIGN.md is silent:
- Times: v1 answers ISO 8601 with a zone (`2021-11-29T06:41:34Z`); v2 answers the server's local
  time without one (`2026-08-19 17:38:05`), read in the source's `timezone` (default
  Asia/Shanghai, where most Zentao servers run). "" and Zentao's zero dates (`0000-00-00`,
  `0000-00-00 00:00:00`) mean "never".
- People: v1 gives `openedBy` etc. as an object (`{"account": ..., "realname": ...}`), v2 as the
  account string; both become the account.
- Titles, names and statuses are kept exactly as the server wrote them (Chinese included); the
  raw status is kept beside its category.
- Bug status: `active` is open (todo), `resolved` done, `closed` done. A reopened bug
  (`activatedCount` > 0, status active) is open again: its `resolved_at` and `closed_at` are
  cleared even when the payload still carries the old dates (Zentao keeps `resolvedDate` until the
  next resolution in some versions).
- Story status (`draft`, `reviewing`, `active`, `changing`, `closed`) gives the category; its
  `stage` (`wait` ... `developing`, `developed`, `testing`, `released`) says whether work started:
  a story is in progress from stage `developing` on, done when closed or its stage is `released`
  or later. `started_at` is the first action that moved the stage to developing (history of
  `stage`), else the first linked execution's start is not guessed: None.
- Transitions come from the object's `actions` (v1 detail payloads): every history entry of
  `field == "status"` (and `stage` for stories) is one transition at the action's date; an
  `activated` action without history is a transition to active (v1 omits the history of some).
- Builds: `openedBuild` is a comma list of build ids or the word `trunk` (`主干` in Chinese
  installs); a build id that a release of the product names, whose release name looks like a tag
  (the product's release naming, `v1.2.3` or the configured pattern), is the incident's explicit
  deployment reference: the collector resolves the tag to the deployment of the service's
  production environment from that ref.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from collectors.payload import Fields, Payload, RejectedPayload, Row, rejects, short

__all__ = ["RejectedPayload"]

DEFAULT_TIMEZONE = "Asia/Shanghai"
TRUNK = frozenset({"trunk", "主干", "0", ""})
_ZONED = re.compile(r".*(Z|[+-]\d{2}:?\d{2})$")
_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?")
_ZERO = re.compile(r"0000-00-00( 00:00:00)?")

TODO, IN_PROGRESS, DONE = "todo", "in_progress", "done"
BUG_CATEGORY = {"active": TODO, "resolved": DONE, "closed": DONE}
STORY_CATEGORY = {
    "draft": TODO,
    "reviewing": TODO,
    "active": TODO,
    "changing": TODO,
    "closed": DONE,
}
STARTED_STAGES = frozenset(
    {"developing", "developed", "testing", "tested", "verified", "rejected", "delivering"}
)
DONE_STAGES = frozenset({"released", "delivered", "closed"})


@dataclass(frozen=True)
class Transition:
    """One status (or stage) change of a work item."""

    at: datetime
    field: str
    from_status: str | None
    to_status: str


def zentao_time(value: Any, field: str, tz: ZoneInfo) -> datetime | None:
    """The aware UTC datetime of a Zentao date: zoned ISO 8601 (v1) as given, a local
    `YYYY-MM-DD[ HH:MM[:SS]]` (v2) in `tz`; None for "", None and zero dates."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RejectedPayload(f"bad timestamp in {field}: {short(value)}")
    if _ZERO.fullmatch(value):
        return None
    try:
        if _ZONED.fullmatch(value):
            return datetime.fromisoformat(value).astimezone(UTC)
        if _LOCAL.fullmatch(value):
            return datetime.fromisoformat(value).replace(tzinfo=tz).astimezone(UTC)
    except ValueError:
        pass
    raise RejectedPayload(f"bad timestamp in {field}: {value!r}")


def account(value: Any, field: str) -> str | None:
    """The account of a person field: v2's string, v1's `{"account": ...}` object; None if empty."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        found = value.get("account")
        return found if isinstance(found, str) and found else None
    raise RejectedPayload(f"{field} is not an account: {short(value)}")


class _Reader:
    """Field reads of one Zentao object with its time zone."""

    def __init__(self, payload: Any, tz: ZoneInfo, path: str = "") -> None:
        self.f = Fields(payload, path)
        self.tz = tz

    def time(self, key: str) -> datetime | None:
        return zentao_time(self.f.raw(key), self.f.name(key), self.tz)

    def required_time(self, key: str) -> datetime:
        value = self.time(key)
        if value is None:
            raise RejectedPayload(f"missing {self.f.name(key)}")
        return value

    def count(self, key: str) -> int:
        value = self.f.raw(key)
        if value in (None, ""):
            return 0
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise RejectedPayload(f"{self.f.name(key)} is not a number: {short(value)}")

    def label(self, key: str) -> str | None:
        """A priority or severity (Zentao sends numbers or numeric strings) as text."""
        value = self.f.raw(key)
        if value in (None, "", 0, "0"):
            return None
        return str(value)


def _zone(tz: ZoneInfo | str | None) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz or DEFAULT_TIMEZONE)


def _common(r: _Reader, kind: str, base_url: str | None) -> Row:
    f = r.f
    ident = f.ident("id")
    return {
        "external_id": f"{kind}-{ident}",
        "key": f"{kind} #{ident}",
        "title": f.required("title"),
        "created_at": r.required_time("openedDate"),
        "updated_at": r.time("lastEditedDate") or r.required_time("openedDate"),
        "closed_at": r.time("closedDate"),
        "url": f"{base_url.rstrip('/')}/{kind}-view-{ident}.html" if base_url else None,
    }


def is_reopened(bug: Payload) -> bool:
    """Whether an active bug was activated again after a resolution."""
    f = Fields(bug, "bug")
    count = f.raw("activatedCount")
    reopened = (isinstance(count, int) and count > 0) or (isinstance(count, str) and count > "0")
    return f.raw("status") == "active" and reopened


@rejects("bug")
def normalize_bug(
    bug: Payload, tz: ZoneInfo | str | None = None, base_url: str | None = None
) -> Row:
    """The work item row of a bug (kind `bug`): status category, severity, priority, created /
    resolved / closed; a reopened bug is open with no resolution."""
    r = _Reader(bug, _zone(tz), "bug")
    f = r.f
    raw = f.required("status")
    row = _common(r, "bug", base_url)
    row |= {
        "kind": "bug",
        "status": BUG_CATEGORY.get(raw, TODO),
        "raw_status": raw,
        "priority": r.label("pri"),
        "severity": r.label("severity"),
        "started_at": None,
        "resolved_at": r.time("resolvedDate"),
        "product": f.ident("product"),
        "module": _ident_or_none(f, "module"),
        "bug_type": f.string("type"),
    }
    if raw == "active":
        row["resolved_at"] = row["closed_at"] = None
    return row


@rejects("story")
def normalize_story(
    story: Payload,
    tz: ZoneInfo | str | None = None,
    base_url: str | None = None,
    transitions: Sequence[Transition] = (),
) -> Row:
    """The work item row of a story (kind `requirement`); `started_at` from the first stage
    transition into development when `transitions` (from its actions) are given."""
    r = _Reader(story, _zone(tz), "story")
    f = r.f
    raw = f.required("status")
    stage = f.string("stage") or ""
    category = STORY_CATEGORY.get(raw, TODO)
    if category != DONE and stage in DONE_STAGES:
        category = DONE
    elif category == TODO and stage in STARTED_STAGES:
        category = IN_PROGRESS
    started = next(
        (t.at for t in transitions if t.field == "stage" and t.to_status in STARTED_STAGES),
        None,
    )
    row = _common(r, "story", base_url)
    row |= {
        "kind": "requirement",
        "status": category,
        "raw_status": raw,
        "stage": stage or None,
        "priority": r.label("pri"),
        "severity": None,
        "started_at": started,
        "resolved_at": r.time("releasedDate") if stage in DONE_STAGES else None,
        "product": f.ident("product"),
        "module": _ident_or_none(f, "module"),
    }
    return row


def _ident_or_none(f: Fields, key: str) -> str | None:
    value = f.raw(key)
    if value in (None, "", 0, "0"):
        return None
    return f.ident(key)


@rejects("actions")
def transitions(actions: Iterable[Any], tz: ZoneInfo | str | None = None) -> list[Transition]:
    """The status and stage changes in an object's actions, oldest first."""
    zone = _zone(tz)
    found: list[Transition] = []
    for i, action in enumerate(actions):
        r = _Reader(action, zone, f"actions[{i}]")
        at = r.required_time("date")
        verb = r.f.string("action") or ""
        changed = False
        for h in r.f.objects("history"):
            field = h.string("field")
            if field in ("status", "stage") and h.raw("new") not in (None, ""):
                new, old = str(h.raw("new")), h.raw("old")
                found.append(Transition(at, field, str(old) if old else None, new))
                changed = changed or field == "status"
        if verb == "activated" and not changed:
            found.append(Transition(at, "status", None, "active"))
    found.sort(key=lambda t: t.at)
    return found


def opened_builds(bug: Payload) -> list[str]:
    """The build ids a bug was found in (`openedBuild`: a comma list, or a list in v1), trunk
    left out."""
    value = Fields(bug, "bug").raw("openedBuild")
    if isinstance(value, list):
        parts = [str(v.get("id") if isinstance(v, Mapping) else v) for v in value]
    elif isinstance(value, int | str):
        parts = str(value).split(",")
    else:
        parts = []
    return [p.strip() for p in parts if p.strip() not in TRUNK]


@rejects("release")
def release_builds(release: Payload) -> tuple[str, list[str]]:
    """(release name, the ids of the builds it ships): `builds[]` in v1/v2 lists, `build` as a
    comma list or an object in older answers."""
    f = Fields(release, "release")
    name = f.required("name")
    ids: list[str] = []
    for b in f.array("builds"):
        if isinstance(b, Mapping) and b.get("id") is not None:
            ids.append(str(b["id"]))
    build = f.raw("build")
    if isinstance(build, Mapping) and build.get("id") is not None:
        ids.append(str(build["id"]))
    elif isinstance(build, int | str):
        ids.extend(p.strip() for p in str(build).split(",") if p.strip())
    return name, sorted(set(ids))


def release_tag(
    bug: Payload, releases: Iterable[Payload], tag_pattern: str = r"v?\d+(\.\d+)+.*"
) -> str | None:
    """The release tag `openedBuild` names: the name of a release shipping one of the bug's
    builds, when it matches `tag_pattern`; the newest such release (highest build id) wins."""
    builds = set(opened_builds(bug))
    if not builds:
        return None
    pattern = re.compile(tag_pattern)
    best: tuple[int, str] | None = None
    for release in releases:
        name, ids = release_builds(release)
        hit = [int(i) for i in ids if i in builds and i.isdigit()]
        if hit and pattern.fullmatch(name) and (best is None or max(hit) > best[0]):
            best = (max(hit), name)
    return best[1] if best else None


def page_of(answer: Payload, key: str) -> tuple[list[Any], int | None]:
    """(items, total) of a list answer: v1 `{page, total, limit, <key>: [...]}`, v2 `{status,
    <key>: [...], pager: {recTotal, recPerPage, pageID}}`."""
    f = Fields(answer, key)
    items = f.array(key)
    total = f.raw("total")
    if total is None:
        total = f.obj("pager").raw("recTotal")
    return items, int(total) if isinstance(total, int | str) and str(total).isdigit() else None
