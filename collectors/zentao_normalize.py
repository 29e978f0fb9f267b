"""Zentao (禅道) REST payloads into tracker work items and incidents: pure functions, no I/O.

Each function takes a payload as Zentao's REST API gives it — v1 (`/api.php/v1`, 16.0 and later)
or the v2 shapes where they differ — and returns the `collectors.trackers` objects the one tracker
writer turns into rows, times as aware UTC datetimes. A payload that cannot become one raises
`RejectedPayload` naming the field.

Decisions where DESIGN.md is silent:
- Keys: a story is `story-<id>`, a bug `bug-<id>`, a task `task-<id>` (how `story #12` / `bug #45`
  references in MR titles, branches and commit messages name them: `warehouse.references`); the
  key is also the external id.
- Times: v1 answers ISO 8601 with a zone (`2021-11-29T06:41:34Z`); v2 answers the server's local
  time without one (`2026-08-19 17:38:05`), read in the source's time zone (default
  Asia/Shanghai, where most Zentao servers run). "" and Zentao's zero dates (`0000-00-00`,
  `0000-00-00 00:00:00`) mean "never".
- Titles, names and statuses are kept exactly as the server wrote them (Chinese included).
- Status categories. A bug: `active` is todo until confirmed (`confirmed` 1: in progress),
  `resolved` and `closed` are done. A story: `closed` is done; else its `stage` decides —
  `developing` ... `verified` in progress, `released` (and later) done, earlier stages todo. A
  task: `wait` todo, `doing`/`pause` in progress, `done`/`cancel`/`closed` done. An unknown status
  is todo (a workflow's custom status must not read as finished).
- Transitions come from the object's `actions` (detail answers): the history entries of `status`,
  `stage` and `confirmed` move the object's state; every action that changes its status or
  category is one transition (its id is the action's), in the order the actions were recorded
  (their ids; a back-filled action may be dated before the previous one). An `activated` action
  without history is a move to active and unconfirmed; a `bugconfirmed` one without history
  confirms. A reopened bug (activated after a resolution) is open again: the writer's
  `item_times` gives it no resolution until it is done again.
- Incidents: a bug is an incident when it matches the source's rule (`is_incident`); its status is
  open (active), acknowledged (active and confirmed), resolved or closed, opened at `openedDate`,
  acknowledged at its first move out of todo, resolved at its last move into done while done.
- Links: a bug's or story's steps/spec text naming commits and merge requests (GitLab URLs, `!12`,
  `commit abc1234`) are the tracker's own links; an incident's also names deployments and
  pipelines. `openedBuild` (build ids, or `trunk`/`主干`) naming a build a release ships whose
  release name looks like a version tag (`v1.2.3`, `1.4`) is an explicit link to the
  production deployment from that tag (`ChangeRef("deployment", "tag:<name>")`, which
  `analytics.incident_links` resolves by the deployments' ref), after any deployment the steps
  name; the build's `scmPath` naming a commit (`.../-/commit/<sha>`) is the tag's commit
  (`ChangeRef("commit", sha)`): when no production deployment ran from the tag's ref (teams
  deploying from a branch), the production deployment of that commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from collectors.payload import Fields, Payload, RejectedPayload, rejects, short
from collectors.trackers import (
    DONE,
    IN_PROGRESS,
    TODO,
    TrackerIncident,
    TrackerWorkItem,
    Transition,
)
from warehouse.references import ChangeRef, change_refs, incident_mentions

__all__ = ["RejectedPayload"]

DEFAULT_TIMEZONE = "Asia/Shanghai"
TAG_PATTERN = r"v?\d+(\.\d+)+([-+.][\w.\-]+)?"
TRUNK = frozenset({"trunk", "主干", "0", ""})
KINDS = {"story": "requirement", "bug": "bug", "task": "task"}
_ZONED = re.compile(r".*(Z|[+-]\d{2}:?\d{2})$")
_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?")
_ZERO = re.compile(r"0000-00-00( 00:00:00)?")

STARTED_STAGES = frozenset({"developing", "developed", "testing", "tested", "verified"})
DONE_STAGES = frozenset({"released", "delivering", "delivered", "closed"})
TASK_CATEGORY = {
    "wait": TODO,
    "doing": IN_PROGRESS,
    "pause": IN_PROGRESS,
    "done": DONE,
    "cancel": DONE,
    "closed": DONE,
}
INCIDENT_STATUS = {"resolved": "resolved", "closed": "closed"}


@dataclass(frozen=True)
class State:
    """What decides a Zentao object's category: its status and, for bugs, `confirmed`, for
    stories, `stage`."""

    kind: str  # bug | story | task
    status: str
    detail: str = ""  # bug: "1" when confirmed; story: the stage

    @property
    def category(self) -> str:
        if self.kind == "bug":
            if self.status in ("resolved", "closed"):
                return DONE
            return IN_PROGRESS if self.status == "active" and self.detail == "1" else TODO
        if self.kind == "story":
            if self.status == "closed" or self.detail in DONE_STAGES:
                return DONE
            return IN_PROGRESS if self.detail in STARTED_STAGES else TODO
        return TASK_CATEGORY.get(self.status, TODO)

    @property
    def label(self) -> str:
        """The status a person reads: a story's stage while its status says nothing more."""
        if self.kind == "story" and self.status not in ("closed", "draft", "reviewing", "changing"):
            return self.detail or self.status
        return self.status


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


