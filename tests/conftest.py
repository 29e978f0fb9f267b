"""Shared fixtures: a migrated warehouse on SQLite and on PostgreSQL, each test isolated.

PostgreSQL comes from CDMETRICS_TEST_POSTGRES_URL (default: the local server on 127.0.0.1:5432,
database `test`). Where no server answers, PostgreSQL tests skip with the reason, unless
CDMETRICS_REQUIRE_POSTGRES=1 (set by CI), which turns the skip into a failure.

The suite runs under pytest-xdist (`-n auto --dist loadfile` in pyproject.toml): one worker per
core, at most MAX_WORKERS (CDMETRICS_TEST_WORKERS sets the number; `-n 0` runs in one process).
Each test file runs whole on one worker; session-scoped fixtures are built once per worker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.demo_warehouse import build_demo, with_findings
from warehouse.engine import make_engine, normalise_url
from warehouse.migrate import upgrade

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# more workers than this mostly wait on the one PostgreSQL server and the simulators' threads
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: CDMETRICS_TEST_WORKERS when set, else one worker per core and one more (the
    tests wait on HTTP, sleeps and the database about half the time: on 2 cores, 3 workers ran
    a sample of the sync tests in 176 s against 224 s with 2), up to MAX_WORKERS."""
    wanted = os.environ.get("CDMETRICS_TEST_WORKERS", "")
    if wanted:
        if not wanted.isdigit():
            raise pytest.UsageError(
                f"CDMETRICS_TEST_WORKERS={wanted!r}: set it to a number of workers (0: no workers)"
            )
        return int(wanted)
    return max(1, min((os.cpu_count() or 1) + 1, MAX_WORKERS))


# The slowest test files (about 20-280 s of one worker each on 2 cores): handed out first, so that
# none of them starts last while the other workers run out of files. xdist's loadfile would hand
# out the files with most tests first, and these hold few tests each: they started last.
SLOW_FIRST = (
    "test_fault_injection.py",
    "test_dashboard_browser.py",
    "test_cli.py",
    "test_gitlab_registry_paths.py",
    "test_policy_scan_reference.py",
    "test_jenkins_sync.py",
    "test_sonarqube_webhook.py",
    "test_gitlab_sync.py",
    "test_images_truth.py",
    "test_scale_out.py",
    "test_branching.py",
    "test_gate_cli.py",
    "test_cli_traps.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of SLOW_FIRST first, in its order, the others after them as collected (each
    file's tests stay together and in order; xdist keeps this order: --no-loadscope-reorder)."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def postgres_url() -> str:
    return os.environ.get("CDMETRICS_TEST_POSTGRES_URL", DEFAULT_PG)


@cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    url = postgres_url()
    try:
        probe = create_engine(normalise_url(url), connect_args={"connect_timeout": 3})
        with probe.connect() as conn:
            conn.execute(text("select 1"))
        probe.dispose()
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL at {url} is not reachable ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def require_postgres() -> None:
    reason = postgres_unavailable()
    if reason is None:
        return
    if os.environ.get("CDMETRICS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}; CDMETRICS_REQUIRE_POSTGRES=1 makes this a failure")
    pytest.skip(f"{reason}; set CDMETRICS_TEST_POSTGRES_URL to run the PostgreSQL tests")


@contextmanager
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh, empty PostgreSQL schema: (url, schema); dropped afterwards."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres_url())
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield postgres_url(), schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def migrated_warehouse(kind: str, folder: Path) -> Iterator[Engine]:
    """A warehouse at head of `kind` (sqlite: a file in `folder`; postgresql: a schema of its
    own), disposed (and its schema dropped) afterwards."""
    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{folder / 'warehouse.db'}")
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()
        return
    with pg_schema() as (url, schema):
        engine = pg_engine(url, schema)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


def schema_url(schema: str) -> str:
    """A warehouse URL whose connections use `schema` (for subprocesses such as the CLI)."""
    url = normalise_url(postgres_url()).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def pg_schema_url() -> Iterator[tuple[str, str]]:
    """A fresh, empty PostgreSQL schema for one test: (url, schema); dropped afterwards."""
    with pg_schema() as found:
        yield found


def pg_engine(url: str, schema: str) -> Engine:
    return make_engine(url, connect_args={"options": f"-csearch_path={schema}"})


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database, SQLite file or PostgreSQL schema."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
        yield engine
        engine.dispose()
        return
    url, schema = request.getfixturevalue("pg_schema_url")
    engine = pg_engine(url, schema)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    """A warehouse at the head migration, on SQLite and on PostgreSQL."""
    upgrade(empty_engine)
    return empty_engine


@pytest.fixture
def twin_engine(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """A second warehouse at head on the same kind of database as `engine` (a reference to
    compare it with)."""
    folder = tmp_path / "twin"
    folder.mkdir()
    with migrated_warehouse(engine.dialect.name, folder) as twin:
        yield twin


@pytest.fixture(scope="session")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo warehouse (tests/demo_warehouse.py), built once per session: tests only read it."""
    return build_demo(tmp_path_factory.mktemp("demo") / "demo.db")


@pytest.fixture(scope="session")
def findings_url(demo_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the demo warehouse with drift snapshots and violations: tests only read it."""
    return with_findings(demo_url, tmp_path_factory.mktemp("findings") / "findings.db")
