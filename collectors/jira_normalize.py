"""Pure normalisers of Jira payloads (Cloud REST v3 and Server/Data Center REST v2): an issue and
its status history become a `TrackerIncident` or a `TrackerWorkItem` (`collectors.trackers`).

Decisions where DESIGN.md is silent:
- Which issues are incidents is the source's `incidents` JQL: the collector searches them apart
  (`incident=True` here); every other issue is a work item, its kind by issue type
  (`requirement_types`, `bug_types`, else task).
- Status categories come from Jira's own (`new` -> todo, `indeterminate` -> in_progress, `done`
  -> done): the issue's current one from `fields.status.statusCategory.key`, a history entry's
  from the status list (`GET /status`, by status id, else by name); a status neither names is
  left without a category (it never starts or resolves an item).
- An incident is `open` (todo), `acknowledged` (in progress) or `resolved` (done); acknowledged
  at its first move out of todo, resolved at `resolutiondate` (else its last move into done),
  closed then too. Reopened: open again, without a resolution.
- Explicit links (an incident's cause, a work item's commits and MRs) are read from the
  description (Cloud's Atlassian Document Format: its text and link URLs; Server's wiki text)
  and from the issue's remote links (`object.url` of `/issue/{key}/remotelink`: a GitLab MR,
  commit, pipeline or deployment URL) by `warehouse.references.change_refs`, the description's
  first.
- A history entry's `created` is an ISO time, or epoch seconds (as the bulk changelog example in
  Atlassian's OpenAPI document has it); any other value rejects the issue.
- Service mapping values: `project` (key), `component` (names), `label`, and each rule's
  `field` (`field:<id>`: a text, an option's `value`/`name`, or a list of them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from collectors.payload import Fields, RejectedPayload, parse_time, rejects
from collectors.trackers import (
    DONE,
    IN_PROGRESS,
    TODO,
    TrackerIncident,
    TrackerWorkItem,
    Transition,
    map_service,
)
from config.settings import JiraServiceRule
from warehouse.references import ChangeRef, change_refs, incident_mentions

CATEGORIES = {"new": TODO, "indeterminate": IN_PROGRESS, "done": DONE}
INCIDENT_STATUS = {TODO: "open", IN_PROGRESS: "acknowledged", DONE: "resolved"}


def status_categories(statuses: Any) -> dict[str, str]:
    """Status id and name -> our category, from `GET /rest/api/{2,3}/status`."""
    found: dict[str, str] = {}
    for s in statuses if isinstance(statuses, list) else []:
        f = Fields(s, "status")
        category = CATEGORIES.get(f.obj("statusCategory").string("key") or "")
        if category:
            for name in (f.string("id"), f.string("name")):
                if name:
                    found[name] = category
    return found


@rejects("jira issue")
def normalize_issue(
    payload: Any,
    histories: Sequence[Any],
    *,
    incident: bool,
    categories: Mapping[str, str],
    rules: Sequence[JiraServiceRule],
    requirement_types: Collection[str],
    bug_types: Collection[str],
    base_url: str,
    remote_links: Sequence[Any] = (),
) -> TrackerIncident | TrackerWorkItem:
    """The incident or work item of one issue, its history entries and its remote links
    (`/issue/{key}/remotelink` answers; module docstring)."""
    f = Fields(payload)
    key = f.required("key")
    fields = f.obj("fields")
    created = fields.required_time("created")
    transitions = tuple(
        sorted(
            (t for h in histories for t in _transitions(h, categories)),
            key=lambda t: (t.at, t.external_id),
        )
    )
    status = fields.obj("status")
    category = CATEGORIES.get(status.obj("statusCategory").string("key") or "", TODO)
    service, raw_service = map_service(rules, _mapping_values(fields, rules))
    links = tuple(
        dict.fromkeys(
            change_refs(description_text(fields.raw("description")))
            + remote_link_refs(remote_links)
        )
    )
    common: dict[str, Any] = {
        "title": fields.string("summary"),
        "priority": fields.obj("priority").string("name"),
        "url": f"{base_url.rstrip('/')}/browse/{key}",
        "service": service,
        "raw_service": raw_service,
        "transitions": transitions,
        "links": links,
    }
    if incident:
        resolved = fields.time("resolutiondate") if category == DONE else None
        if category == DONE and resolved is None:
            resolved = next((t.at for t in reversed(transitions) if t.to_category == DONE), None)
        return TrackerIncident(
            f.ident("id"),
            key,
            status=INCIDENT_STATUS[category],
            raw_status=status.string("name"),
            opened_at=created,
            resolved_at=resolved,
            acknowledged_at=next(
                (t.at for t in transitions if t.to_category not in (None, TODO)), None
            ),
            closed_at=resolved,
            updated_at=fields.time("updated"),
            severity=fields.obj("priority").string("name"),
            mentions=tuple(
                incident_mentions(
                    fields.string("summary"), description_text(fields.raw("description"))
                )
            ),
            **common,
        )
    raw_kind = fields.obj("issuetype").string("name")
    kind = (
        "requirement"
        if raw_kind in requirement_types
        else "bug"
        if raw_kind in bug_types
        else "task"
    )
    return TrackerWorkItem(
        f.ident("id"),
        key,
        kind,
        raw_kind,
        status=status.string("name"),
        status_category=category,
        created_at=created,
        updated_at=fields.time("updated"),
        closed_at=fields.time("resolutiondate") if category == DONE else None,
        **common,
    )


def remote_link_refs(remote_links: Sequence[Any]) -> list[ChangeRef]:
    """The changes an issue's remote links name: each link's `object.url` (a GitLab MR, commit,
    pipeline or deployment URL; any other URL names none), in order."""
    found: list[ChangeRef] = []
    for link in remote_links:
        target = link.get("object") if isinstance(link, Mapping) else None
        url = target.get("url") if isinstance(target, Mapping) else None
        if isinstance(url, str):
            found.extend(change_refs(url))
    return found


def _transitions(history: Any, categories: Mapping[str, str]) -> list[Transition]:
    h = Fields(history, "changelog")
    created = h.raw("created")
    if isinstance(created, int | float) and not isinstance(created, bool):
        at = datetime.fromtimestamp(created, UTC)
    else:
        at = parse_time(created, "changelog.created") or _missing("changelog.created")
    author = h.obj("author")
    found = []
    for n, item in enumerate(h.objects("items")):
        if (item.string("fieldId") or item.string("field")) != "status":
            continue
        found.append(
            Transition(
                f"{h.ident('id')}/{n}",
                at,
                item.string("fromString"),
                item.string("toString"),
                _category(categories, item.string("from"), item.string("fromString")),
                _category(categories, item.string("to"), item.string("toString")),
                author.string("displayName") or author.string("name") or author.string("accountId"),
            )
        )
    return found


def _category(categories: Mapping[str, str], ident: str | None, name: str | None) -> str | None:
    return categories.get(ident or "") or categories.get(name or "")


def _missing(field: str) -> datetime:
    raise RejectedPayload(f"missing {field}")


def _mapping_values(fields: Fields, rules: Sequence[JiraServiceRule]) -> dict[str, set[str]]:
    values = {
        "project": {v for v in [fields.obj("project").string("key")] if v},
        "component": {c.string("name") or "" for c in fields.objects("components")} - {""},
        "label": {str(v) for v in fields.array("labels")},
    }
    for rule in rules:
        if rule.field:
            values[f"field:{rule.field}"] = _field_values(fields.raw(rule.field))
    return values


def _field_values(value: Any) -> set[str]:
    """A custom field's values as text: a string, an option (`value`/`name`), or a list."""
    if value is None:
        return set()
    if isinstance(value, list):
        return {v for item in value for v in _field_values(item)}
    if isinstance(value, Mapping):
        return {str(v) for v in (value.get("value"), value.get("name")) if v is not None}
    return {str(value)}


def description_text(value: Any) -> str:
    """A description as plain text: wiki text as it is; an ADF document's text nodes and link
    URLs (`attrs.url`, link marks' `attrs.href`), one line per block."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
            parts.append("\n")
            return
        if not isinstance(node, Mapping):
            return
        if isinstance(node.get("text"), str):
            parts.append(node["text"])
        found = node.get("attrs")
        attrs: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        if isinstance(attrs.get("url"), str):
            parts.append(f" {attrs['url']} ")
        for mark in node.get("marks") or []:
            href = mark.get("attrs", {}).get("href") if isinstance(mark, Mapping) else None
            if isinstance(href, str):
                parts.append(f" {href} ")
        walk(node.get("content") or [])

    walk(value)
    return "".join(parts)
