"""Jenkins full sync of the large sandbox organisation: requests, builds/s, rows/s, the ratio of
requests made to the minimum needed for the same data, and the cost of a sync with nothing new.

The simulator runs in its own process (`cdmetrics sandbox serve --size large`), the collector in
this one, as in production. The large org's Jenkins holds about 6,000 jobs (mostly multibranch
branch jobs) and 48,000 builds; the whole of it is synced (a few minutes), unless
CDMETRICS_BENCH_SLICE=n syncs every n-th job's builds (after listing them all). The Jenkins sync
runs alone, so its repos come from the builds' remote URLs. Prints figures; asserts only
correctness.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from collectors.frame import SyncOptions
from collectors.jenkins import JenkinsCollector, JobInfo
from collectors.sync import SyncRun
from config.settings import Settings
from warehouse.engine import open_warehouse
from warehouse.schema import Deployment, Job, Pipeline, TestRun

pytestmark = pytest.mark.bench
TOKEN = "sandbox-token"
PAGE = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def minimum_requests(engine: Engine, jobs: int) -> dict[str, int]:
    """The listing, a page of builds per 100 builds of each job, and the per-build calls that
    cannot be avoided (stages of pipeline builds, test reports), for what the warehouse holds."""
    with engine.connect() as conn:
        per_job = [
            *conn.execute(select(func.count()).select_from(Pipeline).group_by(Pipeline.job_name))
            .scalars()
            .all(),
            *conn.execute(
                select(func.count())
                .select_from(Deployment)
                .group_by(
                    func.substr(Deployment.external_id, 1, func.instr(Deployment.external_id, "#"))
                )
            )
            .scalars()
            .all(),
        ]
        staged = conn.execute(
            select(func.count(func.distinct(Job.pipeline_external_id)))
        ).scalar_one()
        tested = conn.execute(
            select(func.count(func.distinct(TestRun.pipeline_external_id)))
        ).scalar_one()
    return {
        "listing": 1,
        "build pages (100 builds each)": max(jobs, sum(math.ceil(n / PAGE) for n in per_job)),
        "per pipeline build (stages)": staged,
        "per tested build (test report)": tested,
    }


class SlicedCollector(JenkinsCollector):
    """Syncs the builds of every `step`-th job only."""

    step = 1

    def discover(self, run: SyncRun) -> list[JobInfo]:
        return super().discover(run)[:: self.step]


def test_jenkins_full_sync_large(tmp_path: Path) -> None:
    step = int(os.environ.get("CDMETRICS_BENCH_SLICE", "1"))
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "cdmetrics"), "sandbox", "serve", "--size", "large",
         "--port", str(free_port()), "--token", TOKEN],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline()]
        while "Jenkins JSON API simulator" not in "".join(lines):
            lines.append(server.stdout.readline())
            assert lines[-1], "the sandbox stopped before naming its Jenkins URL"
        url = re.search(r"Jenkins JSON API simulator: (\S+)/api/json", "".join(lines))
        assert url is not None
        os.environ["CDM_BENCH_JENKINS_USER"], os.environ["CDM_BENCH_JENKINS_TOKEN"] = (
            "sandbox",
            TOKEN,
        )
        settings = Settings(
            sources={
                "jenkins": [
                    {
                        "name": "jenkins",
                        "url": url.group(1),
                        "user_env": "CDM_BENCH_JENKINS_USER",
                        "token_env": "CDM_BENCH_JENKINS_TOKEN",
                    }
                ]
            },
            sync={"requests_per_second": 0, "parallelism": 4},
        )
        engine = open_warehouse(f"sqlite:///{tmp_path / 'large.db'}")
        SlicedCollector.step = step
        start = time.perf_counter()
        summary = SlicedCollector(settings.sources.jenkins[0], SyncOptions(settings, engine)).sync()
        seconds = time.perf_counter() - start
        assert summary.ok, summary.errors[:3]
        with engine.connect() as conn:
            pipelines = conn.execute(select(func.count()).select_from(Pipeline)).scalar_one()
            deployments = conn.execute(select(func.count()).select_from(Deployment)).scalar_one()
        jobs = summary.streams["builds"].partitions + summary.streams["deployments"].partitions
        minimum = minimum_requests(engine, jobs)
        needed = sum(minimum.values())
        built = pipelines + deployments
        print(f"\n{lines[0].strip()}; synced every {step}th job's builds: {jobs:,} jobs")
        print(
            f"jenkins full sync: {summary.requests:,} requests in {seconds:.1f} s = "
            f"{summary.requests / seconds:,.0f} requests/s; {built:,} builds "
            f"({pipelines:,} pipelines, {deployments:,} deployments) = {built / seconds:,.0f} builds/s; "
            f"{summary.rows:,} rows = {summary.rows / seconds:,.0f} rows/s"
        )
        print(
            f"requests made / minimum needed = {summary.requests:,} / {needed:,} = "
            f"{summary.requests / needed:.3f}; requests per build {summary.requests / built:.2f}"
        )
        for what, n in minimum.items():
            print(f"  minimum {what}: {n:,}")
        for name, stats in sorted(summary.streams.items()):
            print(f"  stream {name:<12} requests {stats.requests:>9,}  rows {stats.rows:>10,}")
        start = time.perf_counter()
        again = SlicedCollector(settings.sources.jenkins[0], SyncOptions(settings, engine)).sync()
        print(
            f"second sync, nothing new: {again.requests} request(s), {again.rows} rows, "
            f"{time.perf_counter() - start:.2f} s"
        )
        assert again.ok and again.rows == 0
        if step > 1:
            print(f"  extrapolated to every job: ~{seconds * step / 60:.0f} min")
    finally:
        server.terminate()
        server.wait(30)
        if server.stdout:
            server.stdout.close()
