"""The Jira collector: Jira Cloud (REST v3) or Server/Data Center (REST v2), issues as incidents
(the source's `incidents` JQL) and work items (every other issue), with their status histories.

Two streams, each one partition: `incidents` and `work_items`, each a bounded JQL search
    project in (...) AND (<incidents>) | NOT (<incidents>) AND updated >= "<cursor>"
    ORDER BY updated ASC, key ASC
Cloud pages it with `GET /rest/api/3/search/jql` and `nextPageToken` (no total) and fetches the
page's status histories with one `POST /rest/api/3/changelog/bulkfetch` (paged by its own
`nextPageToken`); Server/DC pages `GET /rest/api/2/search` by `startAt` with `expand=changelog`.
One `GET /status` a sync reads every status's category (history entries name statuses only).
Each new or changed issue's remote links: `GET /rest/api/{2,3}/issue/{key}/remotelink` (one
request an issue, `remote_links = false` skips them).

Decisions where DESIGN.md is silent:
- The client is `requests` on the shared `PolicySession` (rate limiter, counting, timeout, the
  one retry policy: 429 with Retry-After, 5xx, dropped connections): the REST calls are few and
  plain, so no Jira client library (whose own retry and pagination would bypass the policy).
- Cursor per stream: the newest `updated` seen, capped at the sync's start; the next search
  starts `[sync] overlap` before it, written to the minute (JQL's precision) in the account's
  time zone (`timezone`: Jira reads JQL dates in the searching user's zone), truncated down, so
  the overlap covers the lost seconds. A first (or `--full`) sync reaches `history_days` back.
- A search answering 410 Gone is the removed Cloud search API: the error says to set
  `flavour = "cloud"`. A repeated `nextPageToken` ends the stream with an error (a loop).
- Remote links are read only for the issues a page shows new or changed (`updated` differs from
  the stored payload's), so a sync with no change reads none; they are stored in the issue's raw
  payload (`remotelinks`). A link added without touching the issue (Jira does not move `updated`
  for remote links) is read at the issue's next change, or by a `--full` sync. An issue whose
  remote links answer 404 (deleted meanwhile) has none.
- Auth: Cloud basic auth (`user_env`: the account's e-mail, `token_env`: its API token);
  Server/DC bearer (`user_env = ""`, `token_env`: a personal access token).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import requests
from sqlalchemy import select

from collectors import jira_normalize as norm
from collectors.frame import Collector, SyncOptions
from collectors.http import PolicySession, RequestCounter
from collectors.payload import RejectedPayload, external_id_of, parse_time
from collectors.refs import Refs
from collectors.sync import Batch, SyncRun
from collectors.trackers import TrackerIncident, TrackerWorkItem, TrackerWriter
from config.redaction import redact_url
from config.settings import JiraSource
from warehouse.raw import Raw
from warehouse.schema import RawPayload
from warehouse.sync_state import get_state

log = logging.getLogger(__name__)
STREAMS = ("incidents", "work_items")
FIELDS = (
    "summary,status,issuetype,project,components,labels,priority,created,updated,"
    "resolutiondate,description"
)
CHANGELOG_PAGE = 1000  # history entries per bulk changelog request


class JiraError(requests.RequestException):
    """A Jira answer the collector cannot go on from (the message says what to do)."""


class JiraCollector(Collector[str]):
    """Syncs one `[[sources.jira]]`; a partition is a stream (incidents, work items)."""

    kind = "jira"
    unit = "streams"
    listing_errors = (requests.RequestException,)

    def __init__(self, source: JiraSource, options: SyncOptions) -> None:
        super().__init__(source, options)
        self.source: JiraSource = source
        self.api = "3" if source.flavour == "cloud" else "2"
        self.zone = ZoneInfo(source.timezone)
        self.categories: dict[str, str] = {}
        self.writer: TrackerWriter | None = None
        self.sessions: list[PolicySession] = []

    def make_client(self, counter: RequestCounter) -> PolicySession:
        """A requests session under the shared HTTP policy, authenticated for the flavour."""
        session = PolicySession(self.limiter, counter, self.settings.sync.timeout_s, self.retry)
        token = os.environ.get(self.source.token_env, "") if self.source.token_env else ""
        user = os.environ.get(self.source.user_env, "") if self.source.user_env else ""
        if user:
            session.auth = (user, token)
        elif token:
            session.headers["Authorization"] = f"Bearer {token}"
        session.headers["Accept"] = "application/json"
        self.sessions.append(session)
        return session

    def url(self, path: str) -> str:
        return f"{self.source.url.rstrip('/')}/rest/api/{self.api}/{path}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of one request; `JiraError` naming the URL and what to do otherwise."""
        response = self.client().request(method, self.url(path), **kwargs)
        if response.status_code != 200:
            raise JiraError(self.explain(response))
        return response.json()

    def explain(self, response: requests.Response) -> str:
        where = redact_url(response.url.split("?")[0])
        text = f"HTTP {response.status_code} {response.reason} from {where}"
        if response.status_code == 410:
            return f'{text}: Jira Cloud removed this search API; set flavour = "cloud"'
        if response.status_code in (401, 403):
            names = " / ".join(v for v in (self.source.user_env, self.source.token_env) if v)
            return f"{text}: check the credentials ({names}) and the Browse projects permission"
        if response.status_code == 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            messages = body.get("errorMessages") or [body.get("message", "")]
            return f"{text}: {'; '.join(str(m) for m in messages)[:300]}"
        return text

    # -- the sync ------------------------------------------------------------------------------

    def partitions(self, run: SyncRun) -> list[str]:
        """The two streams, after reading the statuses' categories (one request)."""
        self.writer = TrackerWriter(self.engine, run.source_id, Refs.from_settings(self.settings))
        self.categories = norm.status_categories(self.call("GET", "status"))
        return list(STREAMS)

    def cannot_list(self, exc: Exception) -> str:
        return f"{self.source.name}: cannot read the statuses from {redact_url(self.source.url)}: {exc}"

    def lease_of(self, partition: str) -> tuple[str, str]:
        return partition, ""

    def sync_partition(self, run: SyncRun, partition: str) -> None:
        run.attempt(
            partition,
            "",
            f"stream {partition}",
            lambda: self._sync_stream(run, partition),
            known=(requests.RequestException,),
            describe=lambda exc: f"{self.source.name}: {partition}: {exc}",
        )

    def jql(self, stream: str, since: datetime) -> str:
        """The stream's bounded search (module docstring)."""
        clauses = []
        if self.source.projects:
            quoted = ", ".join(f'"{p}"' for p in self.source.projects)
            clauses.append(f"project in ({quoted})")
        incidents = f"({self.source.incidents})"
        clauses.append(incidents if stream == "incidents" else f"NOT {incidents}")
        clauses.append(f'updated >= "{since.astimezone(self.zone):%Y-%m-%d %H:%M}"')
        return " AND ".join(clauses) + " ORDER BY updated ASC, key ASC"

    def _sync_stream(self, run: SyncRun, stream: str) -> None:
        before = self.thread_requests()
        with self.engine.connect() as conn:
            state = None if self.full else get_state(conn, run.source_id, stream)
        if state and state.cursor:
            since = datetime.fromisoformat(state.cursor) - self.settings.sync.overlap
        else:
            since = self.options.since(run.started_at)
        newest: datetime | None = None
        pending: Batch | None = None
        writer = self.writer
        assert writer is not None
        unmapped = writer.unmapped
        for page in self.search(self.jql(stream, since)):
            if pending is not None:
                run.write(stream, pending)
            pending = Batch()
            for issue in page:
                newest = _newer(newest, issue)
            changed = page if self.full else self._changed(run, stream, page)
            if self.source.flavour == "cloud":
                histories = self._changelogs([i.get("id") for i in changed])
            else:
                histories = {str(i.get("id")): _histories(i) for i in changed}
            for issue in changed:
                remote = self._remote_links(issue)
                self._collect(
                    stream, issue, histories.get(str(issue.get("id")), []), remote, pending
                )
        cursor = min(newest, run.started_at).isoformat() if newest else None
        requests_made = self.thread_requests() - before
        run.write(
            stream, pending or Batch(), after=run.save_cursor(stream, "", cursor, requests_made)
        )
        run.count(stream, partitions=1, requests=requests_made)
        if writer.unmapped > unmapped:
            log.info(
                "%s: %s: %d rows match no service mapping rule (kept without a service)",
                self.source.name,
                stream,
                writer.unmapped - unmapped,
            )

    def _remote_links(self, issue: Any) -> list[Any]:
        """The issue's remote links (module docstring); [] when not read or gone (404)."""
        key = issue.get("key") if isinstance(issue, dict) else None
        if not self.source.remote_links or not isinstance(key, str) or not key:
            return []
        response = self.client().request("GET", self.url(f"issue/{key}/remotelink"))
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise JiraError(self.explain(response))
        body = response.json()
        return body if isinstance(body, list) else []

    def _collect(
        self, stream: str, issue: Any, histories: list[Any], remote: list[Any], batch: Batch
    ) -> None:
        assert self.writer is not None
        payload = (
            {**issue, "changelog": {"histories": histories}, "remotelinks": remote}
            if isinstance(issue, dict)
            else issue
        )
        external_id = external_id_of(issue)
        try:
            row = norm.normalize_issue(
                issue,
                histories,
                incident=stream == "incidents",
                categories=self.categories,
                rules=self.source.services,
                requirement_types=self.source.requirement_types,
                bug_types=self.source.bug_types,
                base_url=self.source.url,
                remote_links=remote,
            )
        except RejectedPayload as exc:
            batch.raws.append(Raw(stream, external_id, payload, str(exc)))
            batch.rejected += 1
            return
        batch.raws.append(Raw(stream, external_id, payload))
        if isinstance(row, TrackerIncident):
            self.writer.batch(incidents=[row], batch=batch)
        elif isinstance(row, TrackerWorkItem):
            self.writer.batch(items=[row], batch=batch)

    # -- reading -------------------------------------------------------------------------------

    def search(self, jql: str) -> Iterator[list[dict[str, Any]]]:
        """Pages of the issues the search finds (Server/DC's with their histories)."""
        if self.source.flavour == "cloud":
            yield from self._cloud_pages(jql)
        else:
            yield from self._server_pages(jql)

    def _changed(
        self, run: SyncRun, stream: str, page: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The issues of `page` whose `updated` differs from the stored payload's: an issue
        re-read by the overlap costs no changelog request and writes nothing."""
        ids = [external_id_of(i) for i in page]
        with self.engine.connect() as conn:
            stored: dict[str, Any] = dict(
                conn.execute(
                    select(RawPayload.external_id, RawPayload.payload).where(
                        RawPayload.source_id == run.source_id,
                        RawPayload.stream == stream,
                        RawPayload.external_id.in_(ids),
                        RawPayload.rejected.is_(False),
                    )
                ).all()
            )
        return [
            issue
            for issue, ident in zip(page, ids, strict=True)
            if _updated(stored.get(ident)) is None or _updated(stored.get(ident)) != _updated(issue)
        ]

    def _fields(self) -> str:
        extra = [r.field for r in self.source.services if r.field]
        return ",".join([FIELDS, *extra])

    def _cloud_pages(self, jql: str) -> Iterator[list[dict[str, Any]]]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            params = {"jql": jql, "fields": self._fields(), "maxResults": self.source.page_size}
            if token:
                params["nextPageToken"] = token
            body = self.call("GET", "search/jql", params=params)
            yield _issues(body)
            token = body.get("nextPageToken") if isinstance(body, dict) else None
            if not token or body.get("isLast"):
                return
            if token in seen:
                raise JiraError(f"loop detected in pagination: nextPageToken {token!r} came twice")
            seen.add(token)

    def _changelogs(self, ids: list[Any]) -> dict[str, list[Any]]:
        """Status histories of the issues `ids`, by issue id (bulk fetch, paged)."""
        found: dict[str, list[Any]] = {}
        wanted = [str(i) for i in ids if i is not None]
        token: str | None = None
        while wanted:
            body: dict[str, Any] = {
                "issueIdsOrKeys": wanted,
                "fieldIds": ["status"],
                "maxResults": CHANGELOG_PAGE,
            }
            if token:
                body["nextPageToken"] = token
            answer = self.call("POST", "changelog/bulkfetch", json=body)
            for log_ in _list(answer, "issueChangeLogs"):
                if isinstance(log_, dict):
                    found.setdefault(str(log_.get("issueId")), []).extend(
                        _list(log_, "changeHistories")
                    )
            token = answer.get("nextPageToken") if isinstance(answer, dict) else None
            if not token:
                break
        return found

    def _server_pages(self, jql: str) -> Iterator[list[dict[str, Any]]]:
        start = 0
        while True:
            params = {
                "jql": jql,
                "fields": self._fields(),
                "maxResults": self.source.page_size,
                "startAt": start,
                "expand": "changelog",
            }
            body = self.call("GET", "search", params=params)
            issues = _issues(body)
            yield issues
            start += len(issues)
            total = body.get("total") if isinstance(body, dict) else None
            if not issues or not isinstance(total, int) or start >= total:
                return

    def close(self) -> None:
        for session in self.sessions:
            session.close()


def _list(body: Any, key: str) -> list[Any]:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, list):
        raise JiraError(f"answer without a {key} list: {str(body)[:120]}")
    return value


def _issues(body: Any) -> list[dict[str, Any]]:
    """The issues of a search answer; one that is not an object is kept as `{"bad": value}` so
    it is stored as a rejected payload."""
    return [i if isinstance(i, dict) else {"bad": i} for i in _list(body, "issues")]


def _updated(payload: Any) -> Any:
    fields = payload.get("fields") if isinstance(payload, dict) else None
    return fields.get("updated") if isinstance(fields, dict) else None


def _histories(issue: Any) -> list[Any]:
    changelog = issue.get("changelog") if isinstance(issue, dict) else None
    histories = changelog.get("histories") if isinstance(changelog, dict) else None
    return histories if isinstance(histories, list) else []


def _newer(newest: datetime | None, issue: Any) -> datetime | None:
    fields = issue.get("fields") if isinstance(issue, dict) else None
    try:
        updated = parse_time(fields.get("updated") if isinstance(fields, dict) else None, "updated")
    except RejectedPayload:
        return newest
    if updated is None:
        return newest
    return updated if newest is None or updated > newest else newest


__all__ = ["JiraCollector", "JiraError"]
