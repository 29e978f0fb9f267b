"""Locks that let several cdmetrics processes share one warehouse: one migrates, one derives.

On PostgreSQL these are advisory locks (database-wide, released when the session or transaction
ends, so a killed worker never leaves one behind); on SQLite, file locks next to the database
file (`<db>.migrate.lock`, `<db>.derive.lock`, released by the operating system when the process
dies). An in-memory SQLite database belongs to one process and needs none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

# advisory lock keys (any 64-bit numbers; these spell "cdm" and what they guard)
MIGRATE_LOCK = 0x63646D_0001
DERIVE_LOCK = 0x63646D_0002


def lock_file(engine: Engine, purpose: str = "migrate") -> Path | None:
    """The file an SQLite warehouse's processes lock for `purpose` (`<db>.<purpose>.lock`), or
    None (PostgreSQL, in-memory SQLite)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return path.with_name(f"{path.name}.{purpose}.lock")


@contextmanager
def _file_lock(path: Path, wait: bool) -> Iterator[bool]:
    """flock a file (exclusive); yields whether it was taken (always, when `wait`)."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no cross-process lock, SQLite's own lock remains
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = path.open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def lock_migrations(conn: Connection) -> None:
    """Inside a migration's transaction on PostgreSQL: wait for any other process migrating the
    same database (`pg_advisory_xact_lock`, released at commit or rollback)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK})


@contextmanager
def migration_file_lock(engine: Engine) -> Iterator[None]:
    """On an SQLite file: hold `<db>.migrate.lock` (waiting for another process migrating); else nothing."""
    path = lock_file(engine)
    if path is None:
        yield
        return
    with _file_lock(path, wait=True):
        yield


@contextmanager
def try_advisory_lock(engine: Engine, key: int = DERIVE_LOCK) -> Iterator[bool]:
    """Try to take a session-level lock without waiting; yields whether this process holds it.

    PostgreSQL: `pg_try_advisory_lock` on a connection kept for the block; SQLite: a non-blocking
    file lock on `<db>.derive.lock` (or always True in memory)."""
    if engine.dialect.name != "postgresql":
        path = lock_file(engine, "derive")
        if path is None:
            yield True
            return
        with _file_lock(path, wait=False) as taken:
            yield taken
        return
    with engine.connect() as conn:
        taken = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
        conn.commit()
        try:
            yield taken
        finally:
            if taken:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
