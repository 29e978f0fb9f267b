"""A GitLab REST v4 simulator serving a generated organisation over real HTTP (with GitLab's
GraphQL endpoint beside it: `sandbox.gitlab_graphql`).

Real pagination (offset with Link/X-* headers, keyset for project and job listings), `updated_after`
filtering with GitLab's on-or-after semantics, tokens checked, and faults, rate limits and
malformed items injectable through the server framework and `corrupt()`. The world can be shown as
it was at any instant (`at`), so tests can advance time and see new work arrive.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox import gitlab_payloads as render
from sandbox.gitlab_graphql import GitLabGraphQL
from sandbox.image_repos import ImageRepo, repositories
from sandbox.model import (
    Deployment,
    Incident,
    Job,
    MergeRequest,
    Organisation,
    Pipeline,
    Service,
)
from sandbox.server import (
    HTTPError,
    Request,
    Response,
    Router,
    paginate_keyset,
    paginate_offset,
    parse_param_time,
)

DELETE = object()  # a corruption that removes the field


def flag(request: Request, name: str) -> bool:
    """A boolean query parameter, as Grape reads it (true/1/yes/on, any case)."""
    return request.query.get(name, "").lower() in ("true", "1", "yes", "t", "on")


@dataclass
class ProjectIndex:
    """Lookups for one project."""

    service: Service
    mrs: dict[int, MergeRequest] = field(default_factory=dict)
    pipelines: dict[int, Pipeline] = field(default_factory=dict)
    commit_order: list[str] = field(default_factory=list)  # shas, newest committed first

    def __post_init__(self) -> None:
        s = self.service
        self.mrs = {mr.iid: mr for mr in s.merge_requests}
        self.pipelines = {p.id: p for p in s.pipelines}
        self.commit_order = sorted(
            s.commits, key=lambda sha: s.commits[sha].committed_at, reverse=True
        )


class GitLabSimulator:
    """Serves `org` as GitLab would at `self.at` (default: the end of its history)."""

    def __init__(
        self, org: Organisation, token: str = "sandbox-token", at: datetime | None = None
    ) -> None:
        self.org = org
        self.token = token
        self.at = at or org.now
        self.projects = {s.project_id: ProjectIndex(s) for s in org.services}
        self.by_path = {s.path: s.project_id for s in org.services}
        self.corruptions: dict[tuple[str, int | str], tuple[str, Any]] = {}
        self._cache: dict[tuple[Any, ...], Any] = {}
        self.graphql = GitLabGraphQL(self)  # POST /api/graphql; `graphql.enabled = False`: 404
        self.router = Router()
        self._routes()

    # -- control -------------------------------------------------------------------------------

    def advance(self, at: datetime) -> None:
        """Show the world as it is at `at` (later or earlier)."""
        self.at = at
        self._cache.clear()

    def corrupt(
        self, kind: str, object_id: int | str, field_name: str, value: Any = DELETE
    ) -> None:
        """Serve object `object_id` of `kind` (merge_request, pipeline, commit, deployment, ...)
        with `field_name` set to `value` (or removed), to test how a collector handles it."""
        self.corruptions[(kind, object_id)] = (field_name, value)

    def authorised(self, request: Request) -> bool:
        """Token in PRIVATE-TOKEN or `Authorization: Bearer`, compared in constant time."""
        given = request.headers.get("private-token") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        return hmac.compare_digest(given.encode(), self.token.encode())

    # -- helpers -------------------------------------------------------------------------------

    def _project(self, request: Request) -> ProjectIndex:
        key = request.params["id"]
        project_id = int(key) if key.isdigit() else self.by_path.get(key)
        if project_id not in self.projects:
            raise HTTPError(404, "404 Project Not Found")
        return self.projects[project_id]

    def _patched(self, kind: str, object_id: int | str, body: dict[str, Any]) -> dict[str, Any]:
        corruption = self.corruptions.get((kind, object_id))
        if corruption:
            name, value = corruption
            body = dict(body)
            if value is DELETE:
                body.pop(name, None)
            else:
                body[name] = value
        return body

    def _cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def _by_updated(
        self,
        request: Request,
        kind: str,
        items: list[Any],
        updated: Callable[[Any], datetime],
        default_order: str = "created_at",
        default_sort: str = "desc",
    ) -> list[Any]:
        """Filter by updated_after/updated_before and sort by order_by/sort like GitLab."""
        q = request.query
        order_by = q.get("order_by", default_order)
        rows = [(updated(item), item) for item in items]
        if "updated_after" in q:
            after = parse_param_time(q["updated_after"], "updated_after")
            rows = [r for r in rows if r[0] >= after]
        if "updated_before" in q:
            before = parse_param_time(q["updated_before"], "updated_before")
            rows = [r for r in rows if r[0] <= before]
        keys: dict[str, Callable[[tuple[datetime, Any]], Any]] = {
            "updated_at": lambda r: (r[0], r[1].id),
            "created_at": lambda r: (r[1].created_at, r[1].id),
            "id": lambda r: r[1].id,
            "iid": lambda r: r[1].iid,
        }
        if order_by not in keys:
            raise HTTPError(400, f"order_by does not have a valid value for {kind}")
        rows.sort(key=keys[order_by], reverse=q.get("sort", default_sort) == "desc")
        return [item for _, item in rows]

    # -- routes --------------------------------------------------------------------------------

    def _routes(self) -> None:
        r = self.router
        r.add("/api/v4/version", lambda req: {"version": "17.5.0", "revision": "sandbox"})
        r.add("/api/graphql", self.graphql.answer, methods=("POST",))
        r.add("/api/v4/groups/{id}/projects", self.group_projects)
        r.add("/api/v4/projects/{id}", self.project)
        p = "/api/v4/projects/{id}"
        r.add(f"{p}/repository/commits", self.commits)
        r.add(f"{p}/repository/commits/{{sha}}", self.commit)
        r.add(f"{p}/repository/branches", self.branches)
        r.add(f"{p}/protected_branches", self.protected_branches)
        r.add(f"{p}/merge_requests", self.merge_requests)
        r.add(f"{p}/merge_requests/{{iid}}", self.merge_request)
        r.add(f"{p}/merge_requests/{{iid}}/commits", self.mr_commits)
        r.add(f"{p}/merge_requests/{{iid}}/approvals", self.mr_approvals)
        r.add(f"{p}/merge_requests/{{iid}}/notes", self.mr_notes)
        r.add(f"{p}/pipelines", self.pipelines)
        r.add(f"{p}/pipelines/{{pid}}", self.pipeline)
        r.add(f"{p}/pipelines/{{pid}}/jobs", self.pipeline_jobs)
        r.add(f"{p}/pipelines/{{pid}}/test_report_summary", self.test_report_summary)
        r.add(f"{p}/jobs", self.project_jobs)
        r.add(f"{p}/environments", self.environments)
        r.add(f"{p}/deployments", self.deployments)
        r.add(f"{p}/registry/repositories", self.registry_repositories)
        r.add(f"{p}/registry/repositories/{{rid}}/tags", self.registry_tags)
        r.add(f"{p}/registry/repositories/{{rid}}/tags/{{tag}}", self.registry_tag)
        r.add(f"{p}/issues", self.issues)

    def group_projects(self, request: Request) -> Response:
        group = request.params["id"]
        subgroups = flag(request, "include_subgroups")
        services = [
            s
            for s in self.org.services
            if s.created_at
            and s.created_at <= self.at
            and (
                s.path.rsplit("/", 1)[0] == group or (subgroups and s.path.startswith(group + "/"))
            )
        ]
        if not services and not any(s.path.startswith(group + "/") for s in self.org.services):
            raise HTTPError(404, "404 Group Not Found")
        base = request.base_url
        descending = request.query.get("sort", "asc") == "desc"
        services.sort(key=lambda s: s.project_id, reverse=descending)
        bodies = [
            self._patched("project", s.project_id, render.project(s, base, self.at))
            for s in services
        ]
        if request.query.get("pagination") == "keyset":
            if request.query.get("order_by", "id") != "id":
                raise HTTPError(405, "Keyset pagination is only supported for order_by=id")
            return paginate_keyset(request, bodies, key=lambda b: b["id"])
        return paginate_offset(request, bodies)

    def project(self, request: Request) -> dict[str, Any]:
        s = self._project(request).service
        return self._patched("project", s.project_id, render.project(s, request.base_url, self.at))

    def commits(self, request: Request) -> Response:
        index = self._project(request)
        s, q = index.service, request.query
        since = parse_param_time(q["since"], "since") if "since" in q else None
        until = parse_param_time(q["until"], "until") if "until" in q else None
        ref = q.get("ref_name")
        if flag(request, "all"):  # every branch's commits: a deleted branch's are gone
            unlisted = self._cached(
                ("unlisted", s.name), lambda: render.unlisted_commits(s, self.at)
            )
            shas = [sha for sha in index.commit_order if sha not in unlisted]
        else:
            shas = self._reachable(s, ref or s.default_branch)
        stats = flag(request, "with_stats")
        selected = []
        for sha in shas:
            c = s.commits[sha]
            if (
                c.committed_at > self.at
                or (since and c.committed_at < since)
                or (until and c.committed_at > until)
            ):
                continue
            selected.append(sha)
        base = request.base_url
        page = paginate_offset(request, selected)
        page.body = [
            self._patched("commit", sha, render.commit(s, s.commits[sha], base, stats))
            for sha in page.body
        ]
        return page

    def _reachable(self, s: Service, ref: str) -> list[str]:
        branch = s.branches.get(ref)
        if branch and branch.deleted_at and branch.deleted_at <= self.at:
            raise HTTPError(404, "404 Branch Not Found")
        head = (
            render.branch_head(branch, self.at) if branch else (ref if ref in s.commits else None)
        )
        if head is None:
            raise HTTPError(404, "404 Branch Not Found")
        seen, stack = set(), [head]
        while stack:
            sha = stack.pop()
            if sha not in seen:
                seen.add(sha)
                stack.extend(s.commits[sha].parents)
        return sorted(seen, key=lambda sha: s.commits[sha].committed_at, reverse=True)

    def commit(self, request: Request) -> dict[str, Any]:
        s = self._project(request).service
        c = s.commits.get(request.params["sha"])
        if c is None or c.committed_at > self.at:
            raise HTTPError(404, "404 Commit Not Found")
        return render.commit(s, c, request.base_url, stats=True)

    def branches(self, request: Request) -> Response:
        s = self._project(request).service
        bodies = [
            b
            for b in (
                render.branch(s, br, request.base_url, self.at)
                for _, br in sorted(s.branches.items())
            )
            if b
        ]
        return paginate_offset(request, bodies)

    def protected_branches(self, request: Request) -> Response:
        s = self._project(request).service
        bodies = [
            {
                "id": i + 1,
                "name": b.name,
                "allow_force_push": False,
                "code_owner_approval_required": False,
                "push_access_levels": [
                    {"access_level": 40, "access_level_description": "Maintainers"}
                ],
                "merge_access_levels": [
                    {"access_level": 30, "access_level_description": "Developers + Maintainers"}
                ],
            }
            for i, b in enumerate(b for b in s.branches.values() if b.protected)
        ]
        return paginate_offset(request, bodies)

    # merge requests

    def _mr(self, request: Request) -> tuple[Service, MergeRequest]:
        index = self._project(request)
        mr = index.mrs.get(int(request.params["iid"])) if request.params["iid"].isdigit() else None
        if mr is None or mr.created_at > self.at:
            raise HTTPError(404, "404 Not found")
        return index.service, mr

    def merge_requests(self, request: Request) -> Response:
        s = self._project(request).service
        state = request.query.get("state", "all")
        visible = [mr for mr in s.merge_requests if mr.created_at <= self.at]
        if state != "all":
            visible = [mr for mr in visible if render.mr_state(mr, self.at)[0] == state]
        items = self._by_updated(
            request, "merge_requests", visible, lambda mr: render.mr_state(mr, self.at)[1]
        )
        page = paginate_offset(request, items)
        base = request.base_url
        page.body = [
            self._patched("merge_request", mr.id, render.merge_request(s, mr, base, self.at))
            for mr in page.body
        ]
        return page

    def merge_request(self, request: Request) -> dict[str, Any]:
        s, mr = self._mr(request)
        return self._patched(
            "merge_request", mr.id, render.merge_request(s, mr, request.base_url, self.at)
        )

    def mr_commits(self, request: Request) -> Response:
        s, mr = self._mr(request)
        shas = [sha for sha in reversed(mr.commits) if s.commits[sha].committed_at <= self.at]
        page = paginate_offset(request, shas)
        page.body = [render.mr_commit(s, s.commits[sha], request.base_url) for sha in page.body]
        return page

    def mr_approvals(self, request: Request) -> dict[str, Any]:
        s, mr = self._mr(request)
        return render.approvals(s, mr, request.base_url, self.at)

    def mr_notes(self, request: Request) -> Response:
        s, mr = self._mr(request)
        notes = [n for n in mr.notes if n.created_at <= self.at]
        notes.sort(
            key=lambda n: (n.created_at, n.id), reverse=request.query.get("sort", "desc") == "desc"
        )
        page = paginate_offset(request, notes)
        page.body = [render.note(s, mr, n, request.base_url) for n in page.body]
        return page

    # pipelines

    def _pipeline(self, request: Request) -> tuple[Service, Pipeline]:
        index = self._project(request)
        pid = request.params["pid"]
        p = index.pipelines.get(int(pid)) if pid.isdigit() else None
        if p is None or p.created_at > self.at:
            raise HTTPError(404, "404 Not found")
        return index.service, p

    def pipelines(self, request: Request) -> Response:
        s = self._project(request).service
        q = request.query
        visible = self._cached(
            ("pipelines", s.project_id),
            lambda: [
                (render.pipeline_state(p, self.at)["updated_at"], p)
                for p in s.pipelines
                if p.created_at <= self.at
            ],
        )
        updated = {p.id: u for u, p in visible}
        items = [
            p
            for _, p in visible
            if ("ref" not in q or p.ref == q["ref"]) and ("sha" not in q or p.sha == q["sha"])
        ]
        items = self._by_updated(
            request, "pipelines", items, lambda p: updated[p.id], default_order="id"
        )
        page = paginate_offset(request, items)
        base = request.base_url
        page.body = [
            self._patched("pipeline", p.id, render.pipeline(s, p, base, self.at)) for p in page.body
        ]
        return page

    def pipeline(self, request: Request) -> dict[str, Any]:
        s, p = self._pipeline(request)
        body = render.pipeline(s, p, request.base_url, self.at, detail=True)
        return self._patched("pipeline", p.id, body)

    def pipeline_jobs(self, request: Request) -> Response:
        """GET /projects/:id/pipelines/:pid/jobs: its latest jobs, the retried ones too with
        `include_retried=true`."""
        s, p = self._pipeline(request)
        every = request.query.get("include_retried", "false").lower() == "true"
        jobs = sorted(
            (
                j
                for j in p.jobs
                if j.created_at <= self.at and (every or not render.retried(j, self.at))
            ),
            key=lambda j: j.id,
            reverse=True,
        )
        page = paginate_offset(request, jobs)
        base = request.base_url
        page.body = [
            self._patched("job", j.id, render.job(s, p, j, base, self.at)) for j in page.body
        ]
        return page

    def project_jobs(self, request: Request) -> Response:
        """GET /projects/:id/jobs: every job of the project's pipelines, retried ones included,
        newest first (GitLab orders them by id, `sort=desc` by default); offset pagination, or
        keyset (`pagination=keyset`, `id_before`) as GitLab offers it for this endpoint."""
        s = self._project(request).service
        q = request.query
        if q.get("order_by", "id") != "id":
            raise HTTPError(400, "order_by does not have a valid value")
        # GitLab's ids follow creation; the generator's do not (it builds a history out of
        # order), so "by id" is served as what it means: by creation, newest first
        jobs: list[tuple[Job, Pipeline]] = self._cached(
            ("jobs", s.project_id),
            lambda: sorted(
                ((j, p) for p in s.pipelines for j in p.jobs if j.created_at <= self.at),
                key=lambda jp: (jp[0].created_at, jp[0].id),
                reverse=True,
            ),
        )
        desc = q.get("sort", "desc").lower() != "asc"
        if not desc:
            jobs = jobs[::-1]
        if q.get("pagination") == "keyset":
            # GitLab's ids follow creation; here the serving order is by creation, not by id
            page = paginate_keyset(
                request, jobs, key=lambda jp: jp[0].id, default_sort="desc", by_key=False
            )
        else:
            page = paginate_offset(request, jobs)
        base = request.base_url
        page.body = [
            self._patched("job", j.id, render.job(s, p, j, base, self.at)) for j, p in page.body
        ]
        return page

    def test_report_summary(self, request: Request) -> dict[str, Any]:
        _, p = self._pipeline(request)
        return render.test_report_summary(p, self.at)

    # environments and deployments

    def environments(self, request: Request) -> Response:
        s = self._project(request).service
        envs = sorted(s.environments.values(), key=lambda e: e.id)
        return paginate_offset(request, [render.environment(s, e, request.base_url) for e in envs])

    def deployments(self, request: Request) -> Response:
        s = self._project(request).service
        q = request.query
        if ("updated_after" in q or "updated_before" in q) and q.get("order_by") != "updated_at":
            raise HTTPError(400, "`updated_at` filter requires `updated_at` sort")
        visible: list[Deployment] = [d for d in s.deployments if d.created_at <= self.at]
        if "environment" in q:
            visible = [d for d in visible if d.environment.name == q["environment"]]
        items = self._by_updated(
            request,
            "deployments",
            visible,
            lambda d: render.deployment_updated_at(d, self.at),
            default_order="id",
            default_sort="asc",
        )
        page = paginate_offset(request, items)
        base = request.base_url
        page.body = [
            self._patched("deployment", d.id, render.deployment(s, d, base, self.at))
            for d in page.body
        ]
        return page

    # registry

    def registry_repositories(self, request: Request) -> Response:
        s = self._project(request).service
        tags = flag(request, "tags")
        return paginate_offset(
            request,
            [
                render.registry_repository(r, request.base_url, self.at, tags)
                for r in repositories(s)
            ],
        )

    def registry_tags(self, request: Request) -> Response:
        r = self._registry(request)
        names = sorted(render.current_tags(r, self.at))
        page = paginate_offset(request, names)
        page.body = [
            {"name": n, "path": f"{r.path}:{n}", "location": f"{r.location}:{n}"} for n in page.body
        ]
        return page

    def registry_tag(self, request: Request) -> dict[str, Any]:
        r = self._registry(request)
        name = request.params["tag"]
        tags = render.current_tags(r, self.at)
        if name not in tags:
            raise HTTPError(404, "404 Tag Not Found")
        digest, pushed = tags[name]
        image = next((i for i in r.images if i.digest == digest), None)
        return self._patched(
            "registry_tag",
            f"{r.id}:{name}",
            render.registry_tag(r, name, digest, pushed, image),
        )

    def _registry(self, request: Request) -> ImageRepo:
        s = self._project(request).service
        found = next((r for r in repositories(s) if request.params["rid"] == str(r.id)), None)
        if found is None:
            raise HTTPError(404, "404 Repository Not Found")
        return found

    # incidents

    def issues(self, request: Request) -> Response:
        s = self._project(request).service
        q = request.query
        incidents: list[Incident] = [i for i in s.incidents if i.created_at <= self.at]
        if q.get("issue_type") not in (None, "incident"):
            incidents = []
        state = q.get("state", "all")
        if state != "all":
            incidents = [
                i
                for i in incidents
                if (i.closed_at is not None and i.closed_at <= self.at) == (state == "closed")
            ]
        items = self._by_updated(
            request, "issues", incidents, lambda i: render.incident_updated_at(i, self.at)
        )
        page = paginate_offset(request, items)
        base = request.base_url
        page.body = [
            self._patched("incident", i.id, render.incident(s, i, base, self.at)) for i in page.body
        ]
        return page
