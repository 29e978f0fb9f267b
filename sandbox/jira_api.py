"""The Jira API simulator: the Jira teams' projects of the generated organisation
(`sandbox.trackers`), as Jira Cloud or as Jira Server/Data Center serves them.

Cloud (`flavour="cloud"`): `GET|POST /rest/api/3/search/jql` (enhanced search: `nextPageToken`,
`isLast`, no `total`), `POST /rest/api/3/changelog/bulkfetch` (status histories of up to 1000
issues, paged by `nextPageToken`), `GET /rest/api/3/status`; the old `/rest/api/{2,3}/search`
answers 410 Gone, as Cloud does since 2025. Basic auth: the account's e-mail and API token.
Both: `GET /rest/api/{2,3}/issue/{key}/remotelink` (an issue's remote links: a Jira
requirement's link to its MR's commit, `object.url` a GitLab commit URL).
Server/DC (`flavour="server"`): `GET /rest/api/2/search` (`startAt`, `maxResults`, `total`,
`expand=changelog` embeds each issue's history), `GET /rest/api/2/status`. Bearer auth: a
personal access token.

JQL: the subset the collector sends, parsed for real (anything else is a 400 naming it):
`project in (A, B)`, `(<incidents>)` or `NOT (<incidents>)` where the incidents clause is
`issuetype = X` / `issuetype in (X, Y)`, `updated >= "yyyy-MM-dd HH:mm"` read in the account's
time zone (`timezone`, to the minute), joined by AND, then `ORDER BY updated ASC, key ASC`.

The world is shown as of `at` (`advance`): issues created later do not exist, transitions later
have not happened, an incident moved to another service later (`TrackerItem.moved_at`) still
shows its first component. The move is a history entry of its own (field `components`, the old
and new component), and moves the issue's `updated`; the bulk changelog serves only the entries
of the `fieldIds` asked for, as Jira does. `corrupt(key)` serves that issue with an unreadable
`created`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.model import Organisation
from sandbox.registry_api_common import basic_credentials, same
from sandbox.server import HTTPError, Request, Response, Router
from sandbox.trackers import TrackerItem

ISSUE_TYPES = {"requirement": "Story", "bug": "Bug", "task": "Task", "incident": "Incident"}
CATEGORY_KEYS = {"todo": "new", "in_progress": "indeterminate", "done": "done"}
STATUS_IDS = {"To Do": "10000", "In Progress": "3", "Done": "10001", "Reopened": "4"}
STATUS_CATEGORY = {
    "To Do": "new",
    "In Progress": "indeterminate",
    "Done": "done",
    "Reopened": "new",
}
GONE = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full "
    "migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
_CLAUSE_PROJECT = re.compile(r"^project\s+(?:in\s*\(([^)]*)\)|=\s*\"?([\w-]+)\"?)$", re.I)
_CLAUSE_UPDATED = re.compile(r'^updated\s*>=\s*"(\d{4}-\d{2}-\d{2} \d{2}:\d{2})"$', re.I)
_CLAUSE_TYPE = re.compile(
    r"^(NOT\s+)?\(\s*issuetype\s+(?:in\s*\(([^)]*)\)|=\s*\"?([\w ]+?)\"?)\s*\)$", re.I
)


def jira_time(dt: datetime) -> str:
    """A time as Jira writes it: `2026-11-02T09:00:00.000+0000` (UTC here)."""
    u = dt.astimezone(UTC)
    return f"{u:%Y-%m-%dT%H:%M:%S}.{u.microsecond // 1000:03d}+0000"


@dataclass(frozen=True)
class Query:
    projects: frozenset[str] | None
    types: frozenset[str] | None
    negate: bool
    updated_since: datetime | None


def parse_jql(jql: str, zone: ZoneInfo) -> Query:
    """The collector's JQL subset (module docstring); HTTPError 400 for anything else."""
    body, _, order = jql.partition(" ORDER BY ")
    if order and order.strip().lower() != "updated asc, key asc":
        raise _bad_jql(f"unsupported ORDER BY {order!r}")
    projects = types = since = None
    negate = False
    for clause in [c.strip() for c in re.split(r"\s+AND\s+", body.strip()) if c.strip()]:
        if m := _CLAUSE_PROJECT.match(clause):
            projects = frozenset(_names(m.group(1) or m.group(2)))
        elif m := _CLAUSE_UPDATED.match(clause):
            local = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=zone)
            since = local.astimezone(UTC)
        elif m := _CLAUSE_TYPE.match(clause):
            negate = bool(m.group(1))
            types = frozenset(_names(m.group(2) or m.group(3)))
        else:
            raise _bad_jql(f"Error in the JQL Query: cannot read {clause!r}")
    return Query(projects, types, negate, since)


