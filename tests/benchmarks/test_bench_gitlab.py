"""GitLab full sync of the large sandbox organisation: requests, requests/s, rows/s, and the ratio of
requests made to the minimum needed for the same data.

The simulator runs in its own process (`cdmetrics sandbox serve --size large`), the collector in
this one, as in production. A full large sync is about 2.5 million requests (~40 min on 2 cores),
so by default the benchmark syncs every 10th project of the large org (CDMETRICS_BENCH_SLICE=10);
CDMETRICS_BENCH_SLICE=1 syncs all of it; CDMETRICS_BENCH_GRAPHQL=0 syncs with `graphql = false`
(REST only, GitLab's fallback without GraphQL). Prints figures; asserts only correctness.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from collectors.frame import SyncOptions
from collectors.gitlab import GitLabCollector
from config.settings import Settings
from warehouse.engine import open_warehouse
from warehouse.schema import (
    Branch,
    Commit,
    Deployment,
    ImageTag,
    Incident,
    Job,
    MergeRequest,
    MrCommit,
    Pipeline,
    TestRun,
)

pytestmark = pytest.mark.bench
PER_PAGE = 100
TAGS_PAGE = 20  # GitLab's GraphQL page of registry tags
TOKEN = "sandbox-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pages(n: int, per_page: int = PER_PAGE) -> int:
    return max(1, math.ceil(n / per_page))


def minimum_requests(engine: Engine, projects: int) -> dict[str, int]:
    """List pages plus unavoidable per-item calls for the data the warehouse now holds."""
    with engine.connect() as conn:

        def per_repo(model, column):  # type: ignore[no-untyped-def]
            return dict(
                conn.execute(select(column, func.count()).select_from(model).group_by(column)).all()
            )

        commits = per_repo(Commit, Commit.repo_id)
        branches = per_repo(Branch, Branch.repo_id)
        mrs = per_repo(MergeRequest, MergeRequest.repo_id)
        pipelines = per_repo(Pipeline, Pipeline.repo_id)
        deployments = per_repo(Deployment, Deployment.repo_id)
        incidents = per_repo(Incident, Incident.service_id)
        mr_commit_pages = sum(
            pages(n)
            for n in conn.execute(
                select(func.count()).select_from(MrCommit).group_by(MrCommit.repo_id, MrCommit.iid)
            ).scalars()
        )
        job_pages = sum(
            pages(n)
            for n in conn.execute(
                select(func.count()).select_from(Job).group_by(Job.pipeline_external_id)
            ).scalars()
        )
        with_tests = conn.execute(
            select(func.count(func.distinct(TestRun.pipeline_external_id)))
        ).scalar_one()
        tags = conn.execute(select(func.count()).select_from(ImageTag)).scalar_one()
        notes = conn.execute(
            select(func.count())
            .select_from(MergeRequest)
            .where(MergeRequest.first_review_at.is_not(None) | (MergeRequest.state == "merged"))
        ).scalar_one()
    lists = (
        pages(projects)
        + projects * 3  # project listing; environments, branches... 1 page each at least
        + sum(pages(n) for n in commits.values())
        + sum(pages(n) for n in branches.values())
        + sum(pages(n) for n in mrs.values())
        + sum(pages(n) for n in pipelines.values())
        + sum(pages(n) for n in deployments.values())
        + max(projects, sum(pages(n) for n in incidents.values()))
    )
    return {
        "list pages": lists,
        "per merge request (commits, approvals, notes)": mr_commit_pages
        + sum(mrs.values())
        + notes,
        "per pipeline (detail, jobs, test summary)": sum(pipelines.values())
        + job_pages
        + with_tests,
        "per registry tag (digest)": tags,
    }


def devlake_requests(engine: Engine) -> int:
    """The requests Apache DevLake's GitLab collector pattern needs for the same data, per project:
    the merge request list, each merge request's commits and notes, the pipeline list and each
    pipeline's detail, and the project's job list (100 a page)."""
    with engine.connect() as conn:

        def per_repo(model, column):  # type: ignore[no-untyped-def]
            return dict(
                conn.execute(select(column, func.count()).select_from(model).group_by(column)).all()
            )

        mrs = per_repo(MergeRequest, MergeRequest.repo_id)
        pipelines = per_repo(Pipeline, Pipeline.repo_id)
        jobs = dict(
            conn.execute(
                select(Pipeline.repo_id, func.count())
                .select_from(Job)
                .join(Pipeline, Pipeline.external_id == Job.pipeline_external_id)
                .group_by(Pipeline.repo_id)
            ).all()
        )
    repos = set(mrs) | set(pipelines)
    return sum(
        pages(mrs.get(r, 0))
        + 2 * mrs.get(r, 0)
        + pages(pipelines.get(r, 0))
        + pipelines.get(r, 0)
        + pages(jobs.get(r, 0))
        for r in repos
    )


def print_rates(summary, engine: Engine, scale: float, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Requests per merge request and per pipeline, the total, the projected wall time at
    GitLab.com's 2,000 requests a minute, beside DevLake's pattern, all scaled by `scale` (the
    whole organisation over the synced part)."""
    with engine.connect() as conn:
        mrs = conn.execute(select(func.count()).select_from(MergeRequest)).scalar_one()
        pipelines = conn.execute(select(func.count()).select_from(Pipeline)).scalar_one()
        tags = conn.execute(select(func.count()).select_from(ImageTag)).scalar_one()
        tag_pages = sum(  # GraphQL's least: a page of 20 tags of each repository a request
            pages(n, TAGS_PAGE)
            for n in conn.execute(
                select(func.count()).select_from(ImageTag).group_by(ImageTag.repository)
            ).scalars()
        )
    streams = summary.streams
    registry = streams["registry"].requests
    print(
        f"registry stream: {registry:,} requests = {registry / max(summary.requests, 1):.1%} of "
        f"the sync, for {tags:,} tags in {tag_pages:,} GraphQL pages of 20 (REST: a request a "
        f"tag, {tags:,}); whole organisation ~{registry * scale:,.0f} (REST's digest requests "
        f"alone ~{tags * scale:,.0f})"
    )
    per_mr = streams["merge_requests"].requests / max(mrs, 1)
    per_pipeline = streams["pipelines"].requests / max(pipelines, 1)
    total = summary.requests * scale
    devlake = devlake_requests(engine) * scale
    print(
        f"requests per merge request {per_mr:.3f} ({mrs:,} merge requests), per pipeline "
        f"{per_pipeline:.3f} ({pipelines:,} pipelines)"
    )
    print(
        f"whole organisation: ~{total:,.0f} requests = {total / 2000:,.0f} min at 2,000/min "
        f"(GitLab.com's limit); DevLake's pattern ~{devlake:,.0f} requests = "
        f"{devlake / 2000:,.0f} min; ours / DevLake's = {total / max(devlake, 1):.3f}; "
        f"sync wall time here {seconds * scale / 60:.1f} min"
    )


