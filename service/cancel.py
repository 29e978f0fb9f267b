"""Long reads stop when their client goes away.

`until_disconnect` runs a function of a warehouse connection in a worker thread and, while it
runs, asks every `POLL_S` seconds whether the client is still there. When it has gone, the
running statement is interrupted (SQLite `interrupt()`, PostgreSQL's cancel request), every later
statement on that connection is refused, and `ClientGone` is raised: the answer, which nobody
would read, is never computed to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy import Connection, Engine, event
from starlette.concurrency import run_in_threadpool

T = TypeVar("T")
POLL_S = 0.25


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


class _Running:
    """The DB-API connection a worker uses, interruptible from another thread while in use."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._dbapi: Any = None

    def run(self, engine: Engine, work: Callable[[Connection], T]) -> T:
        """`work(conn)` on a new connection whose statements fail once cancelled."""
        with engine.connect() as conn:
            event.listen(conn, "before_cursor_execute", self._guard)
            with self._lock:
                self._dbapi = conn.connection.dbapi_connection
            try:
                return work(conn)
            finally:
                with self._lock:  # back to the pool: never interrupt its next user
                    self._dbapi = None

    def _guard(self, *_args: Any) -> None:
        if self.cancelled.is_set():
            raise ClientGone

    def cancel(self) -> None:
        """Refuse further statements and interrupt the running one, if any."""
        self.cancelled.set()
        with self._lock:
            if isinstance(self._dbapi, sqlite3.Connection):
                self._dbapi.interrupt()
            elif self._dbapi is not None:
                self._dbapi.cancel_safe(timeout=5)


async def until_disconnect(request: Request, engine: Engine, work: Callable[[Connection], T]) -> T:
    """The result of `work(conn)`, run in a worker thread; raises ClientGone (after stopping the
    work) when the client disconnects first."""
    running = _Running()
    task = asyncio.ensure_future(run_in_threadpool(running.run, engine, work))
    while True:
        done, _ = await asyncio.wait({task}, timeout=POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            await run_in_threadpool(running.cancel)
            with contextlib.suppress(Exception):
                await task  # the interrupted statement's error: nobody is left to tell
            raise ClientGone


__all__ = ["ClientGone", "until_disconnect"]