def zone(tz: ZoneInfo | str | None) -> ZoneInfo:
    """The time zone local (v2) times are read in."""
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz or DEFAULT_TIMEZONE)


def _text(value: Any) -> str:
    return str(value) if value not in (None, 0) else ""


def state_of(kind: str, payload: Payload) -> State:
    """The object's current state, from its own fields."""
    f = Fields(payload, kind)
    status = f.required("status")
    if kind == "bug":
        return State(kind, status, _text(f.raw("confirmed")))
    if kind == "story":
        return State(kind, status, f.string("stage") or "")
    return State(kind, status)


def initial_state(kind: str) -> State:
    """The state an object is created in."""
    return {"bug": State("bug", "active", "0"), "story": State("story", "active", "wait")}.get(
        kind, State(kind, "wait")
    )


@rejects("actions")
def transitions(
    kind: str, actions: Iterable[Any], tz: ZoneInfo | str | None = None
) -> list[Transition]:
    """The status and category changes in an object's actions, oldest first."""
    tzone = zone(tz)
    read = []
    for i, action in enumerate(actions):
        f = Fields(action, f"actions[{i}]")
        at = zentao_time(f.raw("date"), f.name("date"), tzone)
        if at is None:
            raise RejectedPayload(f"missing {f.name('date')}")
        read.append((at, f.ident("id"), f))
    # in the order Zentao recorded them (action ids grow): a back-filled action may carry an
    # earlier date than the one before it
    read.sort(key=lambda r: (int(r[1]) if r[1].isdigit() else 0, r[0]))
    state = initial_state(kind)
    found: list[Transition] = []
    for at, ident, f in read:
        new = _apply(state, f)
        if (new.label, new.category) != (state.label, state.category):
            found.append(
                Transition(
                    ident,
                    at,
                    state.label,
                    new.label,
                    state.category,
                    new.category,
                    account(f.raw("actor"), f.name("actor")),
                )
            )
        state = new
    return found


def _apply(state: State, action: Fields) -> State:
    verb = (action.string("action") or "").lower()
    status, detail = state.status, state.detail
    seen = set()
    for h in action.objects("history"):
        field, new = h.string("field"), h.raw("new")
        if field == "status" and new not in (None, ""):
            status = str(new)
        elif field in ("stage", "confirmed") and new is not None:
            detail = str(new)
        seen.add(field)
    if verb == "activated" and "status" not in seen:
        status = "active"
        detail = "0" if state.kind == "bug" else detail
    if verb == "bugconfirmed" and "confirmed" not in seen:
        detail = "1"
    return State(state.kind, status, detail)


def _common(f: Fields, kind: str, tz: ZoneInfo, base_url: str | None) -> dict[str, Any]:
    ident = f.ident("id")
    opened = zentao_time(f.raw("openedDate"), f.name("openedDate"), tz)
    if opened is None:
        raise RejectedPayload(f"missing {f.name('openedDate')}")
    edited = zentao_time(f.raw("lastEditedDate"), f.name("lastEditedDate"), tz)
    pri = f.raw("pri")
    return {
        "key": f"{kind}-{ident}",
        "title": f.required("title" if kind != "task" else "name"),
        "created_at": opened,
        "updated_at": edited or opened,
        "closed_at": zentao_time(f.raw("closedDate"), f.name("closedDate"), tz),
        "priority": None if pri in (None, "", 0, "0") else str(pri),
        "url": f"{base_url.rstrip('/')}/{kind}-view-{ident}.html" if base_url else None,
    }


def _description(f: Fields, kind: str) -> str:
    key = {"bug": "steps", "story": "spec"}.get(kind, "desc")
    value = f.raw(key)
    return value if isinstance(value, str) else ""


@rejects("work item")
def normalize_work_item(
    kind: str,
    payload: Payload,
    tz: ZoneInfo | str | None = None,
    base_url: str | None = None,
) -> TrackerWorkItem:
    """The work item of a story, bug or task (with its transitions when the payload carries its
    `actions`); no service yet (the collector maps it)."""
    f = Fields(payload, kind)
    tzone = zone(tz)
    common = _common(f, kind, tzone, base_url)
    state = state_of(kind, payload)
    moves = transitions(kind, f.array("actions"), tzone) if f.has("actions") else []
    links = tuple(
        r for r in change_refs(_description(f, kind)) if r.kind in ("commit", "merge_request")
    )
    return TrackerWorkItem(
        external_id=common["key"],
        raw_kind=f.string("type") if kind == "bug" else kind,
        kind=KINDS[kind],
        status=state.label,
        status_category=state.category,
        transitions=tuple(moves),
        links=links,
        **common,
    )