def _names(text: str) -> list[str]:
    return [n.strip().strip('"') for n in text.split(",") if n.strip()]


def _bad_jql(message: str) -> HTTPError:
    return HTTPError(400, message)


class JiraSimulator:
    """Jira Cloud or Server/DC over the organisation's Jira projects (module docstring)."""

    def __init__(
        self,
        org: Organisation,
        user: str,
        token: str,
        *,
        flavour: str = "cloud",
        at: datetime | None = None,
        timezone: str = "Asia/Shanghai",
        gitlab_url: str = "https://gitlab.sandbox.test",
    ) -> None:
        if flavour not in ("cloud", "server"):
            raise ValueError(f"unknown Jira flavour {flavour!r}; use cloud or server")
        self.org, self.user, self.token, self.flavour = org, user, token, flavour
        self.at = at or org.now
        self.zone = ZoneInfo(timezone)
        self.gitlab_url = gitlab_url
        self.items = [i for i in org.trackers.of("jira")]
        self.paths = {s.name: s.path for s in org.services}
        self.corrupted: set[str] = set()
        self.router = Router()
        for version in ("2", "3") if flavour == "cloud" else ("2",):
            self.router.add(f"/rest/api/{version}/issue/{{key}}/remotelink", self.remote_links)
        if flavour == "cloud":
            self.router.add("/rest/api/3/search/jql", self.search_jql, ("GET", "POST"))
            self.router.add("/rest/api/3/changelog/bulkfetch", self.bulk_changelog, ("POST",))
            for version in ("2", "3"):  # Cloud serves REST v2 too, but for the removed search
                self.router.add(f"/rest/api/{version}/status", self.statuses)
            for old in ("/rest/api/3/search", "/rest/api/2/search"):
                self.router.add(old, self.gone, ("GET", "POST"))
        else:
            self.router.add("/rest/api/2/search", self.search_server, ("GET", "POST"))
            self.router.add("/rest/api/2/status", self.statuses)

    def advance(self, at: datetime) -> None:
        """Show the projects as they are at `at`."""
        self.at = at

    def corrupt(self, key: str) -> None:
        """Serve issue `key` with a `created` no parser reads."""
        self.corrupted.add(key)

    def authorised(self, request: Request) -> bool:
        """Cloud: basic auth with the account and API token; Server/DC: a bearer token."""
        if self.flavour == "cloud":
            found = basic_credentials(request)
            return found is not None and same(found[0], self.user) and same(found[1], self.token)
        header = request.headers.get("authorization", "")
        return header.startswith("Bearer ") and same(header[7:], self.token)

    # -- the world as of `at` ----------------------------------------------------------------

    def visible(self, query: Query) -> list[TrackerItem]:
        """The issues `query` selects, as of `at`, by (updated, key)."""
        found = []
        for item in self.items:
            if item.created_at > self.at:
                continue
            if query.projects is not None and item.project not in query.projects:
                continue
            if query.types is not None and (ISSUE_TYPES[item.kind] in query.types) == query.negate:
                continue
            if query.updated_since is not None and self.updated(item) < query.updated_since:
                continue
            found.append(item)
        return sorted(found, key=lambda i: (self.updated(i), i.project, i.number))

    def history(self, item: TrackerItem) -> list[Any]:
        return [t for t in item.transitions if t.at <= self.at]

    def moved(self, item: TrackerItem) -> bool:
        """Whether the item's move to another service (component) has happened."""
        return item.moved_at is not None and item.moved_at <= self.at

    def updated(self, item: TrackerItem) -> datetime:
        moved = [item.moved_at] if self.moved(item) and item.moved_at else []
        return max([item.created_at, *(t.at for t in self.history(item)), *moved])

    def changes(self, item: TrackerItem, fields: Any = None) -> list[dict[str, Any]]:
        """The item's history entries as of `at`, in time order: its status changes and its move
        (of the `fields` ids only, when given)."""
        found = [(t.at, t.id, self.change(t)) for t in self.history(item)]
        if self.moved(item) and item.moved_at is not None and item.move_id is not None:
            found.append((item.moved_at, item.move_id, self.component_change(item)))
        entries = [entry for *_, entry in sorted(found, key=lambda f: (f[0], f[1]))]
        if fields:
            wanted = {str(f) for f in fields}
            entries = [e for e in entries if any(i["fieldId"] in wanted for i in e["items"])]
        return entries

    # -- payloads ----------------------------------------------------------------------------

    def issue(self, request: Request, item: TrackerItem, changelog: bool) -> dict[str, Any]:
        history = self.history(item)
        status = history[-1].to_status if history else "To Do"
        done = [t.at for t in history if t.to_category == "done"]
        resolved = done[-1] if history and history[-1].to_category == "done" else None
        if item.incident is not None and resolved is not None and item.incident.closed_at:
            resolved = item.incident.closed_at
        version = "3" if self.flavour == "cloud" else "2"
        fields: dict[str, Any] = {
            "summary": item.title,
            "issuetype": {
                "id": str(list(ISSUE_TYPES).index(item.kind) + 10001),
                "name": ISSUE_TYPES[item.kind],
            },
            "project": {
                "id": str(10000 + sum(map(ord, item.project))),
                "key": item.project,
                "name": item.team,
            },
            "status": {
                "id": STATUS_IDS[status],
                "name": status,
                "statusCategory": {"key": STATUS_CATEGORY[status]},
            },
            "components": [{"name": service}] if (service := self.service(item)) else [],
            "labels": [item.team],
            "priority": {"name": "High" if item.kind in ("incident", "bug") else "Medium"},
            "created": "yesterday" if item.key in self.corrupted else jira_time(item.created_at),
            "updated": jira_time(self.updated(item)),
            "resolutiondate": jira_time(resolved) if resolved else None,
            "description": self.description(item),
        }
        payload: dict[str, Any] = {
            "id": str(item.id),
            "key": item.key,
            "self": f"{request.base_url}/rest/api/{version}/issue/{item.id}",
            "fields": fields,
        }
        if changelog:
            histories = self.changes(item)
            payload["changelog"] = {
                "startAt": 0,
                "maxResults": len(histories),
                "total": len(histories),
                "histories": histories,
            }
        return payload

    def description(self, item: TrackerItem) -> Any:
        """The issue's description: Cloud's Atlassian Document Format, Server's wiki text; an
        incident's explicit link and a bug's MR are written in it as teams do."""
        lines = [f"Filed by {item.author}."]
        if item.link is not None:
            kind, ident = item.link
            lines.append(
                f"Caused by {kind} {ident}."
                if kind == "deployment"
                else f"Caused by pipeline #{ident}."
            )
        if item.caused_by is not None:
            path, iid = item.caused_by
            lines.append(f"Introduced by {self.gitlab_url}/{path}/-/merge_requests/{iid}")
        if self.flavour == "server":
            return "\n".join(lines)
        return {
            "type": "doc",
            "version": 1,
            "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in lines
            ],
        }

    def service(self, item: TrackerItem) -> str | None:
        """The item's component as of `at`."""
        return item.service_at(self.at)

    def component_id(self, name: str | None) -> str | None:
        """A component's id: the service's position in the organisation."""
        names = [s.name for s in self.org.services]
        return None if name not in names else str(10100 + names.index(name))

    def component_change(self, item: TrackerItem) -> dict[str, Any]:
        """The history entry of an item's move to another component (service)."""
        assert item.moved_at is not None
        moved = (self.component_id(item.moved_from), item.moved_from)
        now = (self.component_id(item.service), item.service)
        return history_entry(item.move_id, item.moved_at, "Component", "components", moved, now)

    def change(self, t: Any) -> dict[str, Any]:
        was = (STATUS_IDS.get(t.from_status or ""), t.from_status)
        now = (STATUS_IDS[t.to_status], t.to_status)
        return history_entry(t.id, t.at, "status", "status", was, now)

    # -- handlers ----------------------------------------------------------------------------

    def _query(self, request: Request) -> tuple[Query, dict[str, Any]]:
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST":
            args.update(request.json() or {})
        jql = args.get("jql")
        if not jql:
            raise HTTPError(400, "jql is required (unbounded searches are not allowed)")
        return parse_jql(str(jql), self.zone), args

    def search_jql(self, request: Request) -> Any:
        """Cloud's enhanced search: a page of issues, `nextPageToken` while more follow."""
        query, args = self._query(request)
        size = min(_int(args.get("maxResults"), 50), 5000)
        start = _decode(args.get("nextPageToken"))
        issues = self.visible(query)
        page = issues[start : start + size]
        body: dict[str, Any] = {
            "issues": [self.issue(request, i, False) for i in page],
            "isLast": start + size >= len(issues),
        }
        if not body["isLast"]:
            body["nextPageToken"] = base64.urlsafe_b64encode(f"o{start + size}".encode()).decode()
        return body

    def bulk_changelog(self, request: Request) -> Any:
        """Status histories of the issues named, `maxResults` histories a page."""
        args = request.json() or {}
        wanted = [str(k) for k in args.get("issueIdsOrKeys") or []]
        if not wanted or len(wanted) > 1000:
            raise HTTPError(400, "issueIdsOrKeys: between 1 and 1000 issues")
        size = min(_int(args.get("maxResults"), 1000), 10000)
        start = _decode(args.get("nextPageToken"))
        by = {str(i.id): i for i in self.items} | {i.key: i for i in self.items}
        histories = [
            (str(by[k].id), change)
            for k in wanted
            if k in by and by[k].created_at <= self.at
            for change in self.changes(by[k], args.get("fieldIds"))
        ]
        page = histories[start : start + size]
        logs: dict[str, list[Any]] = {}
        for issue_id, change in page:
            logs.setdefault(issue_id, []).append(change)
        body: dict[str, Any] = {
            "issueChangeLogs": [{"issueId": k, "changeHistories": v} for k, v in logs.items()]
        }
        if start + size < len(histories):
            body["nextPageToken"] = base64.urlsafe_b64encode(f"o{start + size}".encode()).decode()
        return body

    def search_server(self, request: Request) -> Any:
        """Server/DC search: `startAt`/`maxResults`/`total`, histories with `expand=changelog`."""
        query, args = self._query(request)
        size = min(_int(args.get("maxResults"), 50), 1000)
        start = _int(args.get("startAt"), 0)
        issues = self.visible(query)
        expand = "changelog" in str(args.get("expand", ""))
        return {
            "expand": "schema,names",
            "startAt": start,
            "maxResults": size,
            "total": len(issues),
            "issues": [self.issue(request, i, expand) for i in issues[start : start + size]],
        }

    def remote_links(self, request: Request) -> Any:
        """An issue's remote links, as Jira documents them (`object.url`, `object.title`)."""
        key = request.params["key"]
        item = next((i for i in self.items if i.key == key and i.created_at <= self.at), None)
        if item is None:
            raise HTTPError(404, f"Issue Does Not Exist: {key}")
        return [
            {
                "id": 10000 + n,
                "self": f"/rest/api/2/issue/{key}/remotelink/{10000 + n}",
                "application": {"type": "com.gitlab", "name": "GitLab"},
                "relationship": "mentioned in",
                "object": {
                    "url": f"{self.gitlab_url}/{path}/-/commit/{sha}",
                    "title": f"{path}@{sha[:8]}",
                },
            }
            for n, (path, sha) in enumerate(item.remote_commits, start=1)
        ]

    def statuses(self, request: Request) -> Any:
        """Every status with its category (what changelog entries name)."""
        return [
            {"id": ident, "name": name, "statusCategory": {"key": STATUS_CATEGORY[name]}}
            for name, ident in STATUS_IDS.items()
        ]

    def gone(self, request: Request) -> Any:
        """Cloud's answer to the removed search API."""
        return Response({"errorMessages": [GONE], "errors": {}}, 410)


def _int(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number >= 0 else default


def _decode(token: Any) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(str(token).encode()).decode()
        return int(text[1:]) if text.startswith("o") else 0
    except ValueError:
        raise HTTPError(400, f"invalid nextPageToken {token!r}") from None


def history_entry(
    ident: Any,
    at: datetime,
    field: str,
    field_id: str,
    was: tuple[str | None, str | None],
    now: tuple[str | None, str | None],
) -> dict[str, Any]:
    """One changelog entry of a Jira issue: `field` from `was` to `now`, each (id, name)."""
    return {
        "id": str(ident),
        "author": {"accountId": "sandbox", "displayName": "Sandbox"},
        "created": jira_time(at),
        "items": [
            {
                "field": field,
                "fieldtype": "jira",
                "fieldId": field_id,
                "from": was[0],
                "fromString": was[1],
                "to": now[0],
                "toString": now[1],
            }
        ],
    }
