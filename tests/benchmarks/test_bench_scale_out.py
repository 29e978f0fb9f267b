"""Several sync workers on one PostgreSQL warehouse, against the large sandbox organisation: 1, 2
and 4 `cdmetrics sync` processes at once (total requests, which must stay about one worker's,
wall time and its ratio to one worker's), and 2 workers of which one is killed mid-sync.

The simulator runs in its own process (`cdmetrics sandbox serve --size large`), each worker in its
own. The large org is long to sync, so by default the workers sync every 10th project
(CDMETRICS_BENCH_SLICE=10; 1 syncs all of it). Prints figures; asserts only correctness (every
run holds the same rows as one worker's).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from tests.benchmarks.test_bench_gitlab import TOKEN, free_port
from tests.conftest import postgres_url, require_postgres
from tests.sandbox_helpers import table_counts
from warehouse.engine import make_engine, normalise_url
from warehouse.schema import SyncState

pytestmark = pytest.mark.bench
CLI = str(Path(sys.executable).parent / "cdmetrics")
TOKEN_ENV = "CDM_BENCH_TOKEN"


@pytest.fixture
def large_gitlab() -> Iterator[str]:
    """The large organisation's GitLab simulator in its own process; yields its URL."""
    port = free_port()
    server = subprocess.Popen(
        [CLI, "sandbox", "serve", "--size", "large", "--port", str(port), "--token", TOKEN],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        print("\n" + server.stdout.readline().strip())
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)
        server.stdout.close()


def chosen_projects(url: str, step: int) -> list[str]:
    """Every `step`th project of the organisation (by id)."""
    import gitlab

    listing = (
        gitlab.Gitlab(url, private_token=TOKEN)
        .groups.get("acme", lazy=True)
        .projects.list(iterator=True, per_page=100, include_subgroups=True)
    )
    paths = sorted((p.id, p.path_with_namespace) for p in listing)
    return [path for i, (_, path) in enumerate(paths) if i % step == 0]


class Schema:
    """A fresh PostgreSQL schema and the warehouse URL whose connections use it."""

    def __init__(self) -> None:
        self.name = f"b_{uuid.uuid4().hex[:12]}"
        self.admin = make_engine(postgres_url())
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        url = normalise_url(postgres_url())
        self.url = url.update_query_dict(
            {"options": f"-csearch_path={self.name}"}
        ).render_as_string(hide_password=False)

    def drop(self) -> None:
        with self.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


def config(tmp_path: Path, url: str, projects: list[str], lease: str = "1m") -> Path:
    path = tmp_path / f"cdmetrics-{uuid.uuid4().hex[:6]}.toml"
    listed = ", ".join(f'"{p}"' for p in projects)
    path.write_text(
        f'[sync]\nrequests_per_second = 0\nparallelism = 2\nlease = "{lease}"\nmin_interval = "10m"\n\n'
        f'[[sources.gitlab]]\nname = "gitlab"\nurl = "{url}"\ntoken_env = "{TOKEN_ENV}"\n'
        f"projects = [{listed}]\n"
    )
    return path


def start_worker(cfg: Path, schema: Schema, worker_id: str) -> subprocess.Popen[str]:
    env = {**os.environ, TOKEN_ENV: TOKEN, "CDMETRICS_SYNC__WORKER_ID": worker_id}
    return subprocess.Popen(
        [CLI, "-c", str(cfg), "-w", schema.url, "sync"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def summary_of(worker: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = worker.communicate(timeout=7200)
    assert worker.returncode == 0, out[-2000:]
    return dict(json.loads(out.strip().splitlines()[-1]))


def run_workers(cfg: Path, schema: Schema, n: int) -> tuple[float, list[dict[str, Any]]]:
    """N workers started at once; returns (wall seconds, their summaries)."""
    start = time.perf_counter()
    workers = [start_worker(cfg, schema, f"w{i}") for i in range(n)]
    summaries = [summary_of(w) for w in workers]
    return time.perf_counter() - start, summaries


def test_sync_workers_share_the_large_org(large_gitlab: str, tmp_path: Path) -> None:
    require_postgres()
    step = int(os.environ.get("CDMETRICS_BENCH_SLICE", "10"))
    projects = chosen_projects(large_gitlab, step)
    cfg = config(tmp_path, large_gitlab, projects)
    print(f"{len(projects)} projects (every {step}th); workers: `cdmetrics sync` processes")
    baseline: tuple[float, int, dict[str, int]] | None = None
    schemas: list[Schema] = []
    try:
        for n in (1, 2, 4):
            schema = Schema()
            schemas.append(schema)
            seconds, summaries = run_workers(cfg, schema, n)
            requests = sum(s["sources"]["gitlab"]["requests"] for s in summaries)
            derived = sum("skipped" not in s["derive"] for s in summaries)
            engine = make_engine(schema.url)
            counts = table_counts(engine)
            engine.dispose()
            baseline = baseline or (seconds, requests, counts)
            assert counts == baseline[2]
            print(
                f"{n} worker(s): {requests:,} requests ({requests / baseline[1]:.3f}x one worker's), "
                f"{seconds:.1f} s wall ({seconds / baseline[0]:.2f}x), derive ran {derived}x"
            )
        assert baseline is not None
        killed(cfg, baseline, len(projects), schemas)
    finally:
        for schema in schemas:
            schema.drop()


def killed(
    cfg: Path, baseline: tuple[float, int, dict[str, int]], projects: int, schemas: list[Schema]
) -> None:
    """Two workers, one SIGKILLed after a third of the projects finished; the other completes."""
    schema = Schema()
    schemas.append(schema)
    short = cfg.with_name("short-" + cfg.name)
    short.write_text(cfg.read_text().replace('lease = "1m"', 'lease = "5s"'))
    engine = make_engine(schema.url)
    start = time.perf_counter()
    doomed, survivor = (
        start_worker(short, schema, "doomed"),
        start_worker(short, schema, "survivor"),
    )
    query = select(func.count()).where(
        SyncState.stream == "project", SyncState.finished_at.is_not(None)
    )
    deadline = time.monotonic() + 3600
    while doomed.poll() is None and time.monotonic() < deadline:
        try:
            with engine.connect() as conn:
                if conn.execute(query).scalar_one() * 3 >= projects:
                    break
        except Exception:  # still migrating
            pass
        time.sleep(0.2)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(30)
    assert doomed.stdout is not None
    doomed.stdout.close()
    summary = summary_of(survivor)
    seconds = time.perf_counter() - start
    assert table_counts(engine) == baseline[2]
    requests = summary["sources"]["gitlab"]["requests"]
    print(
        f"2 workers, one killed mid-sync (lease 5s): the survivor finished the sync in {seconds:.1f} s "
        f"({seconds / baseline[0]:.2f}x one worker's) with {requests:,} requests "
        f"({summary['sources']['gitlab']['skipped_partitions']} projects synced by the dead one kept); "
        "rows equal to one worker's"
    )
    engine.dispose()
