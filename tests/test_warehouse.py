"""The warehouse on SQLite and PostgreSQL: migrations, upserts, time handling, raw payloads, state."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, insert, inspect, select, text
from sqlalchemy.exc import OperationalError, StatementError

from collectors.run import run_sync
from config.settings import Settings
from tests.conftest import postgres_url, require_postgres
from warehouse.dimensions import ensure_id, ensure_source
from warehouse.engine import make_engine, normalise_url
from warehouse.migrate import HEAD, alembic_config, current_revision, head_revision, upgrade
from warehouse.raw import Raw, iter_raw, payload_hash, prune_raw, store_raw
from warehouse.schema import (
    Branch,
    Commit,
    Deployment,
    Environment,
    MergeRequest,
    PolicyViolation,
    RawPayload,
    Repo,
    metadata,
)
from warehouse.sync_state import claim, get_state, release, save_state
from warehouse.types import Json, NaiveDatetimeError, UTCDateTime, unpack_json
from warehouse.upsert import natural_key_columns, upsert

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def make_repo(engine: Engine) -> int:
    with engine.begin() as conn:
        source_id = ensure_source(conn, "gitlab", "gitlab", "http://gitlab.test")
        return ensure_id(conn, Repo, {"source_id": source_id, "external_id": "1", "path": "g/app"})


def commit_rows(repo_id: int, n: int, title: str = "change") -> list[dict[str, object]]:
    return [
        {
            "repo_id": repo_id,
            "sha": f"{i:040x}",
            "author_name": f"dev{i % 7}",
            "authored_at": T0 + timedelta(minutes=i),
            "committed_at": T0 + timedelta(minutes=i, seconds=30),
            "title": f"{title} {i}",
            "additions": i % 100,
            "deletions": i % 13,
            "is_merge": i % 10 == 0,
        }
        for i in range(n)
    ]


def count(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


# --- migrations ------------------------------------------------------------------------------


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []


def test_upgrade_twice_changes_nothing(empty_engine: Engine) -> None:
    assert upgrade(empty_engine) == (None, head_revision())
    tables = set(inspect(empty_engine).get_table_names())
    assert upgrade(empty_engine) == (head_revision(), head_revision())
    assert set(inspect(empty_engine).get_table_names()) == tables
    assert current_revision(empty_engine) == head_revision()
    assert set(metadata.tables) <= tables


def test_head_names_the_newest_migration() -> None:
    """`warehouse.migrate.HEAD` (the fast path's answer) is the scripts' head: a new migration
    moves it."""
    assert head_revision() == HEAD


def test_opening_a_warehouse_at_head_imports_no_alembic(tmp_path: Path) -> None:
    """At head, opening reads the version row and nothing else; an empty one is migrated."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    program = (
        "import sys; from warehouse.engine import open_warehouse; "
        f"open_warehouse({url!r}); print('alembic' in sys.modules)"
    )
    runs = [
        subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert [r.stdout.strip() for r in runs] == ["True", "False"]  # migrated, then at head


def test_every_table_has_a_natural_key() -> None:
    for table in metadata.sorted_tables:
        assert natural_key_columns(table), table.name


# --- upsert ----------------------------------------------------------------------------------


def test_upsert_10000_rows_twice_leaves_10000(engine: Engine) -> None:
    repo_id = make_repo(engine)
    rows = commit_rows(repo_id, 10_000)
    with engine.begin() as conn:
        assert upsert(conn, Commit, rows) == 10_000
    with engine.begin() as conn:
        assert upsert(conn, Commit, rows) == 0  # nothing changed: nothing written
    assert count(engine, Commit) == 10_000


def test_upsert_updates_changed_rows_only(engine: Engine) -> None:
    repo_id = make_repo(engine)
    rows = commit_rows(repo_id, 1_000)
    with engine.begin() as conn:
        upsert(conn, Commit, rows)
    changed = [dict(r, title="retitled") if i % 4 == 0 else r for i, r in enumerate(rows)]
    changed[1] = dict(changed[1], additions=None)  # a value becoming NULL is a change too
    with engine.begin() as conn:
        assert upsert(conn, Commit, changed) == 251
    with engine.connect() as conn:
        titles = dict(conn.execute(select(Commit.sha, Commit.title)).all())
        assert titles[f"{0:040x}"] == "retitled"
        assert titles[f"{3:040x}"] == "change 3"
        assert (
            conn.execute(select(Commit.additions).where(Commit.sha == f"{1:040x}")).scalar() is None
        )
    assert count(engine, Commit) == 1_000


def test_upsert_leaves_unlisted_columns_alone(engine: Engine) -> None:
    repo_id = make_repo(engine)
    with engine.begin() as conn:
        upsert(conn, Commit, commit_rows(repo_id, 3))
        # a partial row (e.g. from a webhook) updates only what it carries
        upsert(conn, Commit, [{"repo_id": repo_id, "sha": f"{1:040x}", "title": "partial"}])
        row = conn.execute(select(Commit).where(Commit.sha == f"{1:040x}")).one()
    assert row.title == "partial"
    assert row.author_name == "dev1"


def test_kept_and_volatile_columns(engine: Engine) -> None:
    first = {
        "policy": "p",
        "subject": "s",
        "severity": "warn",
        "message": "m",
        "occurred_at": T0,
        "first_seen_at": T0,
        "last_seen_at": T0,
    }
    later = dict(first, first_seen_at=T0 + timedelta(days=1), last_seen_at=T0 + timedelta(days=1))
    with engine.begin() as conn:
        assert upsert(conn, PolicyViolation, [first]) == 1
        # only a volatile column differs: not a change
        assert upsert(conn, PolicyViolation, [later]) == 0
        assert upsert(conn, PolicyViolation, [dict(later, message="m2")]) == 1
        row = conn.execute(select(PolicyViolation)).one()
    assert row.first_seen_at == T0  # kept from the first insert
    assert row.last_seen_at == T0 + timedelta(days=1)
    assert row.message == "m2"


def test_upsert_requires_the_natural_key(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match="natural-key"):
        upsert(conn, Commit, [{"sha": "abc"}])


# --- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone",
    [
        UTC,
        ZoneInfo("Asia/Shanghai"),
        ZoneInfo("America/Los_Angeles"),
        timezone(timedelta(hours=5, minutes=45)),
    ],
)
def test_timezone_round_trip(engine: Engine, zone: object) -> None:
    repo_id = make_repo(engine)
    instant = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=zone)  # type: ignore[arg-type]
    with engine.begin() as conn:
        upsert(conn, Branch, [{"repo_id": repo_id, "name": "main", "last_commit_at": instant}])
        back = conn.execute(select(Branch.last_commit_at)).scalar_one()
    assert back == instant
    assert back.tzinfo is not None and back.utcoffset() == timedelta(0)


