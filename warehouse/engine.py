"""Engine factory and `open_warehouse`: every command that opens the warehouse brings it to head."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from config.settings import CONNECT_TIMEOUT_S, LOCK_TIMEOUT_S, STATEMENT_TIMEOUT_S

log = logging.getLogger(__name__)

SQLITE_LONGEST_BUSY_MS = 2**31 - 1  # "no limit" for SQLite's busy timeout (24 days)


class WarehouseURLError(ValueError):
    """The warehouse URL is not one cdmetrics can use."""


def normalise_url(url: str | URL) -> URL:
    """Parse a warehouse URL; plain `postgresql://` means the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise WarehouseURLError(
            f"warehouse url {url!s} is not a database URL; use sqlite:///path.db or "
            "postgresql+psycopg://user@host:5432/dbname"
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise WarehouseURLError(
            f"warehouse backend {parsed.get_backend_name()!r} is not supported; use SQLite or PostgreSQL"
        )
    return parsed


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return pragmas


def _postgres_connect_args(
    parsed: URL, connect_args: dict[str, Any], connect_s: float, statement_s: float, lock_s: float
) -> tuple[URL, dict[str, Any]]:
    """(url, connect_args) with libpq's connect_timeout and the server's statement_timeout and
    lock_timeout added to any `options` the URL or the caller already give (a search_path, ...)."""
    options = [str(o) for o in (parsed.query.get("options"), connect_args.get("options")) if o]
    for name, seconds in (("statement_timeout", statement_s), ("lock_timeout", lock_s)):
        options.append(f"-c {name}={round(seconds * 1000)}")
    args = {**connect_args, "options": " ".join(options)}
    if connect_s:  # libpq counts whole seconds, at least 2
        args.setdefault("connect_timeout", max(2, round(connect_s)))
    return parsed.difference_update_query(["options"]), args


def make_engine(
    url: str | URL,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    **kwargs: Any,
) -> Engine:
    """An engine: SQLite with WAL, foreign keys and `lock_timeout_s` as its busy timeout (it has
    no connect or statement timeout); PostgreSQL with pre-ping and the three timeouts (0: none)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # SQLite's busy timeout 0 means "never wait", ours "no limit"
        busy_ms = round(lock_timeout_s * 1000) or SQLITE_LONGEST_BUSY_MS
        args = {"timeout": busy_ms / 1000, **kwargs.pop("connect_args", {})}
        engine = create_engine(parsed, connect_args=args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas(busy_ms))
        return engine
    parsed, args = _postgres_connect_args(
        parsed,
        kwargs.pop("connect_args", {}),
        connect_timeout_s,
        statement_timeout_s,
        lock_timeout_s,
    )
    return create_engine(parsed, pool_pre_ping=True, connect_args=args, **kwargs)


def open_warehouse(url: str | URL, **kwargs: Any) -> Engine:
    """An engine on the warehouse at `url`, upgraded to the head migration."""
    from warehouse.migrate import upgrade

    engine = make_engine(url, **kwargs)
    upgrade(engine)
    return engine
