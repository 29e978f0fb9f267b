"""The state of one source's sync (`SyncRun`), which the collector frame (`collectors.frame`)
gives every partition: writes serialised where the warehouse has one writer, cursors, failures,
and a summary of rows, requests, rejected payloads and time per source and stream.

A collector yields *batches*: raw payloads plus the rows normalised from them; the runner writes
each batch in one transaction, and a stream's cursor in the same transaction as its last batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from collectors.http import MalformedBody
from collectors.leases import Leases
from warehouse.raw import Raw, store_raw
from warehouse.schema import Base
from warehouse.sync_state import save_state
from warehouse.upsert import upsert

log = logging.getLogger(__name__)

# the order tables are written in within a batch (dimensions before facts)
Rows = dict[type[Base], list[dict[str, Any]]]
RESUMES = "the next sync resumes from the last saved cursor"


@dataclass
class Batch:
    """Raw payloads and the rows normalised from them, written in one transaction."""

    raws: list[Raw] = field(default_factory=list)
    rows: Rows = field(default_factory=dict)
    rejected: int = 0

    def add(self, table: type[Base], rows: Iterable[dict[str, Any]]) -> None:
        self.rows.setdefault(table, []).extend(rows)

    def __len__(self) -> int:
        return len(self.raws) + sum(len(r) for r in self.rows.values())


@dataclass
class StreamStats:
    rows: int = 0
    rejected: int = 0
    requests: int = 0
    partitions: int = 0
    errors: int = 0


@dataclass
class SourceSummary:
    """What one source's sync did; `as_json` is the shape of the CLI's summary line."""

    name: str
    kind: str
    streams: dict[str, StreamStats] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    skipped: int = 0  # partitions another worker synced in this round

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.streams.values())

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.streams.values())

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows": self.rows,
            "requests": self.requests,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            "errors": self.errors,
            "skipped_partitions": self.skipped,
            "streams": {name: vars(s) for name, s in sorted(self.streams.items())},
        }


class SyncRun:
    """Shared state of one source's sync: the engine, the write lock, counters and start time."""

    def __init__(
        self, engine: Engine, source_id: int, summary: SourceSummary, sync_settings: Any = None
    ) -> None:
        self.engine = engine
        self.source_id = source_id
        self.summary = summary
        self.started_at = datetime.now(UTC)
        # SQLite has one writer: serialise our own writes instead of waiting on its lock
        self.write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._stats_lock = threading.Lock()
        self.requests_by_stream: Counter[str] = Counter()
        self.leases = leases_for(self, sync_settings)
        # rows and rejected payloads of the partition each thread is syncing, per stream, until
        # `save_cursor` records them on the partition's sync_state row (or `fail` drops them)
        self._tally = threading.local()

    def _partition_tally(self, stream: str) -> StreamStats:
        """This thread's running count of the current partition's rows of `stream`."""
        tallies: dict[str, StreamStats] = self._tally.__dict__.setdefault("streams", {})
        return tallies.setdefault(stream, StreamStats())

    def _take_tally(self, stream: str) -> StreamStats:
        """This thread's count for `stream`, reset for its next partition."""
        tallies: dict[str, StreamStats] = self._tally.__dict__.setdefault("streams", {})
        return tallies.pop(stream, StreamStats())

    def stats(self, stream: str) -> StreamStats:
        with self._stats_lock:
            return self.summary.streams.setdefault(stream, StreamStats())

    def count(self, stream: str, requests: int = 0, partitions: int = 0) -> None:
        """Add to a stream's request and partition counters (safe from worker threads)."""
        stats = self.stats(stream)
        with self._stats_lock:
            stats.requests += requests
            stats.partitions += partitions

    def write(
        self, stream: str, batch: Batch, after: Callable[[Connection], None] | None = None
    ) -> int:
        """Write a batch (and run `after`, e.g. save a cursor) in one transaction; returns rows written."""
        if not batch.raws and not batch.rows and after is None:
            return 0
        lock = self.write_lock
        if lock:
            lock.acquire()
        try:
            with self.engine.begin() as conn:
                if batch.raws:
                    store_raw(conn, self.source_id, batch.raws)
                written = sum(
                    upsert(conn, table, rows) for table, rows in batch.rows.items() if rows
                )
                tally = self._partition_tally(stream)
                tally.rows += written
                tally.rejected += batch.rejected
                if after is not None:
                    after(conn)
        finally:
            if lock:
                lock.release()
        stats = self.stats(stream)
        with self._stats_lock:
            stats.rows += written
            stats.rejected += batch.rejected
        return written

    def save_cursor(
        self, stream: str, partition: str, cursor: str | None, requests: int
    ) -> Callable[[Connection], None]:
        """A callback recording a finished partition of a stream (for `write(..., after=...)`)."""

        def save(conn: Connection) -> None:
            tally = self._take_tally(stream)
            fields: dict[str, Any] = {
                "status": "ok",
                "started_at": self.started_at,
                "finished_at": datetime.now(UTC),
                "error": None,
                "requests": requests,
                "rows": tally.rows,
                "rejected": tally.rejected,
            }
            if cursor is not None:
                fields["cursor"] = cursor
            save_state(conn, self.source_id, stream, partition, **fields)

        return save

    def fail(
        self, stream: str, partition: str, error: str, exc: BaseException | None = None
    ) -> None:
        """Record a failed partition: logged, counted, kept in sync_state (when the warehouse
        takes the write) with the rows and rejected payloads it stored before it failed; the sync
        goes on. A malformed body that caused it (`exc`) is kept as a rejected raw payload, named
        by its URL, and counted as rejected."""
        log.error("%s: %s", self.summary.name, error)
        tally = self._take_tally(stream)  # the failed partition's rows, not the next one's
        kept = [
            Raw(stream, f"malformed {bad.url}"[:255], {"url": bad.url, "body": bad.body}, error)
            for bad in [malformed_cause(exc)]
            if bad is not None
        ]
        with self._stats_lock:
            self.summary.errors.append(error)
            stats = self.summary.streams.setdefault(stream, StreamStats())
            stats.errors += 1
            stats.rejected += len(kept)
        lock = self.write_lock
        if lock:
            lock.acquire()
        try:
            with self.engine.begin() as conn:
                if kept:
                    store_raw(conn, self.source_id, kept)
                save_state(
                    conn,
                    self.source_id,
                    stream,
                    partition,
                    status="failed",
                    error=error,
                    started_at=self.started_at,
                    finished_at=datetime.now(UTC),
                    rows=tally.rows,
                    rejected=tally.rejected + len(kept),
                )
        except SQLAlchemyError as exc:  # the summary has the error; sync_state cannot have it
            log.warning("%s: cannot record the failure in sync_state: %s", self.summary.name, exc)
        finally:
            if lock:
                lock.release()

    def attempt(
        self,
        stream: str,
        partition: str,
        where: str,
        work: Callable[[], None],
        known: tuple[type[Exception], ...] = (),
        describe: Callable[[Exception], str] | None = None,
    ) -> bool:
        """Run `work`, one stream of one partition; returns True when it completed. An exception
        of `known` (the source's HTTP errors) fails the partition with `describe(exc)`; a database
        error or any other exception fails it with `unexpected`'s message. Either way the other
        streams and partitions go on, and the run's summary lists the failure."""
        try:
            work()
        except known as exc:
            error = describe(exc) if describe else self.unexpected(stream, where, exc)
            self.fail(stream, partition, error, exc)
        except Exception as exc:  # anything else: the partition fails, not the run
            self.fail(stream, partition, self.unexpected(stream, where, exc), exc)
        else:
            return True
        return False

    def unexpected(self, stream: str, where: str, exc: Exception) -> str:
        """The failure message for a database error or an exception the collector did not expect,
        naming the source, `where` (the partition: "project a/b", "job x") and the stream; the
        traceback goes to the debug log."""
        log.debug("%s: %s: %s failed", self.summary.name, where, stream, exc_info=exc)
        head = f"{self.summary.name}: {where}: {stream}"
        if isinstance(exc, SQLAlchemyError):
            return (
                f"{head}: database error: {describe_database_error(exc)}; check the warehouse "
                f"(reachable, writable, migrated: cdmetrics db upgrade); {RESUMES}"
            )
        return (
            f"{head}: unexpected {type(exc).__name__}: {str(exc)[:300]}; {RESUMES}; run with -vv "
            "for the traceback and report it"
        )

    def contain(self, work: Callable[[], None]) -> None:
        """Run a whole source's `work`; an exception escaping it (a partition's errors are caught
        by `attempt`, so: discovery's database writes, a bug) ends this source's run as an error
        in its summary instead of ending the whole `cdmetrics sync`."""
        try:
            work()
        except Exception as exc:  # the source fails, not the run
            error = self.unexpected("sync", "the source", exc)
            log.error("%s", error)
            self.summary.errors.append(error)


def malformed_cause(exc: BaseException | None) -> MalformedBody | None:
    """The malformed body behind `exc` (itself, or what it was raised from or during: a client
    library may wrap it)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MalformedBody):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def describe_database_error(exc: SQLAlchemyError) -> str:
    """A one-line description of a database error: the driver's message (first line) for a
    DBAPI error, without the statement and its parameters."""
    inner: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    lines = str(inner).strip().splitlines()
    return f"{type(exc).__name__}: {(lines[0] if lines else '')[:300]}"


def leases_for(run: SyncRun, sync_settings: Any) -> Leases:
    """The run's partition leases, configured from `[sync]` (`lease`, `min_interval`,
    `worker_id`) when given, else with the defaults."""
    if sync_settings is None:
        return Leases(run)
    return Leases(run, sync_settings.worker_id, sync_settings.lease, sync_settings.min_interval)


def timed(summary: SourceSummary, work: Callable[[], object]) -> SourceSummary:
    """Run `work`, recording its wall time in the summary."""
    start = time.perf_counter()
    try:
        work()
    finally:
        summary.seconds = time.perf_counter() - start
    return summary
