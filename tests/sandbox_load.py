"""Load a generated organisation straight into a warehouse, as of an instant: the simulator's
payloads fed through the GitLab collector's own normalisers and save path, without HTTP.

For analytics benchmarks on the large organisation, whose sync over HTTP takes most of an hour;
the collector's HTTP path is measured by test_bench_gitlab.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from collectors import gitlab_normalize as norm
from collectors import gitlab_streams as streams
from sandbox import gitlab_payloads as render
from sandbox.image_repos import repositories
from sandbox.model import Organisation, Service
from warehouse.dimensions import ensure_environment, ensure_id, ensure_source
from warehouse.schema import Repo, Team
from warehouse.schema import Service as ServiceRow
from warehouse.upsert import upsert
from warehouse.vocabulary import EnvironmentMapper

BASE = "http://gitlab.sandbox.test"
STREAMS = {
    "branches": streams.Branches(),
    "merge_requests": streams.MergeRequests(),
    "pipelines": streams.Pipelines(),
    "deployments": streams.Deployments(),
    "registry": streams.RegistryTags(),
    "incidents": streams.Incidents(),
    "commits": streams.Commits(),
}


def load_org(engine: Engine, org: Organisation, at: datetime | None = None) -> int:
    """Upsert everything the GitLab simulator would serve at `at`; returns rows written."""
    at = at or org.now
    mapper = EnvironmentMapper()
    written = 0
    with engine.begin() as conn:
        source_id = ensure_source(conn, "gitlab", "gitlab", BASE)
    for service in org.services:
        with engine.begin() as conn:
            ctx = _context(conn, source_id, service, at, mapper)
            deployed = _deployed_as(conn, service, ctx)
            rows: dict[Any, list[dict[str, Any]]] = {}
            for name, payload in _payloads(service, at):
                used = deployed if name == "deployments" else ctx
                for table, table_rows in STREAMS[name].normalize(payload, used).items():
                    rows.setdefault(table, []).extend(table_rows)
            written += sum(upsert(conn, table, table_rows) for table, table_rows in rows.items())
    return written


def _context(
    conn: Any, source_id: int, s: Service, at: datetime, mapper: EnvironmentMapper
) -> streams.ProjectContext:
    project = render.project(s, BASE, at)
    repo_id = ensure_id(conn, Repo, norm.normalize_project(project, source_id))
    team_id = ensure_id(conn, Team, {"name": s.team})
    service_id = ensure_id(
        conn,
        ServiceRow,
        {
            "name": s.name,
            "team_id": team_id,
            "repo_id": repo_id,
            "image_repository": project["container_registry_image_prefix"],
        },
    )
    ctx = streams.ProjectContext(source_id, project, repo_id, service_id)
    for env in s.environments.values():
        canonical = mapper.canonical(env.name, env.tier)
        ctx.environments[env.name] = ensure_environment(
            conn, canonical, ["test", "staging", "production"], env.name
        )
    return ctx


def _deployed_as(conn: Any, s: Service, ctx: streams.ProjectContext) -> streams.ProjectContext:
    """The context deployments are loaded in: a service deployed under another name
    (`Service.deploy_name`) gets a service row of that name, as a deploy job naming it would."""
    if not s.deploy_name:
        return ctx
    team_id = ensure_id(conn, Team, {"name": s.team})
    alias = ensure_id(conn, ServiceRow, {"name": s.deploy_name, "team_id": team_id})
    return dataclasses.replace(ctx, service_id=alias)


def _payloads(s: Service, at: datetime) -> Any:
    unlisted = render.unlisted_commits(s, at)
    for c in s.commits.values():
        if c.committed_at <= at and c.sha not in unlisted:
            yield "commits", render.commit(s, c, BASE, stats=True)
    for b in s.branches.values():
        body = render.branch(s, b, BASE, at)
        if body:
            yield "branches", body
    for mr in s.merge_requests:
        if mr.created_at <= at:
            yield (
                "merge_requests",
                {
                    "item": render.merge_request(s, mr, BASE, at),
                    "commits": [
                        render.mr_commit(s, s.commits[sha], BASE)
                        for sha in mr.commits
                        if s.commits[sha].committed_at <= at
                    ],
                    # as the REST fallback keeps it: approvals replayed from the notes
                    "notes": [render.note(s, mr, n, BASE) for n in mr.notes if n.created_at <= at],
                },
            )
    for p in s.pipelines:
        if p.created_at <= at:
            summary = render.test_report_summary(p, at)
            yield (
                "pipelines",
                {
                    "item": render.pipeline(s, p, BASE, at, detail=True),
                    "jobs": [render.job(s, p, j, BASE, at) for j in p.jobs if j.created_at <= at],
                    "test_report_summary": summary if summary["test_suites"] else None,
                },
            )
    for d in s.deployments:
        if d.created_at <= at:
            yield "deployments", render.deployment(s, d, BASE, at)
    for r in repositories(s):
        repository = render.registry_repository(r, BASE, at, tags=True)
        for name, (digest, pushed) in render.current_tags(r, at).items():
            tag = {"name": name, "path": f"{r.path}:{name}", "location": f"{r.location}:{name}"}
            yield (
                "registry",
                {
                    "item": {"repository": repository, "tag": tag},
                    "tag": render.registry_tag(r, name, digest, pushed, None),
                },
            )
    for i in s.incidents:
        if i.created_at <= at:
            yield "incidents", render.incident(s, i, BASE, at)
