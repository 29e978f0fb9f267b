"""GitLab's GraphQL API (`POST /api/graphql`) for the GitLab simulator, serving the same world.

Queries are parsed, validated and executed by graphql-core against an excerpt of GitLab's own schema
(tests/fixtures/gitlab_graphql/schema.graphql, from a GitLab introspection dump), so a query naming
a field GitLab does not have is refused as GitLab refuses it, and every answer has the schema's
shape. The nodes are built from the REST payloads the simulator renders (corruptions included), so
both APIs tell the same story: pipelines and merge requests under `project`, registry repositories
and their tags under `containerRepository`. GitLab's limits are enforced: at most 100 items a page
(20 tags), and a query's complexity (GitLab's rule: one per field, a connection's selection counted
once more for each 100 items it asks for) at most `max_complexity` (250 for an authenticated request
on GitLab.com), answered like GitLab with "Query has complexity of N, which exceeds max complexity
of M". Without the schema file (an installed package without the tests) the endpoint answers 404, as
an instance with GraphQL disabled does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    execute_sync,
    parse,
    validate,
)
from graphql.error import GraphQLError

from sandbox import gitlab_payloads as render
from sandbox.image_repos import ImageRepo, repositories
from sandbox.server import HTTPError, Request, parse_param_time

if TYPE_CHECKING:
    from sandbox.gitlab_api import GitLabSimulator, ProjectIndex

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "tests/fixtures/gitlab_graphql/schema.graphql"
MAX_PAGE_SIZE = 100  # GitLab's max_page_size
# fields with a smaller one of their own: ContainerRepositoryDetails.tags (max_page_size: 20)
FIELD_MAX_PAGE_SIZE = {"tags": 20}
MAX_COMPLEXITY = 250  # GitLab's limit for an authenticated request

Node = dict[str, Any]


@cache
def schema() -> GraphQLSchema | None:
    """The schema excerpt the endpoint serves (None when the file is not there)."""
    return build_schema(SCHEMA_PATH.read_text()) if SCHEMA_PATH.exists() else None


def gid(kind: str, value: Any) -> str | None:
    """A GitLab global id (`gid://gitlab/Ci::Pipeline/7`), None for a missing value."""
    return None if value is None else f"gid://gitlab/{kind}/{value}"


def upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def connection(
    items: Sequence[Any],
    node: Callable[[Any], Node | None],
    args: dict[str, Any],
    max_page: int = MAX_PAGE_SIZE,
) -> Node:
    """A page of a cursor connection: `first` items (at most `max_page`, as GitLab caps it
    silently) after the `after` cursor."""
    start = int(base64.b64decode(args["after"]).decode()) if args.get("after") else 0
    size = min(args.get("first") or max_page, max_page)
    page = items[start : start + size]
    end = start + len(page)
    return {
        "nodes": [node(item) for item in page],
        "count": len(items),
        "pageInfo": {
            "hasNextPage": end < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": base64.b64encode(str(start).encode()).decode(),
            "endCursor": base64.b64encode(str(end).encode()).decode(),
        },
    }


def _retried(jobs: list[Any], wanted: bool | None, at: datetime) -> list[Any]:
    """`Pipeline.jobs(retried:)`: every job (None, GitLab's default), only the retried ones
    (true) or only the latest (false)."""
    return [j for j in jobs if wanted is None or render.retried(j, at) == wanted]


def complexity(document: Any, variables: dict[str, Any]) -> int:
    """GitLab's complexity of a query: 1 per field, plus its selection's, which a connection
    counts (1 + limit / 100) times (GitLab: loading 100 items doubles the complexity)."""

    def field(node: FieldNode, variables: dict[str, Any]) -> float:
        children = sum(field(c, variables) for c in _fields(node))
        limit = None
        largest = FIELD_MAX_PAGE_SIZE.get(node.name.value, MAX_PAGE_SIZE)
        for arg in node.arguments or ():
            if arg.name.value in ("first", "last"):
                value = getattr(arg.value, "value", None)
                if value is None and hasattr(arg.value, "name"):
                    value = variables.get(arg.value.name.value)
                limit = min(int(value or largest), largest)
        return 1 + children * (1 + limit / 100 if limit is not None else 1)

    total = 0.0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            total += sum(field(c, variables) for c in _fields(definition))
    return round(total)


def _fields(node: Any) -> list[FieldNode]:
    selection = getattr(node, "selection_set", None)
    out: list[FieldNode] = []
    for s in selection.selections if selection else ():
        out.extend([s] if isinstance(s, FieldNode) else _fields(s))
    return out


class GitLabGraphQL:
    """The GraphQL endpoint of one `GitLabSimulator` (its world, instant and corruptions)."""

    def __init__(self, sim: GitLabSimulator) -> None:
        self.sim = sim
        self.enabled = True  # False: answer 404, as an instance with GraphQL disabled
        self.max_complexity = MAX_COMPLEXITY

    def answer(self, request: Request) -> dict[str, Any]:
        served = schema()
        if not self.enabled or served is None:
            raise HTTPError(404, "404 Not Found")
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise HTTPError(400, "400 Bad request - no query")
        variables = body.get("variables") or {}
        try:
            document = parse(body["query"])
        except GraphQLError as exc:
            return {"errors": [exc.formatted]}
        errors = validate(served, document)
        if errors:
            return {"errors": [e.formatted for e in errors]}
        cost = complexity(document, variables)
        if cost > self.max_complexity:
            message = (
                f"Query has complexity of {cost}, which exceeds max complexity of "
                f"{self.max_complexity}"
            )
            return {"errors": [{"message": message}]}
        result = execute_sync(
            served,
            document,
            root_value={
                "project": self._project(request.base_url),
                "containerRepository": self._container_repository,
            },
            variable_values=variables,
            operation_name=body.get("operationName"),
        )
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [e.formatted for e in result.errors]
        return answer

    # -- resolvers -----------------------------------------------------------------------------

    def _project(self, base: str) -> Callable[..., Node | None]:
        def resolve(info: Any, fullPath: str) -> Node | None:
            project_id = self.sim.by_path.get(fullPath)
            index = self.sim.projects.get(project_id) if project_id is not None else None
            if (
                index is None
                or not index.service.created_at
                or index.service.created_at > self.sim.at
            ):
                return None
            return {
                "path": index.service.path.rsplit("/", 1)[-1],
                "pipelines": lambda info, **args: self._pipelines(index, base, args),
                "mergeRequests": lambda info, **args: self._merge_requests(index, base, args),
                "mergeRequest": lambda info, iid: self._one_merge_request(index, base, iid),
                "pipeline": lambda info, iid=None, sha=None: self._one_pipeline(
                    index, base, iid, sha
                ),
            }

        return resolve

    def _container_repository(self, info: Any, id: str) -> Node | None:
        """A registry repository by global id (`gid://gitlab/ContainerRepository/<id>`), with the
        tags the REST registry endpoints serve (the single-tag payload's corruptions included)."""
        r = self._repositories().get(id)
        if r is None or not r.service.created_at or r.service.created_at > self.sim.at:
            return None
        return {
            "id": gid("ContainerRepository", r.id),
            "name": r.name,
            "path": r.path,
            "location": r.location,
            "tagsCount": len(render.current_tags(r, self.sim.at)),
            "tags": lambda info, **args: self._tags(r, args),
        }

    def _repositories(self) -> dict[str, ImageRepo]:
        return self.sim._cached(
            ("graphql", "repositories"),
            lambda: {
                str(gid("ContainerRepository", r.id)): r
                for index in self.sim.projects.values()
                for r in repositories(index.service)
            },
        )

    def _tags(self, r: ImageRepo, args: dict[str, Any]) -> Node:
        current = render.current_tags(r, self.sim.at)
        names = sorted(current, reverse=args.get("sort") == "NAME_DESC")
        if args.get("name"):  # GitLab's search by name: a part of it
            names = [n for n in names if args["name"] in n]

        def node(name: str) -> Node:
            digest, pushed = current[name]
            image = next((i for i in r.images if i.digest == digest), None)
            body = self.sim._patched(
                "registry_tag",
                f"{r.id}:{name}",
                render.registry_tag(r, name, digest, pushed, image),
            )
            return {
                "name": body.get("name"),
                "path": body.get("path"),
                "location": body.get("location"),
                "digest": body.get("digest"),
                "revision": body.get("revision"),
                "shortRevision": body.get("short_revision"),
                "createdAt": body.get("created_at"),
                "totalSize": None if body.get("total_size") is None else str(body["total_size"]),
                "canDelete": False,
            }

        return connection(names, node, args, FIELD_MAX_PAGE_SIZE["tags"])

    def _visible_merge_requests(self, index: ProjectIndex) -> list[Any]:
        return [mr for mr in index.service.merge_requests if mr.created_at <= self.sim.at]

    def _merge_requests(self, index: ProjectIndex, base: str, args: dict[str, Any]) -> Node:
        rows = [
            (render.mr_state(mr, self.sim.at)[1], mr) for mr in self._visible_merge_requests(index)
        ]
        if args.get("iids") is not None:
            wanted = set(args["iids"])
            rows = [r for r in rows if str(r[1].iid) in wanted]
        if args.get("updatedAfter"):
            rows = [r for r in rows if r[0] >= _time(args["updatedAfter"], "updatedAfter")]
        if args.get("updatedBefore"):
            rows = [r for r in rows if r[0] <= _time(args["updatedBefore"], "updatedBefore")]
        rows.sort(key=lambda r: (r[1].created_at, r[1].id), reverse=True)  # created_desc
        return connection(
            [mr for _, mr in rows], lambda mr: self._merge_request(index, mr, base), args
        )

    def _one_merge_request(self, index: ProjectIndex, base: str, iid: str) -> Node | None:
        found = [mr for mr in self._visible_merge_requests(index) if str(mr.iid) == str(iid)]
        return self._merge_request(index, found[0], base) if found else None

    def _merge_request(self, index: ProjectIndex, mr: Any, base: str) -> Node:
        s, at = index.service, self.sim.at
        body = self.sim._patched("merge_request", mr.id, render.merge_request(s, mr, base, at))
        shas = [sha for sha in reversed(mr.commits) if s.commits[sha].committed_at <= at]
        approved = render.approvals(s, mr, base, at)["approved_by"]
        notes = sorted(
            (n for n in mr.notes if n.created_at <= at), key=lambda n: (n.created_at, n.id)
        )
        return {
            "id": gid("MergeRequest", body.get("id")),
            "iid": None if body.get("iid") is None else str(body["iid"]),
            "createdAt": body.get("created_at"),
            "updatedAt": body.get("updated_at"),
            "commits": lambda info, **args: connection(
                shas, lambda sha: _commit(render.mr_commit(s, s.commits[sha], base)), args
            ),
            "approvedBy": lambda info, **args: connection(
                approved, lambda a: _user(a["user"]), args
            ),
            "notes": lambda info, **args: connection(
                notes, lambda n: _note(render.note(s, mr, n, base)), args
            ),
        }

    def _visible_pipelines(self, index: ProjectIndex) -> list[tuple[datetime, Any]]:
        return [
            (render.pipeline_state(p, self.sim.at)["updated_at"], p)
            for p in index.service.pipelines
            if p.created_at <= self.sim.at
        ]

    def _pipelines(self, index: ProjectIndex, base: str, args: dict[str, Any]) -> Node:
        after = args.get("updatedAfter")
        before = args.get("updatedBefore")
        rows = self._visible_pipelines(index)
        if after:
            rows = [r for r in rows if r[0] >= _time(after, "updatedAfter")]
        if before:
            rows = [r for r in rows if r[0] <= _time(before, "updatedBefore")]
        for name in ("ref", "sha"):
            if args.get(name):
                rows = [r for r in rows if getattr(r[1], name) == args[name]]
        rows.sort(key=lambda r: r[1].id, reverse=True)  # GitLab lists pipelines newest first
        return connection([p for _, p in rows], lambda p: self._pipeline(index, p, base), args)

    def _one_pipeline(self, index: ProjectIndex, base: str, iid: Any, sha: Any) -> Node | None:
        for _, p in self._visible_pipelines(index):
            if (iid is not None and str(p.iid) == str(iid)) or (sha is not None and p.sha == sha):
                return self._pipeline(index, p, base)
        return None

    def _pipeline(self, index: ProjectIndex, p: Any, base: str) -> Node:
        s, at = index.service, self.sim.at
        body = self.sim._patched("pipeline", p.id, render.pipeline(s, p, base, at, detail=True))
        jobs = sorted((j for j in p.jobs if j.created_at <= at), key=lambda j: j.id, reverse=True)
        status = body.get("status")
        return {
            "id": gid("Ci::Pipeline", body.get("id")),
            "iid": None if body.get("iid") is None else str(body["iid"]),
            "status": upper(status),
            "active": status in ("created", "pending", "running", "preparing", "scheduled"),
            "complete": status in ("success", "failed", "canceled", "skipped"),
            "ref": body.get("ref"),
            "sha": body.get("sha"),
            "beforeSha": body.get("before_sha"),
            "committedAt": body.get("committed_at"),
            "coverage": body.get("coverage"),
            "createdAt": body.get("created_at"),
            "updatedAt": body.get("updated_at"),
            "startedAt": body.get("started_at"),
            "finishedAt": body.get("finished_at"),
            "duration": body.get("duration"),
            "queuedDuration": body.get("queued_duration"),
            "path": f"/{s.path}/-/pipelines/{p.id}",
            "jobs": lambda info, **args: connection(
                _retried(jobs, args.get("retried"), at),
                lambda j: self._job(index, p, j, base),
                args,
            ),
            "testReportSummary": self._test_report(p),
        }

    def _job(self, index: ProjectIndex, p: Any, j: Any, base: str) -> Node:
        body = self.sim._patched("job", j.id, render.job(index.service, p, j, base, self.sim.at))
        duration = body.get("duration")
        return {
            "id": gid("Ci::Build", body.get("id")),
            "name": body.get("name"),
            "status": upper(body.get("status")),
            "stage": {"id": f"stage-{p.id}-{body.get('stage')}", "name": body.get("stage")},
            "active": body.get("status") in ("pending", "running", "created"),
            "allowFailure": bool(body.get("allow_failure")),
            "createdAt": body.get("created_at"),
            "startedAt": body.get("started_at"),
            "finishedAt": body.get("finished_at"),
            "duration": None if duration is None else int(duration),
            "queuedDuration": body.get("queued_duration"),
            "retried": render.retried(j, self.sim.at),
            "webPath": f"/{index.service.path}/-/jobs/{j.id}",
        }

    def _test_report(self, p: Any) -> Node:
        summary = render.test_report_summary(p, self.sim.at)
        total = summary["total"]
        suites = [
            {
                "name": t["name"],
                "totalTime": t["total_time"],
                "totalCount": t["total_count"],
                "successCount": t["success_count"],
                "failedCount": t["failed_count"],
                "skippedCount": t["skipped_count"],
                "errorCount": t["error_count"],
                "buildIds": [str(b) for b in t["build_ids"]],
                "suiteError": t["suite_error"],
            }
            for t in summary["test_suites"]
        ]
        return {
            "total": {
                "time": total["time"],
                "count": total["count"],
                "success": total["success"],
                "failed": total["failed"],
                "skipped": total["skipped"],
                "error": total["error"],
                "suiteError": total["suite_error"],
            },
            "testSuites": lambda info, **args: connection(suites, lambda t: t, args),
        }


def _user(body: dict[str, Any]) -> Node:
    return {
        "username": body.get("username"),
        "webUrl": body.get("web_url"),
        "webPath": "/" + str(body.get("username")),
    }


def _commit(body: dict[str, Any]) -> Node:
    return {
        "id": gid("Commit", body.get("id")),
        "sha": body.get("id"),
        "shortId": body.get("short_id"),
        "title": body.get("title"),
        "message": body.get("message"),
        "authorName": body.get("author_name"),
        "authorEmail": body.get("author_email"),
        "authoredDate": body.get("authored_date"),
        "webUrl": body.get("web_url"),
        "webPath": "/" + str(body.get("web_url") or "").split("//", 1)[-1].partition("/")[2],
    }


def _note(body: dict[str, Any]) -> Node:
    return {
        "id": gid("Note", body.get("id")),
        "body": body.get("body"),
        "system": body.get("system"),
        "createdAt": body.get("created_at"),
        "updatedAt": body.get("updated_at"),
        "author": _user(body.get("author") or {}),
    }


def _time(value: str, name: str) -> datetime:
    try:
        return parse_param_time(value, name)
    except HTTPError as exc:
        raise GraphQLError(f"{name} is invalid") from exc
