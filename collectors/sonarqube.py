"""The SonarQube collector (httpx under the shared HTTP policy): per project, its branches, then
per branch the analyses since the last one seen (`api/project_analyses/search`, newest first),
each with its quality gate as computed at that analysis (`api/qualitygates/project_status
?analysisId=`) and, where the token may read it, the CI task that made it (`api/ce/activity`).
Rows: `code_analysis` (collectors/sonarqube_normalize.py holds the decisions on their content).

Decisions where DESIGN.md is silent:
- Projects: `projects` from config, else every project the token may browse
  (`api/components/search_projects`: Browse is enough, where `api/projects/search` needs
  Administer System). A partition (and lease) is a project; its cursor (stream `analyses`) is
  `{branch: newest analysis date seen}`, capped at the sync's start, re-read with `[sync] overlap`.
- The branch listing says when each branch was last analysed: a branch not analysed since its
  cursor costs no request, so a sync with nothing new costs one request per project (plus the
  project listing). A first sync reaches `[sync] history_days` back.
- An analysis already stored is not asked for its gate again (`--full` re-reads everything):
  a gate computed at an analysis does not change.
- Pull requests are not polled (their analyses never count for a policy); their webhooks are
  stored.
- Auth by `version`: 10.x/2025 a Bearer token; 9.9 LTS the token as basic-auth user name.
- `api/ce/activity` needs Administer on the project: a 401/403 there is not an error; the
  sync goes on without task ids (logged once per sync).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from collectors import sonarqube_normalize as norm
from collectors.frame import HttpCollector, SyncOptions
from collectors.payload import RejectedPayload, parse_time
from collectors.sync import Batch, SyncRun
from config.redaction import redact_url
from config.settings import SonarQubeSource
from warehouse.raw import Raw
from warehouse.schema import CodeAnalysis, Repo, SyncState

log = logging.getLogger(__name__)
STREAM = "analyses"
BATCH = 200


class SonarQubeError(Exception):
    """A SonarQube answer the collector cannot use (not the JSON it expects)."""


def sonar_time(at: datetime) -> str:
    """A datetime as SonarQube's `from`/`to` parameters take it: `2016-12-12T17:12:45+0000`."""
    return at.strftime("%Y-%m-%dT%H:%M:%S%z")


def credentials(source: SonarQubeSource) -> tuple[dict[str, str], httpx.Auth | None]:
    """The headers and auth of requests to `source`: Bearer (10) or the token as basic-auth user
    (9.9); neither without a token."""
    token = os.environ.get(source.token_env, "") if source.token_env else ""
    headers: dict[str, str] = {"Accept": "application/json"}
    if token and source.version == "9.9":
        return headers, httpx.BasicAuth(token, "")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers, None


def client_for(
    source: SonarQubeSource, transport: httpx.BaseTransport, timeout: float
) -> httpx.Client:
    """An httpx client on `source` with its credentials (the webhook's one-off reads)."""
    headers, auth = credentials(source)
    return httpx.Client(
        base_url=source.url.rstrip("/"),
        transport=transport,
        timeout=timeout,
        headers=headers,
        auth=auth,
    )


