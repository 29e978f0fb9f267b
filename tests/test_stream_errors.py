"""A stream's errors stay in the stream (issue #22): a database error or an unexpected exception in
one stream fails that stream, the others finish, the summary names it and a resume recovers; a
list page short of what its headers promise is a stream error, never silent loss."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text

from collectors.frame import SyncOptions
from collectors.gitlab import GitLabCollector
from collectors.sync import SourceSummary
from sandbox.serve import Sandbox
from sandbox.server import FaultRule
from tests.sandbox_helpers import TOKEN_ENV, sandbox_settings, snapshot
from tests.test_cli import run
from warehouse.schema import SyncState

REJECTED = "rejected by the test"


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv(TOKEN_ENV, "glpat-sandbox-secret")
    with Sandbox.start("tiny", seed=3, token="glpat-sandbox-secret") as running:
        yield running


def sync(sandbox: Sandbox, engine: Engine, per_page: int = 100) -> SourceSummary:
    settings = sandbox_settings(sandbox)
    source = settings.sources.gitlab[0].model_copy(update={"per_page": per_page})
    return GitLabCollector(source, SyncOptions(settings, engine, max_retries=1)).sync()


@contextmanager
def rejecting_inserts(engine: Engine, table: str) -> Iterator[None]:
    """A trigger that makes the database refuse every insert into `table` (a real database
    error, on SQLite and PostgreSQL); dropped on leaving."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    f"CREATE TRIGGER reject_rows BEFORE INSERT ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{REJECTED}'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION reject_row() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN RAISE EXCEPTION '{REJECTED}'; END $$"
                )
            )
            conn.execute(
                text(
                    f"CREATE TRIGGER reject_rows BEFORE INSERT ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION reject_row()"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            on = "" if engine.dialect.name == "sqlite" else f" ON {table}"
            conn.execute(text(f"DROP TRIGGER reject_rows{on}"))


def failed_partitions(engine: Engine, stream: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(SyncState.partition).where(
                    SyncState.stream == stream, SyncState.status == "failed"
                )
            ).scalars()
        )


def without(tables: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in tables.items() if k not in names}


def test_a_database_error_fails_its_stream_and_the_others_complete(
    tiny: Sandbox, engine: Engine, twin_engine: Engine
) -> None:
    assert sync(tiny, twin_engine).ok
    reference = snapshot(twin_engine)
    assert reference["deployment"], "the sandbox must have deployments for this test"
    with rejecting_inserts(engine, "deployment"):
        broken = sync(tiny, engine)
    assert not broken.ok
    assert broken.streams["deployments"].errors == len(broken.errors) > 0
    for error in broken.errors:
        assert error.startswith("gitlab: project ") and ": deployments: database error: " in error
        assert REJECTED in error and "check the warehouse" in error
        assert "INSERT" not in error  # the statement (and its parameters) stay out of it
    assert len(failed_partitions(engine, "deployments")) == len(broken.errors)
    # every other stream is complete
    assert without(snapshot(engine), "deployment") == without(reference, "deployment")
    assert snapshot(engine, ("deployment",))["deployment"] == []
    resumed = sync(tiny, engine)
    assert resumed.ok, resumed.errors
    assert snapshot(engine) == reference
    assert failed_partitions(engine, "deployments") == set()


def test_an_unexpected_exception_fails_its_stream_only(
    tiny: Sandbox, engine: Engine, twin_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    assert sync(tiny, twin_engine).ok

    def explode(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO INCIDENT"):
            raise RuntimeError("a bug in the incidents stream")

    event.listen(engine, "before_cursor_execute", explode)
    try:
        with caplog.at_level("DEBUG", logger="collectors.sync"):
            broken = sync(tiny, engine)
    finally:
        event.remove(engine, "before_cursor_execute", explode)
    assert not broken.ok and broken.errors
    assert {e.split(": ")[2] for e in broken.errors} == {"incidents"}
    assert all("unexpected RuntimeError: a bug in the incidents stream" in e for e in broken.errors)
    assert "Traceback" in caplog.text  # the traceback is in the debug log
    reference = snapshot(twin_engine)
    assert without(snapshot(engine), "incident") == without(reference, "incident")
    assert sync(tiny, engine).ok
    assert snapshot(engine) == reference


def test_cli_sync_with_a_failing_stream_still_derives_and_summarises(
    tiny: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "cdmetrics.toml").write_text(
        "[warehouse]\nurl = 'sqlite:///w.db'\n" + tiny.config(token_env="CDM_CLI_TOKEN")
    )
    assert run(tmp_path, "db", "upgrade").returncode == 0
    with sqlite3.connect(tmp_path / "w.db") as db:
        db.execute(
            "CREATE TRIGGER reject_rows BEFORE INSERT ON incident "
            f"BEGIN SELECT RAISE(ABORT, '{REJECTED}'); END"
        )
    synced = run(tmp_path, "sync", env={"CDM_CLI_TOKEN": "glpat-sandbox-secret"})
    assert synced.returncode == 1, synced.stderr  # not every source synced
    summary = json.loads(synced.stdout.strip().splitlines()[-1])
    gitlab = summary["sources"]["gitlab"]
    assert not gitlab["ok"] and gitlab["errors"]
    assert all(": incidents: database error: " in e for e in gitlab["errors"])
    assert gitlab["streams"]["incidents"]["errors"] == len(gitlab["errors"])
    assert gitlab["streams"]["deployments"]["rows"] > 0
    assert summary["derive"]["deployments"] > 0  # derive ran
    assert "incidents: database error" in synced.stderr


# -- short pages ------------------------------------------------------------------------------


def commit_cursors(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(SyncState.partition, SyncState.cursor).where(SyncState.stream == "commits")
        )
        return dict(rows.all())


def test_short_commit_pages_keep_the_cursor_and_a_resume_loses_nothing(
    tiny: Sandbox, engine: Engine, twin_engine: Engine
) -> None:
    """Commits are listed newest first: a short page that let the cursor move on to the newest
    commit seen would lose the missing ones for good."""
    org = tiny.org
    tiny.advance(org.now - (org.now - org.start) / 3)
    for warehouse in (engine, twin_engine):
        assert sync(tiny, warehouse, per_page=3).ok
    tiny.advance(org.now)
    assert sync(tiny, twin_engine, per_page=3).ok
    cursors = commit_cursors(engine)
    rule = tiny.gitlab_app.faults.add(FaultRule(path=r"/repository/commits$", kind="short"))
    broken = sync(tiny, engine, per_page=3)
    assert rule.fired and not broken.ok
    assert broken.streams["commits"].errors == len(broken.errors) == len(cursors)
    assert all(": commits: ShortPage: short page: " in e for e in broken.errors)
    assert commit_cursors(engine) == cursors
    tiny.gitlab_app.faults.clear()
    assert sync(tiny, engine, per_page=3).ok
    assert snapshot(engine) == snapshot(twin_engine)


@pytest.mark.parametrize(
    ("path", "stream", "after"),
    [
        (r"/repository/commits$", "commits", 1),
        (r"/merge_requests$", "merge_requests", 1),
        (r"/projects/\d+/jobs$", "pipelines", 1),
        (r"/merge_requests/\d+/notes$", "merge_requests", 1),
        (r"/issues$", "incidents", 0),
    ],
)
def test_a_short_page_fails_its_stream_and_a_resume_recovers_it(
    tiny: Sandbox, tmp_path: Path, path: str, stream: str, after: int
) -> None:
    from warehouse.engine import make_engine
    from warehouse.migrate import upgrade

    engines = []
    for name in ("reference.db", "broken.db"):
        engines.append(make_engine(f"sqlite:///{tmp_path / name}"))
        upgrade(engines[-1])
    reference, engine = engines
    # REST's per-item detail calls are the fallback of an instance without GraphQL
    tiny.gitlab.graphql.enabled = "/jobs" not in path and "/notes" not in path
    assert sync(tiny, reference, per_page=3).ok
    rule = tiny.gitlab_app.faults.add(FaultRule(path=path, kind="short", after=after, times=1))
    broken = sync(tiny, engine, per_page=3)
    assert rule.fired == 1
    assert not broken.ok
    [error] = broken.errors
    assert f": {stream}: ShortPage: short page: " in error
    assert f"{tiny.gitlab_url}/api/v4/projects/" in error
    tiny.gitlab_app.faults.clear()
    assert sync(tiny, engine, per_page=3).ok
    assert snapshot(engine) == snapshot(reference)


def test_a_database_error_fails_jenkins_jobs_and_the_others_complete(
    monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    from sandbox.generate import generate
    from sandbox.truth import jenkins_counts
    from tests.test_jenkins_sync import TOKEN, jenkins_rows, set_env
    from tests.test_jenkins_sync import sync as sync_jenkins

    set_env(monkeypatch)
    org = generate(3, "tiny", jenkins=1)
    with Sandbox.start(org=org, token=TOKEN) as sandbox:
        with rejecting_inserts(engine, "test_run"):
            broken = sync_jenkins(sandbox, engine)
        assert not broken.ok
        assert {e.split(": ")[2] for e in broken.errors} == {"builds"}
        assert all(e.startswith("jenkins: job ") for e in broken.errors)
        assert all(": builds: database error: " in e and REJECTED in e for e in broken.errors)
        expected = jenkins_counts(org)
        assert jenkins_rows(engine)["deployment"] == expected["deployment"]  # deploy jobs completed
        assert jenkins_rows(engine)["test_run"] == 0
        assert sync_jenkins(sandbox, engine).ok
        assert jenkins_rows(engine) == {t: expected[t] for t in jenkins_rows(engine)}


def test_tags_a_registry_collector_stored_first_are_still_read_from_gitlab(
    tiny: Sandbox, engine: Engine, twin_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GitLab registry stream knows the tags it read by its own raw payloads: tags Harbor
    stored first (while the stream failed, say) are read from GitLab too, so that its record is
    whole (a resume after a failed GitLab registry stream equals an uninterrupted sync)."""
    from collectors.registry import RegistryCollector
    from config.settings import Settings
    from warehouse.schema import RawPayload, Source

    sources, environ = tiny.sources()
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    harbor = Settings(sources={"registry": sources["registry"]}, sync={"requests_per_second": 0})
    assert RegistryCollector(harbor.sources.registry[0], SyncOptions(harbor, engine)).sync().ok
    assert sync(tiny, engine).ok and sync(tiny, twin_engine).ok

    def gitlab_tags(e: Engine) -> int:
        query = (
            select(func.count())
            .select_from(RawPayload)
            .join(Source, Source.id == RawPayload.source_id)
            .where(Source.name == "gitlab", RawPayload.stream == "registry")
        )
        with e.connect() as conn:
            return int(conn.execute(query).scalar_one())

    assert gitlab_tags(engine) == gitlab_tags(twin_engine) > 0


def stream_states(engine: Engine, stream: str) -> list[Any]:
    with engine.connect() as conn:
        query = select(SyncState.partition, SyncState.status, SyncState.rows, SyncState.rejected)
        return list(conn.execute(query.where(SyncState.stream == stream)).all())


def test_a_failed_partition_keeps_the_rows_it_stored_before_failing(
    tiny: Sandbox, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Data sources page shows the rows each stream stored: a partition that stored batches
    before a short page failed it records them (and the rejected payloads), so the stream's rows
    in sync_state add up to what the sync wrote."""
    monkeypatch.setattr("collectors.gitlab.BATCH_ITEMS", 2)  # a batch stored before page 2
    rule = tiny.gitlab_app.faults.add(
        FaultRule(path=r"/merge_requests$", kind="short", after=1, times=1)
    )
    broken = sync(tiny, engine, per_page=3)
    assert rule.fired == 1 and not broken.ok
    states = stream_states(engine, "merge_requests")
    [failed] = [s for s in states if s.status == "failed"]
    assert failed.rows > 0  # its first batch was stored
    stats = broken.streams["merge_requests"]
    assert sum(s.rows for s in states) == stats.rows
    assert sum(s.rejected for s in states) == stats.rejected
