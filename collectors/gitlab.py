"""The GitLab collector (python-gitlab): projects of the configured groups and projects, then per
project, in parallel under one rate limiter: environments, commits, branches, merge requests,
pipelines, deployments, registry tags and incidents (streams in `collectors.gitlab_streams`).

Incremental per project: each stream's cursor lives in sync_state, is capped at the sync's start,
and the next sync re-reads an overlap window; upserts absorb it, and items whose version the
warehouse already holds cost no per-item request.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import gitlab
import httpx
import requests
from gitlab.exceptions import GitlabError

from collectors import gitlab_graphql as gql
from collectors import gitlab_normalize as norm
from collectors import gitlab_streams as streams
from collectors.frame import Collector, SyncOptions
from collectors.http import PolicySession, PolicyTransport, RequestCounter
from collectors.payload import partitioned
from collectors.refs import EnvironmentRef, Refs, ServiceRef
from collectors.sync import RESUMES, Batch, SyncRun
from config.redaction import redact_url
from config.settings import GitLabSource
from warehouse.dimensions import ensure_id
from warehouse.raw import Raw
from warehouse.schema import Repo
from warehouse.sync_state import get_state

log = logging.getLogger(__name__)
BATCH_ITEMS = 200
LEASE_STREAM = "project"  # the sync_state row a worker claims for all of a project's streams
STREAMS: tuple[streams.GitLabStream, ...] = (
    streams.Commits(),
    streams.Branches(),
    streams.MergeRequests(),
    streams.Pipelines(),
    streams.Deployments(),
    streams.RegistryTags(),
    streams.Incidents(),
)


class PolicyGitlab(gitlab.Gitlab):
    """python-gitlab with its own retries off: our `PolicySession` retries (python-gitlab reads
    Retry-After with `int()`, which an HTTP date crashes, and waits as long as it says)."""

    def http_request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.update(obey_rate_limit=False, retry_transient_errors=False, max_retries=0)
        return super().http_request(*args, **kwargs)


class GitLabCollector(Collector[streams.ProjectContext]):
    """Syncs one `[[sources.gitlab]]` into the warehouse; a partition is a project."""

    kind = "gitlab"
    unit = "projects"
    listing_errors = (GitlabError, requests.RequestException, httpx.HTTPError)
    # the grain of a lease is the project: its streams share the project's context and one
    # worker's client, so one claim covers them all (row `project`, partition = project id)
    mark_leases = True

    def __init__(self, source: GitLabSource, options: SyncOptions) -> None:
        super().__init__(source, options)
        self.refs = Refs.from_settings(self.settings)
        # GraphQL: None until the first GraphQL page answers (True) or shows it unusable (False)
        self.graphql_ok: bool | None = None if source.graphql else False
        self._graphql_clients: list[httpx.Client] = []
        self._graphql_lock = threading.Lock()

    # -- clients -----------------------------------------------------------------------------

    def make_client(self, counter: RequestCounter) -> gitlab.Gitlab:
        """A python-gitlab client on a `PolicySession` of its own."""
        session = PolicySession(self.limiter, counter, self.settings.sync.timeout_s, self.retry)
        token = os.environ.get(self.source.token_env) if self.source.token_env else None
        self._local.session = session
        self._local.graphql = self._make_graphql(counter, token)
        return PolicyGitlab(
            self.source.url,
            private_token=token,
            session=session,
            ssl_verify=self.source.ssl_verify,
            timeout=self.settings.sync.timeout_s,
            per_page=self.source.per_page,
        )

    def _make_graphql(self, counter: RequestCounter, token: str | None) -> gitlab.GraphQL:
        """python-gitlab's GraphQL client on an httpx client under the same policy and counter
        as the REST session (python-gitlab's own retries off: the transport retries)."""
        transport = PolicyTransport(
            self.limiter, counter, self.retry, httpx.HTTPTransport(verify=self.source.ssl_verify)
        )
        headers = {"User-Agent": "cdmetrics"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        http = httpx.Client(
            transport=transport, headers=headers, timeout=self.settings.sync.timeout_s
        )
        with self._graphql_lock:
            self._graphql_clients.append(http)
        parts = urlsplit(self.source.url)  # user info in the URL is not GraphQL's credentials
        return gitlab.GraphQL(
            parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl(),
            token=token,
            client=http,
            max_retries=0,
            obey_rate_limit=False,
            retry_transient_errors=False,
        )

    def client(self) -> gitlab.Gitlab:
        """This thread's python-gitlab client."""
        client: gitlab.Gitlab = super().client()
        return client

    def graphql(self) -> gitlab.GraphQL:
        """This thread's GraphQL client."""
        self.client()
        graphql: gitlab.GraphQL = self._local.graphql
        return graphql

    def close(self) -> None:
        with self._graphql_lock:
            clients, self._graphql_clients = self._graphql_clients, []
        for http in clients:
            http.close()

    def _where(self) -> str:
        session = getattr(self._local, "session", None)
        return (
            f" (last request: {redact_url(session.last_url)})"
            if session and session.last_url
            else ""
        )

    # -- the sync ------------------------------------------------------------------------------

    def cannot_list(self, exc: Exception) -> str:
        return (
            f"{self.source.name}: cannot list projects from {redact_url(self.source.url)}: "
            f"{_describe(exc)}{self._where()}; check the url, the token and the groups/projects"
        )

    def partitions(self, run: SyncRun) -> list[streams.ProjectContext]:
        return self.discover(run)

    def lease_of(self, ctx: streams.ProjectContext) -> tuple[str, str]:
        return LEASE_STREAM, str(ctx.project_id)

    def sync_partition(self, run: SyncRun, ctx: streams.ProjectContext) -> None:
        self.sync_project(run, ctx)

    def discover(self, run: SyncRun) -> list[streams.ProjectContext]:
        """The configured projects (groups with subgroups, and explicit ones), registered in the
        warehouse as repos and services."""
        gl = self.client()
        found: dict[int, dict[str, Any]] = {}
        for group in self.source.groups:
            listing = gl.groups.get(group, lazy=True).projects.list(
                iterator=True,
                per_page=self.source.per_page,
                include_subgroups=True,
                pagination="keyset",
                order_by="id",
                sort="asc",
                archived=False,
            )
            for project in listing:
                found[int(project.id)] = streams.attrs(project)
        for path in self.source.projects:
            explicit = gl.projects.get(path)
            found[int(explicit.id)] = streams.attrs(explicit)
        batch = Batch()
        accepted = []
        for pid, payload in sorted(found.items()):
            try:
                accepted.append((payload, norm.normalize_project(payload, run.source_id)))
                batch.raws.append(Raw("projects", str(pid), payload))
            except norm.RejectedPayload as exc:
                batch.raws.append(Raw("projects", str(pid), payload, error=str(exc)))
                batch.rejected += 1
        contexts = []

        def register(conn: Any) -> None:  # repos and services, in the batch's transaction
            for payload, repo in accepted:
                repo_id = ensure_id(conn, Repo, repo)
                contexts.append(
                    streams.ProjectContext(
                        run.source_id,
                        payload,
                        repo_id,
                        self._service(conn, payload, repo_id),
                        schema_jobs=self.settings.metrics.schema_jobs,
                        tag_revision_pattern=self.settings.metrics.tag_revision_pattern,
                    )
                )

        run.write("projects", batch, after=register)
        run.count("projects", partitions=1, requests=self.thread_requests())
        return contexts

    def _service(self, conn: Any, project: dict[str, Any], repo_id: int) -> int:
        """The project's service (named after its path), in the configured team or its namespace."""
        namespace = project.get("namespace") or {}
        service = ServiceRef(
            str(project.get("path") or project["id"]),
            repo=repo_id,
            namespace=namespace.get("path") or namespace.get("name"),
            origin="discovered",
            image_repository=project.get("container_registry_image_prefix"),
        )
        return self.refs.id(conn, service)

    def sync_project(self, run: SyncRun, ctx: streams.ProjectContext) -> None:
        """Every stream of one project; a failing stream (HTTP, database, anything) is recorded
        and the others go on (environments first: deployments need them)."""
        project = self.client().projects.get(ctx.project_id, lazy=True)
        if not self._attempt(
            run, ctx, "environments", lambda: self._environments(run, project, ctx)
        ):
            return
        for stream in STREAMS:
            self._attempt(
                run, ctx, stream.name, partial(self._sync_stream, run, project, ctx, stream)
            )

    def _attempt(
        self, run: SyncRun, ctx: streams.ProjectContext, stream: str, work: Callable[[], None]
    ) -> bool:
        """`run.attempt` for one stream of a project; returns True when it completed."""
        path = ctx.project.get("path_with_namespace", ctx.project_id)
        return run.attempt(
            stream,
            str(ctx.project_id),
            f"project {path}",
            work,
            known=(GitlabError, requests.RequestException, httpx.HTTPError),
            describe=lambda exc: self._error(ctx, stream, exc),
        )

    def _error(self, ctx: streams.ProjectContext, stream: str, exc: Exception) -> str:
        path = ctx.project.get("path_with_namespace", ctx.project_id)
        return (
            f"{self.source.name}: project {path}: {stream}: {_describe(exc)}{self._where()}; "
            f"{RESUMES}"
        )

    def _environments(self, run: SyncRun, project: Any, ctx: streams.ProjectContext) -> None:
        """The project's environments, registered under their canonical names before anything
        that refers to them (deployments) is synced."""
        counter: RequestCounter = self._local.counter
        before = counter.value
        payloads = [
            streams.attrs(e) for e in project.environments.list(iterator=True, per_page=100)
        ]
        batch = Batch()
        canonical: dict[str, EnvironmentRef] = {}
        for env in payloads:
            key = partitioned(str(ctx.project_id), norm.external_id_of(env))
            try:
                norm.normalize_environment(env, self.refs.mapper)  # rejects a malformed one
                canonical[env["name"]] = EnvironmentRef(env["name"], env.get("tier"))
                batch.raws.append(Raw("environments", key, env))
            except (norm.RejectedPayload, KeyError) as exc:
                batch.raws.append(Raw("environments", key, env, error=str(exc)))
                batch.rejected += 1
        save = run.save_cursor("environments", str(ctx.project_id), None, counter.value - before)

        def register(conn: Any) -> None:  # in the batch's transaction, under the write lock
            for raw_name, ref in canonical.items():
                ctx.environments[raw_name] = self.refs.id(conn, ref)
            save(conn)

        run.write("environments", batch, after=register)
        run.count("environments", partitions=1, requests=counter.value - before)

    def _sync_stream(
        self, run: SyncRun, project: Any, ctx: streams.ProjectContext, stream: streams.GitLabStream
    ) -> None:
        partition = str(ctx.project_id)
        counter: RequestCounter = self._local.counter
        before = counter.value
        with self.engine.connect() as conn:
            state = None if self.full else get_state(conn, run.source_id, stream.name, partition)
            known = {} if self.full else stream.known_versions(conn, ctx)
        mark = str(ctx.project.get(stream.change_field) or "") if stream.change_field else ""
        if mark and state and state.cursor == mark:  # nothing moved since the last listing
            run.write(stream.name, Batch(), after=run.save_cursor(stream.name, partition, mark, 0))
            run.count(stream.name, partitions=1, requests=0)
            return
        since = None
        if stream.cursor_param and state and state.cursor:
            since = (datetime.fromisoformat(state.cursor) - self.settings.sync.overlap).isoformat()
        elif stream.cursor_param:
            # a first (or --full) sync reaches back `history_days`, no further
            since = self.options.since(run.started_at).isoformat()
        newest: datetime | None = None
        batch = Batch()
        pending: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []  # `rest_batched` items, their details read at once

        page = self.source.per_page if stream.details_page == 0 else stream.details_page

        def flush() -> None:
            chosen = stream.batched(pending, ctx) if self.graphql_ok is not False else []
            payloads = self._details_batch(stream, ctx, chosen)
            through = {stream.item_id(item) for item in chosen} if payloads is not None else set()
            for item in pending:  # the others by REST, one at a time
                found = payloads if stream.item_id(item) in through else None
                self._collect(stream, project, ctx, item, batch, found)
            pending.clear()

        for item in self._items(stream, project, ctx, since):
            if stream.cursor_field and item.get(stream.cursor_field):
                try:
                    moment = norm.parse_time(item[stream.cursor_field], stream.cursor_field)
                    newest = max(newest, moment) if newest and moment else moment or newest
                except norm.RejectedPayload:
                    pass
            if stream.unchanged(item, known, ctx):
                continue
            if stream.graphql_details and self.graphql_ok is not False:
                pending.append(item)  # their details in one GraphQL request a page
                if page is not None and len(pending) >= page:
                    flush()
            elif stream.rest_batched and "_graphql" not in item:
                rest.append(item)  # their details after the listing, for the project at once
            else:
                self._collect(stream, project, ctx, item, batch)
            if len(batch.raws) >= BATCH_ITEMS:
                run.write(stream.name, batch)
                batch = Batch()
        flush()
        if rest:
            payloads = stream.details_rest(project, ctx, rest, since)
            for item in rest:
                self._collect(stream, project, ctx, item, batch, payloads)
                if len(batch.raws) >= BATCH_ITEMS:
                    run.write(stream.name, batch)
                    batch = Batch()
        # saved only now, after every promised item was listed (a short page raised `ShortPage`):
        # a failed listing keeps the old cursor, so newest-first commits cannot be skipped
        cursor = min(newest, run.started_at).isoformat() if newest else (mark or None)
        requests_made = counter.value - before
        run.write(
            stream.name, batch, after=run.save_cursor(stream.name, partition, cursor, requests_made)
        )
        run.count(stream.name, partitions=1, requests=requests_made)

    def _items(
        self,
        stream: streams.GitLabStream,
        project: Any,
        ctx: streams.ProjectContext,
        since: str | None,
    ) -> Iterator[dict[str, Any]]:
        """The stream's items: through GraphQL when the stream declares a query and the source
        answers GraphQL (found out on the first GraphQL page of the sync), else REST."""
        if stream.graphql_query and self.graphql_ok is not False:
            try:
                yield from stream.graphql_items(self.graphql(), ctx, since, self.source.per_page)
                self.graphql_ok = True
                return
            except gql.Unavailable as exc:
                if self.graphql_ok is not True:  # a source that answered before stays on it
                    log.info("%s: REST instead of GraphQL: %s", self.source.name, exc)
                    self.graphql_ok = False
                else:
                    raise
        yield from stream.items(project, since, self.source.per_page)

    def _details_batch(
        self, stream: streams.GitLabStream, ctx: streams.ProjectContext, items: list[Any]
    ) -> dict[str, Any] | None:
        """The GraphQL details of a page of items (None: none asked, or the source has no usable
        GraphQL: the items' details come from REST, one item at a time)."""
        if not items or self.graphql_ok is False:
            return None
        try:
            payloads = stream.details_batch(self.graphql(), ctx, items)
        except gql.Unavailable as exc:
            if self.graphql_ok is True:
                raise
            log.info("%s: REST instead of GraphQL: %s", self.source.name, exc)
            self.graphql_ok = False
            return None
        self.graphql_ok = True
        return payloads

    def _collect(
        self,
        stream: streams.GitLabStream,
        project: Any,
        ctx: streams.ProjectContext,
        item: dict[str, Any],
        batch: Batch,
        payloads: dict[str, Any] | None = None,
    ) -> None:
        item_id = stream.item_id(item)
        try:
            payload = (
                stream.details(project, item, ctx) if payloads is None else payloads.get(item_id)
            )
        except gitlab.exceptions.GitlabGetError as exc:
            if exc.response_code == 404:  # deleted between the listing and the detail call
                payload = None
            else:
                raise
        if payload is None:  # deleted between the listing and the detail call
            log.info("%s: %s %s is gone", self.source.name, stream.name, item_id)
            return
        key = partitioned(str(ctx.project_id), item_id)
        try:
            rows = stream.normalize(payload, ctx)
        except norm.RejectedPayload as exc:
            batch.raws.append(Raw(stream.name, key, payload, error=str(exc)))
            batch.rejected += 1
            log.warning("%s: rejected %s %s: %s", self.source.name, stream.name, key, exc)
            return
        batch.raws.append(Raw(stream.name, key, payload))
        for table, table_rows in rows.items():
            batch.add(table, table_rows)


def _describe(exc: Exception) -> str:
    if isinstance(exc, GitlabError):
        code = getattr(exc, "response_code", None)
        return f"HTTP {code}: {exc.error_message}" if code else str(exc.error_message)
    return f"{type(exc).__name__}: {exc}"