def get_json(client: httpx.Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
    """The JSON object at `path`; raises httpx.HTTPStatusError or SonarQubeError."""
    response = client.get(path, params=params)
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise SonarQubeError(f"not a JSON object from {redact_url(str(response.url))}")
    return body


def pages(client: httpx.Client, path: str, params: dict[str, Any], items: str) -> Iterator[Any]:
    """Every item of a SonarQube listing (`p`/`ps` paging, `paging.total`)."""
    page = 1
    while True:
        body = get_json(client, path, {**params, "p": page})
        found = body.get(items) or []
        if not isinstance(found, list):
            raise SonarQubeError(f"{items} is not a list in {path}")
        yield from found
        paging = body.get("paging") or {}
        total, size = paging.get("total"), paging.get("pageSize") or params.get("ps") or 100
        if not found or not isinstance(total, int) or page * int(size) >= total:
            return
        page += 1


class SonarQubeCollector(HttpCollector[str]):
    """Syncs one `[[sources.sonarqube]]`; a partition is a project key."""

    kind = "sonarqube"
    unit = "projects"
    listing_errors = (httpx.HTTPError, SonarQubeError, ValueError)

    def __init__(self, source: SonarQubeSource, options: SyncOptions) -> None:
        super().__init__(source, options)
        self.cursors: dict[str, dict[str, str]] = {}
        self.repos: dict[str, int] = {}
        self.tasks_readable = True

    def headers(self) -> dict[str, str]:
        return credentials(self.source)[0]

    def auth(self) -> httpx.Auth | None:
        return credentials(self.source)[1]

    def describe(self, exc: Exception) -> str:
        """An HTTP error as status and URL (secrets masked), anything else as its text."""
        if isinstance(exc, httpx.HTTPStatusError):
            hint = (
                f"; check the token in ${self.source.token_env} (Browse on the projects) and "
                f"`version` ({self.source.version})"
                if exc.response.status_code in (401, 403)
                else ""
            )
            return (
                f"HTTP {exc.response.status_code} from "
                f"{redact_url(str(exc.request.url).split('?')[0])}{hint}"
            )
        return str(exc) or type(exc).__name__

    def cannot_list(self, exc: Exception) -> str:
        return (
            f"{self.source.name}: cannot list projects from {redact_url(self.source.url)}: "
            f"{self.describe(exc)}"
        )

    # -- the sync ------------------------------------------------------------------------------

    def partitions(self, run: SyncRun) -> list[str]:
        before = self.thread_requests()
        keys = list(self.source.projects)
        batch = Batch()
        if not keys:
            params = {"ps": self.source.page_size}
            for item in pages(
                self.client(), "/api/components/search_projects", params, "components"
            ):
                if isinstance(item, dict) and isinstance(item.get("key"), str):
                    keys.append(item["key"])
                    batch.raws.append(Raw("projects", item["key"], item))
        run.write("projects", batch)
        run.count("projects", partitions=1, requests=self.thread_requests() - before)
        with self.engine.connect() as conn:
            if not self.full:
                rows = conn.execute(
                    select(SyncState.partition, SyncState.cursor).where(
                        SyncState.source_id == run.source_id, SyncState.stream == STREAM
                    )
                )
                self.cursors = {p: json.loads(c) for p, c in rows if c}
            self.repos = {path: rid for rid, path in conn.execute(select(Repo.id, Repo.path))}
        return keys

    def lease_of(self, partition: str) -> tuple[str, str]:
        return STREAM, partition

    def sync_partition(self, run: SyncRun, partition: str) -> None:
        before = self.thread_requests()
        try:
            run.attempt(
                STREAM,
                partition,
                f"project {partition}",
                lambda: self._project(run, partition, before),
                known=(httpx.HTTPError, SonarQubeError),
                describe=lambda exc: (
                    f"{self.source.name}: project {partition}: {STREAM}: {self.describe(exc)}; "
                    "the next sync resumes from the last saved cursor"
                ),
            )
        finally:
            run.count(STREAM, partitions=1, requests=self.thread_requests() - before)

    def _project(self, run: SyncRun, project: str, before: int) -> None:
        client = self.client()
        cursor = dict(self.cursors.get(project, {}))
        branches = get_json(client, "/api/project_branches/list", {"project": project})
        known = self._known(run, project)
        found: list[tuple[str, dict[str, Any]]] = []
        for branch in branches.get("branches") or []:
            name, last = branch.get("name"), branch.get("analysisDate")
            if not isinstance(name, str) or not last:
                continue
            seen = _when(cursor[name]) if name in cursor and not self.full else None
            if seen is not None and _when(str(last)) <= seen:
                continue  # not analysed since the last sync
            overlap = self.settings.sync.overlap
            start = seen - overlap if seen is not None else self.options.since(run.started_at)
            params = {"project": project, "branch": name, "from": sonar_time(start),
                      "ps": self.source.page_size}  # fmt: skip
            for analysis in pages(client, "/api/project_analyses/search", params, "analyses"):
                found.append((name, analysis))
            dates = [_when(str(a.get("date"))) for b, a in found if b == name]
            if dates and max(dates) > datetime.min.replace(tzinfo=UTC):
                cursor[name] = min(max(dates), run.started_at).isoformat()
        tasks = self._tasks(project, [a for _, a in found if a.get("key") not in known])
        batch = Batch()
        for branch, analysis in found:
            self._collect(run, project, branch, analysis, known, tasks, batch)
            if len(batch.raws) >= BATCH:
                run.write(STREAM, batch)
                batch = Batch()
        made = self.thread_requests() - before
        save = run.save_cursor(STREAM, project, json.dumps(cursor, sort_keys=True), made)
        run.write(STREAM, batch, after=save)

    def _known(self, run: SyncRun, project: str) -> set[str]:
        """Analysis keys of `project` already stored (none under `--full`)."""
        if self.full:
            return set()
        with self.engine.connect() as conn:
            return {
                str(k)
                for (k,) in conn.execute(
                    select(CodeAnalysis.analysis_key).where(
                        CodeAnalysis.source_id == run.source_id,
                        CodeAnalysis.project_key == project,
                        CodeAnalysis.analysis_key.is_not(None),
                    )
                )
            }

    def _tasks(self, project: str, new: list[dict[str, Any]]) -> dict[str, str]:
        """Analysis key -> the CI task that made it, for the new analyses of `project` ({} when
        there are none or the token may not read the project's activity)."""
        dates = [d for a in new if (d := _when(str(a.get("date")))).year > 1]
        if not dates or not self.tasks_readable:
            return {}
        params = {"component": project, "type": "REPORT", "ps": self.source.page_size,
                  "minSubmittedAt": sonar_time(min(dates) - timedelta(hours=1))}  # fmt: skip
        try:
            tasks = list(pages(self.client(), "/api/ce/activity", params, "tasks"))
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in (401, 403):
                raise
            self.tasks_readable = False
            log.warning("%s: the token may not read api/ce/activity: CI tasks stay unknown",
                        self.source.name)  # fmt: skip
            return {}
        return {
            str(t["analysisId"]): str(t["id"])
            for t in tasks
            if isinstance(t, dict) and t.get("analysisId") and t.get("id")
        }

    def _collect(
        self,
        run: SyncRun,
        project: str,
        branch: str,
        analysis: Any,
        known: set[str],
        tasks: dict[str, str],
        batch: Batch,
    ) -> None:
        key = analysis.get("key") if isinstance(analysis, dict) else None
        if isinstance(key, str) and key in known:
            return
        ext = f"{project}/{key}"
        status = None
        if isinstance(key, str) and analysis.get("revision"):
            status = get_json(
                self.client(), "/api/qualitygates/project_status", {"analysisId": key}
            )
        task = tasks.get(key) if isinstance(key, str) else None
        payload = {"item": analysis, "status": status, "branch": branch, "task": task}
        try:
            row = norm.normalize_analysis(
                analysis,
                status,
                source_id=run.source_id,
                project=project,
                branch=branch,
                repositories=self.source.repositories,
                server=self.source.url,
                task_id=task,
            )
        except RejectedPayload as exc:
            batch.raws.append(Raw(STREAM, ext, payload, error=str(exc)))
            batch.rejected += 1
            log.warning("%s: rejected analysis %s: %s", self.source.name, ext, exc)
            return
        row["repo_id"] = self.repo_of(row["repo_path"])
        batch.raws.append(Raw(STREAM, ext, payload))
        batch.add(CodeAnalysis, [row])

    def repo_of(self, path: str) -> int | None:
        """The warehouse repo at `path` (or at the key's `:` read as `/`), if known."""
        return self.repos.get(path) or self.repos.get(path.replace(":", "/"))


def _when(text: str) -> datetime:
    """An analysis date; a missing or unreadable one sorts first (its analysis is rejected by
    the normaliser, and moves no cursor)."""
    try:
        parsed = parse_time(text, "date")
    except RejectedPayload:
        parsed = None
    return parsed or datetime.min.replace(tzinfo=UTC)


__all__ = ["SonarQubeCollector", "client_for", "get_json", "sonar_time"]