def test_timestamps_order_correctly_in_sql(engine: Engine) -> None:
    repo_id = make_repo(engine)
    early = datetime(2026, 1, 1, 23, 0, tzinfo=ZoneInfo("America/New_York"))  # 04:00 UTC next day
    late = datetime(2026, 1, 2, 6, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 05:00 UTC
    with engine.begin() as conn:
        upsert(
            conn,
            Branch,
            [
                {"repo_id": repo_id, "name": "a", "last_commit_at": late},
                {"repo_id": repo_id, "name": "b", "last_commit_at": early},
            ],
        )
        first = conn.execute(select(Branch.name).order_by(Branch.last_commit_at)).scalars().all()
        newest = conn.execute(select(func.max(Branch.last_commit_at))).scalar_one()
    assert first == ["b", "a"]
    assert newest is not None


@pytest.mark.parametrize(
    ("stored", "instant"),
    [
        ("2026-01-02 03:04:05.000006", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),  # ours
        ("2026-01-02 03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # CURRENT_TIMESTAMP
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02 03:04:05+02:00", datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
    ],
)
def test_sqlite_text_of_any_iso_form_reads_as_the_utc_instant_it_names(
    stored: str, instant: datetime
) -> None:
    """SQLite keeps timestamps as text; text written outside SQLAlchemy (a migration, a hand
    fix, CURRENT_TIMESTAMP) reads as the same instant in UTC as ours does, whatever its form
    (`UTCDateTime.result_processor`'s fast path takes only naive date-and-time text)."""
    table = sa.Table("t", sa.MetaData(), sa.Column("at", UTCDateTime()))
    engine = sa.create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (at) VALUES (:at)"), {"at": stored})
        back = conn.execute(select(table.c.at)).scalar_one()
        lowest = conn.execute(select(func.min(table.c.at))).scalar_one()
    assert back == lowest == instant
    assert back.utcoffset() == timedelta(0) and lowest.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    repo_id = make_repo(engine)
    with engine.begin() as conn, pytest.raises(StatementError) as info:
        upsert(
            conn,
            Branch,
            [{"repo_id": repo_id, "name": "x", "last_commit_at": datetime(2026, 1, 1)}],
        )
    assert isinstance(info.value.orig, NaiveDatetimeError)


# --- raw payloads and sync state -------------------------------------------------------------


def test_raw_payloads_are_kept_and_rejections_flagged(engine: Engine) -> None:
    with engine.begin() as conn:
        source_id = ensure_source(conn, "gitlab", "gitlab")
        items = [Raw("commits", str(i), {"id": i, "nested": {"a": [1, 2]}}) for i in range(2_500)]
        items.append(Raw("commits", "bad", {"title": "no id"}, error="missing id"))
        assert store_raw(conn, source_id, items) == 2_501
        assert store_raw(conn, source_id, items, fetched_at=T0) == 0  # same content: unchanged
        assert store_raw(conn, source_id, [Raw("commits", "1", {"id": 1, "new": True})]) == 1
    with engine.connect() as conn:
        ids = [row.external_id for row in iter_raw(conn, source_id, "commits")]
        rejected = list(iter_raw(conn, source_id, "commits", rejected=True))
    assert len(ids) == 2_501 and len(set(ids)) == 2_501
    assert [(r.external_id, r.error, r.payload) for r in rejected] == [
        ("bad", "missing id", {"title": "no id"})
    ]
    with engine.connect() as conn:
        one = conn.execute(select(RawPayload).where(RawPayload.external_id == "1")).one()
    assert one.payload == {"id": 1, "new": True}
    assert one.hash == payload_hash({"new": True, "id": 1})


def test_raw_payloads_0021_are_compressed_by_0022_and_retention_drops_old_accepted_bodies(
    empty_engine: Engine,
) -> None:
    """Migration 0022 turns the JSON bodies written before it into compressed ones that read back
    equal; `prune_raw` then drops the body of an accepted payload older than the retention and
    keeps its row and hash (an unchanged re-fetch still writes nothing), a rejected one whole."""
    from alembic import command

    with empty_engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0021")
    columns = {"source_id": sa.Integer(), "stream": sa.String(), "external_id": sa.String()}
    columns |= {"payload": Json, "hash": sa.String(), "fetched_at": UTCDateTime()}
    columns |= {"rejected": sa.Boolean(), "error": sa.Text()}
    # raw_payload as 0021 left it
    old = sa.Table("raw_payload", sa.MetaData(), *(sa.Column(n, t) for n, t in columns.items()))
    bodies = {
        "old": {"id": 1, "title": "é" * 300, "jobs": [{"n": i} for i in range(50)]},
        "new": {"id": 2},
        "bad": ["not", "an", "object"],
    }
    with empty_engine.begin() as conn:
        source_id = ensure_source(conn, "gitlab", "gitlab")
        conn.execute(
            insert(old),
            [
                {
                    "source_id": source_id,
                    "stream": "commits",
                    "external_id": key,
                    "payload": body,
                    "hash": payload_hash(body),
                    "fetched_at": T0 - timedelta(days=0 if key == "new" else 40),
                    "rejected": key == "bad",
                    "error": "not an object" if key == "bad" else None,
                }
                for key, body in bodies.items()
            ],
        )
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        stored = dict(conn.execute(text("select external_id, payload from raw_payload")).all())
        read = dict(conn.execute(select(RawPayload.external_id, RawPayload.payload)).all())
    assert read == bodies
    assert {k: unpack_json(v) for k, v in stored.items()} == bodies  # zlib bytes on disk
    assert len(bytes(stored["old"])) < len(json.dumps(bodies["old"]).encode()) / 5

    assert prune_raw(empty_engine, 30, now=T0) == 1
    assert prune_raw(empty_engine, 30, now=T0) == 0
    with empty_engine.begin() as conn:
        rows = {r.external_id: r for r in conn.execute(select(RawPayload))}
        assert store_raw(conn, source_id, [Raw("commits", "old", bodies["old"])]) == 0
    assert rows["old"].payload is None and rows["old"].hash == payload_hash(bodies["old"])
    assert rows["new"].payload == bodies["new"] and rows["bad"].payload == bodies["bad"]
    # every sync ends by applying `[warehouse] raw_retention_days` (T0 is days before today)
    settings = Settings(warehouse={"url": "sqlite://", "raw_retention_days": 1})
    assert run_sync(settings, empty_engine) == []
    with empty_engine.connect() as conn:
        left = dict(conn.execute(select(RawPayload.external_id, RawPayload.payload)).all())
    assert left == {"old": None, "new": None, "bad": bodies["bad"]}


def test_migration_0031_fills_every_merge_requests_first_commit(empty_engine: Engine) -> None:
    """A warehouse at 0030 holding merge requests reads each one's first commit right after the
    upgrade (the earliest authored time of its commits known), before any derive."""
    from alembic import command

    from analytics.first_commits import FIRST_COMMIT
    from tests.analytics_world import World, at

    with empty_engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0030")
    world = World(empty_engine)
    world.line("a", "b", "c", start=at(3))
    world.merge_request(1, ["b", "c"], created=at(6), merged=at(7))
    world.merge_request(2, ["a", "unknown"], created=at(6), merged=at(7))
    world.merge_request(3, ["unknown"], created=at(6), merged=at(7))
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        stored = dict(conn.execute(select(MergeRequest.iid, MergeRequest.first_commit_at)).all())
        defined = dict(conn.execute(select(MergeRequest.iid, FIRST_COMMIT)).all())
    assert stored == defined == {1: at(4), 2: at(3), 3: None}


def test_sync_state_round_trip(engine: Engine) -> None:
    with engine.begin() as conn:
        source_id = ensure_source(conn, "gitlab", "gitlab")
        assert get_state(conn, source_id, "commits", "42") is None
        save_state(
            conn,
            source_id,
            "commits",
            "42",
            cursor="2026-11-23T09:00:00Z",
            status="ok",
            started_at=T0,
            finished_at=T0 + timedelta(seconds=3),
            requests=4,
        )
        state = get_state(conn, source_id, "commits", "42")
    assert state is not None
    assert state.cursor == "2026-11-23T09:00:00Z"
    assert state.status == "ok"
    assert state.finished_at == T0 + timedelta(seconds=3)
    with engine.begin() as conn, pytest.raises(ValueError, match="no column"):
        save_state(conn, source_id, "commits", "42", curser="x")


def test_leases_split_partitions_between_workers(engine: Engine) -> None:
    with engine.begin() as conn:
        source_id = ensure_source(conn, "gitlab", "gitlab")
    lease = timedelta(minutes=5)
    with engine.begin() as conn:
        assert claim(conn, source_id, "commits", "1", "worker-a", lease, now=T0)
    with engine.begin() as conn:
        assert not claim(conn, source_id, "commits", "1", "worker-b", lease, now=T0)
        assert claim(conn, source_id, "commits", "1", "worker-a", lease, now=T0)  # renew
        # a crashed worker's lease expires and is taken over
        assert claim(conn, source_id, "commits", "1", "worker-b", lease, now=T0 + 2 * lease)
        release(conn, source_id, "commits", "1", "worker-b")
        assert claim(conn, source_id, "commits", "1", "worker-c", lease, now=T0 + 2 * lease)


def test_a_new_raw_environment_name_does_not_wait_for_foreign_key_checks(
    pg_schema_url: tuple[str, str],
) -> None:
    """A deployment upsert holds FOR KEY SHARE on its environment (the foreign-key check) until it
    commits; a worker adding a raw name to that environment must not wait for it (nor it for the
    worker: the two deadlocked when the raw name was added under FOR UPDATE)."""
    from tests.conftest import pg_engine
    from warehouse.dimensions import ensure_environment
    from warehouse.vocabulary import EnvironmentMapper

    engine = pg_engine(*pg_schema_url)
    upgrade(engine)
    path = ["test", "staging", "production"]
    mapper = EnvironmentMapper()
    with engine.begin() as conn:
        env_id = ensure_environment(conn, mapper.canonical("prod"), path, "prod")
        source = ensure_source(conn, "gitlab", "gitlab")
    holder = engine.connect()
    try:
        holder.begin()
        holder.execute(
            insert(Deployment).values(
                source_id=source, external_id="1", environment_id=env_id, status="success"
            )
        )  # the foreign-key check now holds FOR KEY SHARE on the environment row
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '2s'"))
            again = ensure_environment(conn, mapper.canonical("PRO"), path, "PRO")
        assert again == env_id
    finally:
        holder.rollback()
        holder.close()
    with engine.connect() as conn:
        names = conn.execute(select(Environment.raw_names).where(Environment.id == env_id))
        assert names.scalar_one() == ["PRO", "prod"]
    engine.dispose()


# --- timeouts (issue #22 item 5) --------------------------------------------------------------


def test_sqlite_waits_for_a_lock_no_longer_than_the_lock_timeout(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    engine = make_engine(f"sqlite:///{path}", lock_timeout_s=0.3)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table t (x integer)")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("begin immediate")  # the write lock
    try:
        with pytest.raises(OperationalError, match="database is locked"), engine.begin() as conn:
            conn.exec_driver_sql("insert into t values (1)")
    finally:
        holder.close()
        engine.dispose()


def test_postgres_gets_the_timeouts_besides_the_urls_options() -> None:
    require_postgres()
    url = normalise_url(postgres_url()).update_query_dict({"options": "-csearch_path=elsewhere"})
    engine = make_engine(url, statement_timeout_s=0.5, lock_timeout_s=2, connect_timeout_s=3)
    try:
        with engine.connect() as conn:
            shown = [
                conn.exec_driver_sql(f"show {n}").scalar() for n in ("search_path", "lock_timeout")
            ]
            assert shown == ["elsewhere", "2s"]
            with pytest.raises(OperationalError, match="statement timeout"):
                conn.exec_driver_sql("select pg_sleep(5)")
    finally:
        engine.dispose()
