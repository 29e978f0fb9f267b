"""Several sync workers sharing one warehouse (issue #22): partitions leased in sync_state, a dead
worker's leases taken over, migrations and derive under locks. The sandbox over real HTTP;
PostgreSQL for the concurrent cases, SQLite too where one process is promised."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from analytics.derive import derive
from cdmetrics.cli import _cannot_open
from collectors.frame import SyncOptions
from collectors.gitlab import LEASE_STREAM, GitLabCollector
from collectors.leases import Claim
from collectors.run import derive_once
from collectors.sync import SourceSummary, SyncRun
from config.settings import Settings
from sandbox.generate import generate
from sandbox.model import Organisation
from sandbox.serve import Sandbox
from tests.conftest import pg_engine, postgres_url, require_postgres, schema_url
from tests.sandbox_helpers import TOKEN_ENV, sandbox_settings, snapshot
from warehouse.dimensions import ensure_source
from warehouse.engine import make_engine, normalise_url
from warehouse.migrate import current_revision, head_revision, upgrade
from warehouse.schema import SyncState
from warehouse.sync_state import claim

TOKEN = "glpat-sandbox-secret"
CLI = str(Path(sys.executable).parent / "cdmetrics")


@pytest.fixture(scope="module")
def small_org() -> Organisation:
    return generate(7, "small")


@pytest.fixture
def sandbox(small_org: Organisation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with Sandbox.start(org=small_org, token=TOKEN, jenkins=False, registry=False) as running:
        yield running


@pytest.fixture
def schemas() -> Iterator[list[str]]:
    """Three fresh PostgreSQL schemas (dropped afterwards)."""
    require_postgres()
    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(3)]
    admin = make_engine(postgres_url())
    with admin.begin() as conn:
        for name in names:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield names
    finally:
        with admin.begin() as conn:
            for name in names:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def warehouse(schema: str) -> Engine:
    engine = pg_engine(postgres_url(), schema)
    upgrade(engine)
    return engine


def worker(sandbox: Sandbox, engine: Engine, worker_id: str, **sync: Any) -> SourceSummary:
    """One worker's sync of the sandbox's GitLab (its own collector, clients and leases)."""
    settings = sandbox_settings(sandbox, worker_id=worker_id, parallelism=2, **sync)
    return GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine)).sync()


def one_worker(sandbox: Sandbox, engine: Engine) -> int:
    """Sync with one worker; returns the requests the simulator answered."""
    sandbox.gitlab_app.stats.reset()
    summary = worker(sandbox, engine, "solo")
    assert summary.ok, summary.errors
    return sandbox.gitlab_app.stats.requests


def leases_held(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(SyncState.lease_owner.is_not(None))
        return int(conn.execute(query).scalar_one())


def test_two_workers_share_one_sync_and_derive_once(sandbox: Sandbox, schemas: list[str]) -> None:
    reference, shared = warehouse(schemas[0]), warehouse(schemas[1])
    alone = one_worker(sandbox, reference)
    derive(reference)  # the shared warehouse is derived too (images resolved on deployments)
    sandbox.gitlab_app.stats.reset()
    summaries: dict[str, SourceSummary] = {}
    derived: list[str] = []
    results: dict[str, dict[str, object]] = {}

    def run(worker_id: str) -> None:
        summaries[worker_id] = worker(sandbox, shared, worker_id, min_interval="10m")

        def count_derive() -> dict[str, object]:
            derived.append(worker_id)
            return derive(shared).as_json()

        results[worker_id] = derive_once(shared, ["gitlab"], count_derive)

    threads = [threading.Thread(target=run, args=(w,)) for w in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert all(s.ok for s in summaries.values()) and set(summaries) == {"a", "b"}
    assert snapshot(shared) == snapshot(reference)
    together = sandbox.gitlab_app.stats.requests
    print(f"requests: one worker {alone}, two workers {together}")
    assert together <= 1.1 * alone, (together, alone)
    projects = len(sandbox.org.services)
    streams = summaries["a"].streams, summaries["b"].streams
    assert sum(s["commits"].partitions for s in streams if "commits" in s) == projects
    assert leases_held(shared) == 0
    assert len(derived) == 1 and sum("skipped" in r for r in results.values()) == 1
    reference.dispose()
    shared.dispose()


def test_a_killed_worker_leaves_leases_that_expire_and_another_completes(
    sandbox: Sandbox, schemas: list[str], tmp_path: Path
) -> None:
    reference, shared = warehouse(schemas[0]), warehouse(schemas[1])
    one_worker(sandbox, reference)
    config = sandbox.config(token_env=TOKEN_ENV).replace(
        "[sync]\n", '[sync]\nlease = "3s"\nparallelism = 2\nworker_id = "doomed"\n'
    )
    (tmp_path / "cdmetrics.toml").write_text(config)
    doomed = subprocess.Popen(
        [CLI, "-w", schema_url(schemas[1]), "sync"],
        cwd=tmp_path,
        env={**os.environ, TOKEN_ENV: TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        finished = wait_for_finished_projects(shared, doomed, at_least=3, seconds=120)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(30)
    held = leases_held(shared)
    assert held > 0 and finished < len(sandbox.org.services)
    start = time.monotonic()
    summary = worker(sandbox, shared, "heir", lease="3s", min_interval="10m")
    assert summary.ok, summary.errors
    assert summary.skipped >= finished  # the dead worker's finished projects are not synced again
    assert time.monotonic() - start < 120
    assert leases_held(shared) == 0
    assert snapshot(shared) == snapshot(reference)
    reference.dispose()
    shared.dispose()


def wait_for_finished_projects(engine: Engine, process: Any, at_least: int, seconds: float) -> int:
    """Wait (bounded) until a worker process has finished `at_least` projects; returns how many."""
    deadline = time.monotonic() + seconds
    query = select(func.count()).where(
        SyncState.stream == LEASE_STREAM, SyncState.finished_at.is_not(None)
    )
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with engine.connect() as conn:
                done = int(conn.execute(query).scalar_one())
        except OperationalError:  # the worker is still migrating
            done = 0
        if done >= at_least:
            return done
        time.sleep(0.05)
    raise AssertionError(f"the worker finished too soon or too late (exit {process.poll()})")


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_workers_starting_on_an_empty_warehouse_both_migrate_it(
    backend: str, schemas: list[str], tmp_path: Path
) -> None:
    url = schema_url(schemas[2]) if backend == "postgresql" else f"sqlite:///{tmp_path / 'w.db'}"
    starts = [
        subprocess.Popen(
            [CLI, "-w", url, "db", "upgrade"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(3)
    ]
    results = [(p.wait(120), *p.communicate()) for p in starts]
    assert all(code == 0 for code, _, _ in results), results
    assert sum("upgraded from empty" in out for _, out, _ in results) == 1, results
    engine = make_engine(url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_a_busy_sqlite_warehouse_is_not_blamed_on_its_url() -> None:
    import sqlite3

    url = normalise_url("sqlite:////srv/cdmetrics.db")
    for reason in ("database is locked", "table environment already exists"):
        error = _cannot_open(
            url, OperationalError("CREATE TABLE", {}, sqlite3.OperationalError(reason))
        )
        assert "in use by another cdmetrics process" in str(error)
        assert "check [warehouse] url" not in str(error)
    unopenable = OperationalError(
        "connect", {}, sqlite3.OperationalError("unable to open database file")
    )
    assert "check [warehouse] url" in str(_cannot_open(url, unopenable))


def test_leases_busy_taken_over_when_expired_and_done_this_round(engine: Engine) -> None:
    """One process on SQLite or PostgreSQL: the lease rules, partition by partition."""
    with engine.begin() as conn:
        source = ensure_source(conn, "gitlab", "gitlab", None)
        assert claim(conn, source, LEASE_STREAM, "7", "other", timedelta(seconds=1))
    settings = Settings(sync={"lease": "1s", "worker_id": "me", "min_interval": "0s"})
    run = SyncRun(engine, source, SourceSummary("gitlab", "gitlab"), settings.sync)
    try:
        assert run.leases.try_claim(LEASE_STREAM, "7") is Claim.BUSY
        time.sleep(1.1)
        with run.leases.leased(LEASE_STREAM, "7", mark=True) as taken:
            assert taken is Claim.TAKEN
            assert run.leases.renew() == 1
        assert leases_held(engine) == 0
    finally:
        run.leases.close()
    later = SyncRun(engine, source, SourceSummary("gitlab", "gitlab"), settings.sync)
    late = Settings(sync={"worker_id": "late", "min_interval": "1h"})
    again = SyncRun(engine, source, SourceSummary("gitlab", "gitlab"), late.sync)
    try:
        assert again.leases.try_claim(LEASE_STREAM, "7") is Claim.DONE  # within min_interval
        assert later.leases.try_claim(LEASE_STREAM, "7") is Claim.TAKEN  # a new round: synced again
        later.leases.finish(LEASE_STREAM, "7", mark=False)
    finally:
        later.leases.close()
        again.leases.close()


def test_a_long_partition_keeps_its_lease_while_its_worker_lives(engine: Engine) -> None:
    """A partition running for longer than the lease is renewed, never taken over: the second
    worker waits for it and then skips it as done this round."""
    with engine.begin() as conn:
        source = ensure_source(conn, "gitlab", "gitlab", None)

    def run_of(worker_id: str) -> SyncRun:
        settings = Settings(sync={"lease": "1s", "worker_id": worker_id})
        return SyncRun(engine, source, SourceSummary("gitlab", "gitlab"), settings.sync)

    first, second = run_of("first"), run_of("second")
    ran: list[str] = []

    def slow(item: str) -> None:
        ran.append(f"first {item}")
        time.sleep(2.5)

    try:
        long = threading.Thread(
            target=first.leases.fan_out,
            args=(["p"], lambda item: (LEASE_STREAM, item), slow, 1),
            kwargs={"mark": True},
        )
        long.start()
        while not ran:
            time.sleep(0.01)
        second.leases.fan_out(
            ["p"], lambda item: (LEASE_STREAM, item), lambda item: ran.append(f"second {item}"), 1
        )
        long.join(10)
    finally:
        first.leases.close()
        second.leases.close()
    assert ran == ["first p"] and second.leases.skipped == 1
    assert leases_held(engine) == 0
