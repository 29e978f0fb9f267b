"""GitLab streams: one small class per API stream, almost pure declaration (STYLE.md).

Each stream declares what it lists of one project (the manager, its filters, the cursor filter
and field, the version that spares the per-item calls, the field naming an item); `GitLabStream`
does the listing, paging and cursor from that. A stream adds only the per-item details the list
omits and the normalisation of the composite payload into warehouse rows. The raw payload kept for
an item with details is `{"item": ..., <detail>: ...}`, each part verbatim.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from gitlab.exceptions import GitlabGetError
from sqlalchemy import Connection, FromClause, select

from collectors import gitlab_graphql as gql
from collectors import gitlab_normalize as norm
from collectors.payload import partitioned
from config.settings import SCHEMA_JOBS, TAG_REVISION_PATTERN
from warehouse.schema import (
    Branch,
    Commit,
    CommitParent,
    Deployment,
    Image,
    ImageTag,
    Incident,
    Job,
    MergeRequest,
    MrCommit,
    Pipeline,
    RawPayload,
    TestRun,
)

Payload = dict[str, Any]
Rows = dict[Any, list[dict[str, Any]]]
# list parameters python-gitlab takes for itself (`all=True`: every page at once); a stream's
# filters with these names are sent as `query_parameters`
RESERVED_BY_CLIENT = frozenset({"all", "iterator", "page", "per_page", "path"})


@dataclass
class ProjectContext:
    """What normalisers need to know about the project being synced."""

    source_id: int
    project: Payload
    repo_id: int
    service_id: int
    environments: dict[str, int] = field(default_factory=dict)  # raw name -> environment id
    schema_jobs: str = SCHEMA_JOBS
    tag_revision_pattern: str = TAG_REVISION_PATTERN

    @property
    def project_id(self) -> int:
        return int(self.project["id"])

    @property
    def instance_url(self) -> str:
        """The instance's web address (the project's web_url less its path): GraphQL's paths
        are relative to it."""
        web_url = str(self.project.get("web_url") or "")
        path = str(self.project.get("path_with_namespace") or "")
        return web_url[: -len(path) - 1] if path and web_url.endswith("/" + path) else web_url


def attrs(obj: Any) -> Payload:
    """The payload of a python-gitlab object (or a dict as it is)."""
    return dict(obj.attributes) if hasattr(obj, "attributes") else dict(obj)


class GitLabStream:
    """A stream of one project. Leaf classes declare what is listed and how it is tracked; this
    base lists it (paging, the cursor filter), names its items and reads their stored versions;
    the collector drives.

    - `manager`: the project's python-gitlab manager listed (`project.<manager>.list(...)`);
    - `filters`: the list's fixed query parameters (GitLab's `all` goes as a query parameter:
      python-gitlab keeps the name for itself);
    - `cursor_param` / `cursor_field`: the list filter the cursor feeds, and the item field that
      moves the cursor (None: listed whole every sync);
    - `version_field` / `version_table`: the item field whose unchanged value skips the per-item
      calls, and the warehouse table whose column of that name holds it (read by `external_id`,
      for the project's repo and, where the table has one, the source);
    - `key_field`: the item field naming an item (None: its `id`, else `iid`, else `name`);
    - `graphql_query` / `graphql_connection`: the GraphQL query listing the stream's items with
      their details in one request a page, and the path of its connection in the answer (None:
      REST only). A GraphQL item is the REST item the converter makes of the node, carrying the
      node (`_graphql`), whose verbatim copy is the raw payload (`{"graphql": node}`);
    - `change_field`: for a stream listed whole (no cursor), the project field whose value is
      kept as the stream's cursor: while it has not moved, the stream is not listed at all;
    - `graphql_details`: the GraphQL query reading the per-item details of a page of REST-listed
      items in one request (`details_batch`; raw payload `{"item": item, "graphql": node}`);
      `details_page`: how many items such a page holds (None: the project's listed items at once;
      0: the source's `per_page`); `batched` picks the items whose details are cheaper through
      GraphQL (the others are read by REST, one at a time);
    - `rest_batched`: the REST details of the project's changed items are read at once, after
      the listing (`details_rest`), rather than one item at a time (`details`).
    """

    name: ClassVar[str]
    manager: ClassVar[str]
    filters: ClassVar[Mapping[str, Any]] = {}
    cursor_param: ClassVar[str | None] = None
    cursor_field: ClassVar[str | None] = None
    version_field: ClassVar[str | None] = None
    version_table: ClassVar[FromClause | None] = None
    key_field: ClassVar[str | None] = None
    graphql_query: ClassVar[str | None] = None
    graphql_connection: ClassVar[tuple[str, ...]] = ()
    graphql_details: ClassVar[str | None] = None
    details_page: ClassVar[int | None] = 0
    change_field: ClassVar[str | None] = None
    rest_batched: ClassVar[bool] = False

    def items(self, project: Any, cursor: str | None, per_page: int) -> Iterator[Payload]:
        """The listed items (their payloads), page by page, from `cursor` on when given."""
        params = dict(self.filters)
        if self.cursor_param and cursor:
            params[self.cursor_param] = cursor
        if RESERVED_BY_CLIENT & params.keys():  # every one as a query parameter, in its order
            params = {"query_parameters": params}
        manager = getattr(project, self.manager)
        for obj in manager.list(iterator=True, per_page=per_page, **params):
            yield from self.expand(obj)

    def expand(self, obj: Any) -> Iterator[Payload]:
        """The items one listed object stands for: itself (a leaf may yield several)."""
        yield attrs(obj)

    def graphql_items(
        self, client: Any, ctx: ProjectContext, cursor: str | None, per_page: int
    ) -> Iterator[Payload]:
        """The items listed through GraphQL, page by page, updated from `cursor` on when given;
        raises `gql.Unavailable` before the first page when the instance has no usable GraphQL."""
        assert self.graphql_query is not None
        variables: dict[str, Any] = {"path": ctx.project.get("path_with_namespace")}
        if self.cursor_param and cursor:
            variables["updatedAfter"] = cursor
        for nodes in gql.pages(
            client, self.graphql_query, variables, self.graphql_connection, per_page
        ):
            for node in nodes:
                yield {**self.from_graphql(client, ctx, node), "_graphql": node}

    def from_graphql(self, client: Any, ctx: ProjectContext, node: Payload) -> Payload:
        """The REST item a GraphQL node stands for (completing the node's nested pages)."""
        raise NotImplementedError

    def batched(self, items: list[Payload], ctx: ProjectContext) -> list[Payload]:
        """The items whose details `details_batch` reads (all of them); the others' come from
        REST, one item at a time (`details`)."""
        return items

    def details_batch(
        self, client: Any, ctx: ProjectContext, items: list[Payload]
    ) -> dict[str, Payload]:
        """item id -> raw payload, for a page of listed items, through `graphql_details`; an
        item left out is gone since it was listed. Raises `gql.Unavailable` like `graphql_items`."""
        raise NotImplementedError

    def item_id(self, item: Payload) -> str:
        if self.key_field:
            return str(item.get(self.key_field) or norm.external_id_of(item))
        return norm.external_id_of(item)

    def known_versions(self, conn: Connection, ctx: ProjectContext) -> dict[str, str]:
        """external id -> stored version, for items whose details need not be fetched again."""
        if self.version_table is None or self.version_field is None:
            return {}
        columns = self.version_table.c
        query = select(columns.external_id, columns[self.version_field]).where(
            columns.repo_id == ctx.repo_id
        )
        if "source_id" in columns:
            query = query.where(columns.source_id == ctx.source_id)
        return {ext: ts.isoformat() for ext, ts in conn.execute(query) if ext and ts}

    def unchanged(self, item: Payload, known: dict[str, str], ctx: ProjectContext) -> bool:
        """True when the warehouse already holds this version of the item (skip it entirely)."""
        if self.version_field is None:
            return False
        return known.get(self.item_id(item)) == _stamp(item.get(self.version_field))

    def details(self, project: Any, item: Payload, ctx: ProjectContext) -> Payload:
        """The raw payload of an item, with whatever per-item calls it needs."""
        return item

    def details_rest(
        self, project: Any, ctx: ProjectContext, items: list[Payload], since: str | None
    ) -> dict[str, Payload]:
        """item id -> raw payload, for the project's changed REST items (`rest_batched`), listed
        from `since` on; an item left out is gone since it was listed."""
        raise NotImplementedError

    def normalize(self, payload: Payload, ctx: ProjectContext) -> Rows:
        raise NotImplementedError


def _is_id(value: Any) -> bool:
    """Whether `value` can name an item in a detail call (GitLab's ids and iids are integers)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _time(value: Any) -> datetime | None:
    """A listed timestamp, or None when it is missing or malformed."""
    try:
        return norm.parse_time(value, "created_at") if value else None
    except norm.RejectedPayload:
        return None


def _stamp(value: Any) -> str | None:
    parsed = norm.parse_time(value, "version") if value else None
    return parsed.isoformat() if parsed else None


class Commits(GitLabStream):
    name = "commits"
    manager = "commits"
    filters: ClassVar[Mapping[str, Any]] = {"all": True, "with_stats": True}
    cursor_param = "since"
    cursor_field = "committed_date"
    key_field = "id"

    def normalize(self, payload: Payload, ctx: ProjectContext) -> Rows:
        commit, parents = norm.normalize_commit(payload, ctx.repo_id)
        return {Commit: [commit], CommitParent: parents}


class Branches(GitLabStream):
    """Every branch, listed whole (GitLab has no filter on them), and only when the project's
    `last_activity_at` moved since the last listing: a push, a new or a deleted branch moves it."""

    name = "branches"
    manager = "branches"
    key_field = "name"
    change_field = "last_activity_at"

    def normalize(self, payload: Payload, ctx: ProjectContext) -> Rows:
        return {Branch: [norm.normalize_branch(payload, ctx.repo_id)]}


class MergeRequests(GitLabStream):
    name = "merge_requests"
    manager = "mergerequests"
    filters: ClassVar[Mapping[str, Any]] = {"state": "all", "order_by": "updated_at", "sort": "asc"}
    cursor_param = "updated_after"
    cursor_field = "updated_at"
    version_field = "updated_at"
    version_table = MergeRequest.__table__
    graphql_details = gql.MERGE_REQUESTS

    def details_batch(
        self, client: Any, ctx: ProjectContext, items: list[Payload]
    ) -> dict[str, Payload]:
        path = str(ctx.project.get("path_with_namespace"))
        iids = [str(item["iid"]) for item in items if _is_id(item.get("iid"))]
        nodes: dict[str, Payload] = {}
        if iids:
            variables = {"path": path, "iids": iids}
            connection = ("project", "mergeRequests")
            for page in gql.pages(client, gql.MERGE_REQUESTS, variables, connection, len(iids)):
                for node in page:
                    nodes[str(node.get("iid"))] = gql.complete_merge_request(client, path, node)
        found: dict[str, Payload] = {}
        for item in items:
            if not _is_id(item.get("iid")):  # no detail to ask for: the normaliser rejects it
                found[self.item_id(item)] = self.details(None, item, ctx)
            elif str(item["iid"]) in nodes:
                found[self.item_id(item)] = {"item": item, "graphql": nodes[str(item["iid"])]}
        return found

    def details(self, project: Any, item: Payload, ctx: ProjectContext) -> Payload:
        """Its commits and notes: the approvals are the notes' (`norm.approvals_from_notes`), so
        the notes are read for every changed merge request (an approval leaves a system note,
        which `user_notes_count` does not count) and `/approvals` is not asked."""
        if not _is_id(item.get("iid")):  # no detail to ask for: the normaliser rejects the item
            return {"item": item, "commits": [], "notes": []}
        mr = project.mergerequests.get(item["iid"], lazy=True)
        notes = mr.notes.list(iterator=True, per_page=100, sort="asc", order_by="created_at")
        return {
            "item": item,
            "commits": [attrs(c) for c in mr.commits(per_page=100)],  # an iterator already
            "notes": [attrs(n) for n in notes],
        }

    def normalize(self, payload: Payload, ctx: ProjectContext) -> Rows:
        if "graphql" in payload:
            payload = {"item": payload["item"], **gql.merge_request_details(payload["graphql"])}
        approvals = payload.get("approvals")  # kept by syncs before approvals came from notes
        if approvals is None:
            approvals = norm.approvals_from_notes(payload["notes"])
        row, commits = norm.normalize_merge_request(
            payload["item"],
            ctx.repo_id,
            commits=payload["commits"],
            approvals=approvals,
            notes=payload["notes"],
        )
        return {
            MergeRequest: [row],
            MrCommit: commits,
            Commit: norm.normalize_mr_commits(payload["commits"], ctx.repo_id),
        }


class Pipelines(GitLabStream):
    name = "pipelines"
    manager = "pipelines"
    filters: ClassVar[Mapping[str, Any]] = {"order_by": "updated_at", "sort": "asc"}
    cursor_param = "updated_after"
    cursor_field = "updated_at"
    version_field = "updated_at"
    version_table = Pipeline.__table__

    graphql_query = gql.PIPELINES
    graphql_connection = ("project", "pipelines")

    def from_graphql(self, client: Any, ctx: ProjectContext, node: Payload) -> Payload:
        jobs = node.get("jobs") or {}
        info = jobs.get("pageInfo") or {}
        while info.get("hasNextPage"):  # over 100 jobs: the rest, a page a request
            variables = {"path": ctx.project.get("path_with_namespace"), "iid": node.get("iid")}
            data = gql.execute(client, gql.PIPELINE_JOBS, {**variables, "after": info["endCursor"]})
            more = gql.dig(data, ("project", "pipeline", "jobs")) or {}
            jobs["nodes"] = [*(jobs.get("nodes") or []), *(more.get("nodes") or [])]
            info = jobs["pageInfo"] = more.get("pageInfo") or {}
        return dict(gql.pipeline_payload(node, ctx.instance_url)["item"])

    rest_batched = True  # jobs by the project's listing, for all its changed pipelines at once

    def details(self, project: Any, item: Payload, ctx: ProjectContext) -> Payload:
        if "_graphql" in item:  # the node has it all
            return {"graphql": item["_graphql"]}
        if not _is_id(item.get("id")):  # a GET of /pipelines/None would read as "deleted since"
            return {"item": item, "jobs": [], "test_report_summary": None}
        return self._with_detail(project, item, None)

    def _with_detail(self, project: Any, item: Payload, jobs: list[Payload] | None) -> Payload:
        """The raw payload of a pipeline: its detail (timings), its jobs (`jobs`, else its own job
        listing) and, for a finished pipeline with a test job, its test report summary."""
        pipeline = project.pipelines.get(item["id"])  # first: a 404 here is "deleted since"
        detail = attrs(pipeline)
        if jobs is None:
            listing = pipeline.jobs.list(iterator=True, per_page=100, include_retried=True)
            jobs = [attrs(j) for j in listing]
        summary = None
        finished = detail.get("status") in ("success", "failed", "canceled")
        if finished and any(j.get("stage") == "test" for j in jobs):
            summary = attrs(pipeline.test_report_summary.get())
        return {"item": detail, "jobs": jobs, "test_report_summary": summary}

    def details_rest(
        self, project: Any, ctx: ProjectContext, items: list[Payload], since: str | None
    ) -> dict[str, Payload]:
        """The changed pipelines' jobs from the project's job listing (`/projects/:id/jobs`, 100 a
        page, newest first), read back to the *boundary*: the creation of the oldest changed
        pipeline, but not before `since` (the cursor window's start). Jobs are created with their
        pipeline or later and GitLab lists them by id, i.e. by creation, so the first job created
        before the boundary ends the listing, every job of a pipeline created at or after it having
        been seen. A pipeline created before the boundary (one updated in the window but created
        before it: a retry, a long run) and one without a usable id or creation time is read by its
        own job listing, as before."""
        created = {
            self.item_id(i): _time(i.get("created_at")) for i in items if _is_id(i.get("id"))
        }
        starts = [t for t in created.values() if t is not None]
        boundary = min(starts, default=None)
        window = _time(since)
        if boundary is not None and window is not None:
            boundary = max(boundary, window)
        listed = {k for k, t in created.items() if t is not None and boundary and t >= boundary}
        jobs: dict[str, list[Payload]] = {k: [] for k in listed}
        if listed:
            for obj in project.jobs.list(iterator=True, per_page=100):  # newest first
                job = attrs(obj)
                at = _time(job.get("created_at"))
                if at is not None and boundary is not None and at < boundary:
                    break  # created before the boundary: so is every job after it
                owner = str((job.get("pipeline") or {}).get("id"))
                if owner in jobs:
                    jobs[owner].append(job)
        found: dict[str, Payload] = {}
        for item in items:
            key = self.item_id(item)
            try:
                if key in jobs:
                    found[key] = self._with_detail(project, item, jobs[key])
                else:
                    found[key] = self.details(project, item, ctx)
            except GitlabGetError as exc:
                if exc.response_code != 404:  # else deleted since it was listed: left out
                    raise
        return found

    def normalize(self, payload: Payload, ctx: ProjectContext) -> Rows:
        if "graphql" in payload:
            payload = gql.pipeline_payload(payload["graphql"], ctx.instance_url)
        pipeline = norm.normalize_pipeline(payload["item"], ctx.source_id, ctx.repo_id)
        rows: Rows = {
            Pipeline: [pipeline],
            Job: [norm.normalize_job(j, ctx.source_id) for j in payload["jobs"]],
        }
        if payload.get("test_report_summary"):
            rows[TestRun] = norm.normalize_test_summary(
                payload["test_report_summary"], ctx.source_id, pipeline["external_id"]
            )
        return rows


class Deployments(GitLabStream):
    name = "deployments"
    manager = "deployments"
    filters: ClassVar[Mapping[str, Any]] = {"order_by": "updated_at", "sort": "asc"}
    cursor_param = "updated_after"
    cursor_field = "updated_at"

    def normalize(self, payload: Payload, ctx: ProjectContext) -> Rows:
        raw_env = (payload.get("environment") or {}).get("name")
        row = norm.normalize_deployment(
            payload,
            ctx.source_id,
            repo_id=ctx.repo_id,
            service_id=ctx.service_id,
            environment_id=ctx.environments.get(raw_env) if raw_env else None,
            schema_jobs=ctx.schema_jobs,
        )
        return {Deployment: [row]}


class Incidents(GitLabStream):
    name = "incidents"
    manager = "issues"
    filters: ClassVar[Mapping[str, Any]] = {
        "issue_type": "incident",
        "order_by": "updated_at",
        "sort": "asc",
        "scope": "all",
    }
    cursor_param = "updated_after"
    cursor_field = "updated_at"

    def normalize(self, payload: Payload, ctx: ProjectContext) -> Rows:
        return {Incident: [norm.normalize_incident(payload, ctx.source_id, ctx.service_id)]}


class RegistryTags(GitLabStream):
    """Container images: the repository listing with its tag names in one request, then the digests
    of tags not seen before — and of mutable tags (`latest`) whenever new tags appeared, since a
    push that adds tags is what moves them. Digests come through GraphQL, a page of 20 tags (by
    name) of each of up to 9 repositories a request, until a repository's wanted tags are all seen;
    a repository with fewer wanted tags than the pages that takes is read by REST's single-tag
    endpoint (the only one with digests), a request a tag, as is everything without GraphQL."""

    name = "registry"
    manager = "repositories"
    filters: ClassVar[Mapping[str, Any]] = {"tags": True}
    graphql_details = gql.REGISTRY_TAGS
    details_page = None  # the project's wanted tags at once: a repository's pages are read once

    def expand(self, obj: Any) -> Iterator[Payload]:
        repo = attrs(obj)
        for tag in repo.get("tags") or []:
            yield {"repository": repo, "tag": tag, "_manager": obj.tags}

    def item_id(self, item: Payload) -> str:
        return f"{item['repository'].get('id')}:{item['tag'].get('name')}"

    def known_versions(self, conn: Connection, ctx: ProjectContext) -> dict[str, str]:
        """The tags this stream read before, by its raw payloads: not by `image_tag`, which other
        collectors fill too (a Harbor sync that ran while this stream failed would otherwise keep
        this source's tags from ever being read, and their payloads from being kept)."""
        prefix = partitioned(str(ctx.project_id), "")
        rows = conn.execute(
            select(RawPayload.external_id).where(
                RawPayload.source_id == ctx.source_id,
                RawPayload.stream == self.name,
                RawPayload.external_id.startswith(prefix, autoescape=True),
            )
        )
        return {key[len(prefix) :]: "seen" for key in rows.scalars()}

    def unchanged(self, item: Payload, known: dict[str, str], ctx: ProjectContext) -> bool:
        if self.item_id(item) not in known:
            return False
        if not self.is_mutable(str(item["tag"].get("name")), ctx):
            return True
        # a mutable tag is re-read when the repository gained tags since the last sync
        repository = item["repository"].get("id")
        names = {t.get("name") for t in item["repository"].get("tags") or []}
        return all(f"{repository}:{n}" in known for n in names)

    @staticmethod
    def is_mutable(tag: str, ctx: ProjectContext) -> bool:
        """Tags naming a commit or a version are taken as immutable; others (latest, prod) move."""
        return not re.match(ctx.tag_revision_pattern, tag) and not fnmatch.fnmatch(tag, "v[0-9]*")

    @staticmethod
    def graphql_pages(item: Payload, wanted: set[str]) -> int:
        """The GraphQL pages (by name, TAGS_PAGE a page) that reach the last of the `wanted` tags
        of the item's repository, as its listing names them."""
        names = sorted(str(t.get("name")) for t in item["repository"].get("tags") or [])
        last = max((i for i, n in enumerate(names) if n in wanted), default=len(names) - 1)
        return -(-(last + 1) // gql.TAGS_PAGE)

    def batched(self, items: list[Payload], ctx: ProjectContext) -> list[Payload]:
        """The tags of repositories with at least as many wanted tags as GraphQL pages to read
        (a repository's pages may share requests with others'); REST reads the others."""
        by_repository: dict[Any, list[Payload]] = {}
        for item in items:
            by_repository.setdefault(item["repository"].get("id"), []).append(item)
        chosen = []
        for repository, wanted in by_repository.items():
            names = {str(i["tag"].get("name")) for i in wanted}
            if _is_id(repository) and len(wanted) >= self.graphql_pages(wanted[0], names):
                chosen.extend(wanted)
        return chosen

    def details_batch(
        self, client: Any, ctx: ProjectContext, items: list[Payload]
    ) -> dict[str, Payload]:
        wanted: dict[int, set[str]] = {}
        for item in items:
            wanted.setdefault(item["repository"]["id"], set()).add(str(item["tag"].get("name")))
        nodes = gql.registry_tags(client, wanted)
        found: dict[str, Payload] = {}
        for item in items:
            node = nodes.get((item["repository"]["id"], str(item["tag"].get("name"))))
            if node is not None:
                listed = {"repository": item["repository"], "tag": item["tag"]}
                found[self.item_id(item)] = {"item": listed, "graphql": node}
        return found

    def details(self, project: Any, item: Payload, ctx: ProjectContext) -> Payload:
        tag = item["_manager"].get(item["tag"]["name"])
        return {"item": {"repository": item["repository"], "tag": item["tag"]}, "tag": attrs(tag)}

    def normalize(self, payload: Payload, ctx: ProjectContext) -> Rows:
        location = payload["item"]["repository"].get("location") or ""
        tag_payload = (
            gql.registry_tag_payload(payload["graphql"]) if "graphql" in payload else payload["tag"]
        )
        image, tag = norm.normalize_registry_tag(tag_payload, location)
        return {Image: [image], ImageTag: [tag]}