def test_gitlab_full_sync_large(tmp_path: Path) -> None:
    step = int(os.environ.get("CDMETRICS_BENCH_SLICE", "10"))
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "cdmetrics"),
            "sandbox",
            "serve",
            "--size",
            "large",
            "--port",
            str(port),
            "--token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        header = server.stdout.readline().strip()
        from sandbox.generate import SIZES

        engine = open_warehouse(f"sqlite:///{tmp_path / 'large.db'}")
        os.environ["CDM_BENCH_TOKEN"] = TOKEN
        probe = Settings(
            sources={
                "gitlab": [
                    {
                        "name": "gitlab",
                        "url": f"http://127.0.0.1:{port}",
                        "token_env": "CDM_BENCH_TOKEN",
                        "groups": ["acme"],
                    }
                ]
            }
        )
        import gitlab

        listing = (
            gitlab.Gitlab(probe.sources.gitlab[0].url, private_token=TOKEN)
            .groups.get("acme", lazy=True)
            .projects.list(iterator=True, per_page=100, include_subgroups=True)
        )
        paths = sorted((p.id, p.path_with_namespace) for p in listing)
        chosen = [path for i, (_, path) in enumerate(paths) if i % step == 0]
        settings = Settings(
            sources={
                "gitlab": [
                    {
                        "name": "gitlab",
                        "url": f"http://127.0.0.1:{port}",
                        "token_env": "CDM_BENCH_TOKEN",
                        "projects": chosen,
                        "graphql": os.environ.get("CDMETRICS_BENCH_GRAPHQL", "1") != "0",
                    }
                ]
            },
            sync={"requests_per_second": 0, "parallelism": 4},
        )
        start = time.perf_counter()
        summary = GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine)).sync()
        seconds = time.perf_counter() - start
        assert summary.ok, summary.errors
        minimum = minimum_requests(engine, len(chosen))
        needed = sum(minimum.values())
        print(
            f"\n{header}; synced {len(chosen)} of {len(paths)} projects (every {step}th); {SIZES['large']}"
        )
        print(
            f"gitlab full sync: {summary.requests:,} requests in {seconds:.1f} s = "
            f"{summary.requests / seconds:,.0f} requests/s; "
            f"{summary.rows:,} rows = {summary.rows / seconds:,.0f} rows/s"
        )
        print(
            f"requests made / minimum needed = {summary.requests:,} / {needed:,} = "
            f"{summary.requests / needed:.3f}"
        )
        for what, n in minimum.items():
            print(f"  minimum {what}: {n:,}")
        print_rates(summary, engine, len(paths) / len(chosen), seconds)
        for name, stats in sorted(summary.streams.items()):
            print(f"  stream {name:<15} requests {stats.requests:>9,}  rows {stats.rows:>10,}")
        if step > 1:
            print(
                "  extrapolated to the whole org: "
                f"~{summary.requests * len(paths) / len(chosen):,.0f} requests, "
                f"~{seconds * len(paths) / len(chosen) / 60:.0f} min"
            )
    finally:
        server.terminate()
        server.wait(30)
        if server.stdout:
            server.stdout.close()