@rejects("incident")
def normalize_incident(
    bug: Payload,
    releases: Iterable[Payload] = (),
    tz: ZoneInfo | str | None = None,
    base_url: str | None = None,
    tag_pattern: str = TAG_PATTERN,
    builds: Mapping[str, Payload] | None = None,
) -> TrackerIncident:
    """The incident of a bug the source's rule says is one; explicit links from its steps, from
    `openedBuild` naming a release tag, and from the scm path of the builds it names (`builds`:
    build id -> `/builds/{id}` answer; `build_commits`)."""
    item = normalize_work_item("bug", bug, tz, base_url)
    f = Fields(bug, "bug")
    state = state_of("bug", bug)
    status = INCIDENT_STATUS.get(state.status) or (
        "acknowledged" if state.category == IN_PROGRESS else "open"
    )
    moves = sorted(item.transitions, key=lambda t: t.at)
    acknowledged = next((t.at for t in moves if t.to_category != TODO), None)
    into_done = [t.at for t in moves if t.to_category == DONE]
    resolved = (into_done[-1] if into_done else item.created_at) if state.category == DONE else None
    links = [r for r in change_refs(_description(f, "bug")) if r.kind != "tag"]
    tag = release_tag(bug, releases, tag_pattern)
    if tag is not None:  # the deployments from that tag (`analytics.incident_links`)
        links.append(ChangeRef("deployment", f"tag:{tag}"))
    for build in opened_builds(bug):
        if builds and build in builds:
            links.extend(build_commits(builds[build]))
    severity = f.raw("severity")
    return TrackerIncident(
        external_id=item.external_id,
        key=item.key,
        title=item.title,
        status=status,
        raw_status=state.status,
        opened_at=item.created_at,
        resolved_at=resolved,
        acknowledged_at=acknowledged,
        closed_at=item.closed_at if state.status == "closed" else None,
        updated_at=item.updated_at,
        severity=None if severity in (None, "", 0, "0") else str(severity),
        priority=item.priority,
        url=item.url,
        transitions=item.transitions,
        links=tuple(dict.fromkeys(links)),
        mentions=tuple(incident_mentions(item.title, _description(f, "bug"))),
    )


def is_incident(
    bug: Payload,
    types: Iterable[str] = (),
    severity: int | None = None,
    modules: Iterable[str] = (),
    module_name: str | None = None,
) -> bool:
    """Whether a bug is an incident by the source's rule: every criterion given must hold (its
    type among `types`, its severity at least as severe as `severity` — 1 is the most severe —,
    its module, by id or name, among `modules`); no criterion: no bug is an incident."""
    f = Fields(bug, "bug")
    types, modules = set(types), set(modules)
    if not types and severity is None and not modules:
        return False
    if types and f.raw("type") not in types:
        return False
    level = f.raw("severity")
    if severity is not None and not (str(level).isdigit() and 0 < int(str(level)) <= severity):
        return False
    names = {_text(f.raw("module")), module_name or ""} - {""}
    return not modules or bool(names & modules)


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


def build_commits(build: Payload) -> list[ChangeRef]:
    """The commits a build's `scmPath` names (a GitLab `/-/commit/<sha>` URL, `commit <sha>`);
    a repository URL alone names none."""
    if not isinstance(build, Mapping):
        return []
    return [r for r in change_refs(_text(build.get("scmPath"))) if r.kind == "commit"]


def release_tag(
    bug: Payload, releases: Iterable[Payload], tag_pattern: str = TAG_PATTERN
) -> str | None:
    """The release tag `openedBuild` names: the name of a release shipping one of the bug's
    builds, when it matches `tag_pattern`; the release of the newest such build wins."""
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


def edited_at(payload: Any, tz: ZoneInfo) -> datetime | None:
    """When a listed object was last edited (None: never edited, or unreadable)."""
    if not isinstance(payload, Mapping):
        return None
    try:
        return zentao_time(payload.get("lastEditedDate"), "lastEditedDate", tz)
    except RejectedPayload:
        return None


def page_of(answer: Payload, key: str) -> tuple[list[Any], int | None]:
    """(items, total) of a list answer: v1 `{page, total, limit, <key>: [...]}`, v2 `{status,
    <key>: [...], pager: {recTotal, recPerPage, pageID}}`."""
    f = Fields(answer, key)
    items = f.array(key)
    total = f.raw("total")
    if total is None:
        total = f.obj("pager").raw("recTotal")
    return items, int(total) if isinstance(total, int | str) and str(total).isdigit() else None


def with_service(item: Any, service: str | None, raw: str | None) -> Any:
    """`item` (a work item or an incident) with the service its mapping chose."""
    return replace(item, service=service, raw_service=raw)
