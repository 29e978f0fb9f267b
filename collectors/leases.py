"""Partition leases: how several `cdmetrics sync` workers share one sync with no coordinator.

Every partition a collector syncs (a GitLab project, a Jenkins job, a registry repository, a
Kubernetes namespace, a git repository) is claimed through its `sync_state` row
(`warehouse.sync_state.claim`: `FOR UPDATE SKIP LOCKED` on PostgreSQL, plus an expiry) before it
is synced, and released after. A worker's leases are renewed by one thread while it lives, so a
killed worker's partitions are taken over once its leases run out.

A *round* is one worker's sync of one source: it began at the run's start. A partition whose last
finish is newer than that start, less `[sync] min_interval`, was synced in this round (by another
worker) and is skipped. A partition another live worker holds is put back and tried again when the
first pass is over, until it is finished or its lease expired; so a worker ends only when every
partition of its source is done, and the derive after it sees them all.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, update

from config.settings import LEASE
from warehouse.sync_state import STATE, claim, get_state, release, save_state

if TYPE_CHECKING:
    from collectors.sync import SyncRun

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_LEASE = LEASE


class Claim(Enum):
    """What trying to claim a partition gave."""

    TAKEN = "taken"  # ours until released
    DONE = "done"  # finished in this round already: skip it
    BUSY = "busy"  # another live worker holds it: try again later


def default_worker_id() -> str:
    """This process's worker name: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leases:
    """The leases one worker takes while syncing one source, and the thread renewing them."""

    def __init__(
        self,
        run: SyncRun,
        owner: str = "",
        lease: timedelta = DEFAULT_LEASE,
        min_interval: timedelta = timedelta(0),
    ) -> None:
        self.run = run
        self.owner = owner or default_worker_id()
        self.lease = lease
        self.round_start = run.started_at - min_interval
        self.skipped = 0  # partitions another worker synced in this round
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction under the run's write lock (SQLite's one writer)."""
        lock = self.run.write_lock
        if lock:
            lock.acquire()
        try:
            with self.run.engine.begin() as conn:
                yield conn
        finally:
            if lock:
                lock.release()

    def try_claim(self, stream: str, partition: str) -> Claim:
        """Claim a partition unless another live worker holds it or it was synced this round."""
        source = self.run.source_id
        with self._transaction() as conn:
            if not claim(conn, source, stream, partition, self.owner, self.lease):
                return Claim.BUSY
            state = get_state(conn, source, stream, partition)
            if state and state.finished_at and state.finished_at > self.round_start:
                release(conn, source, stream, partition, self.owner)
                return Claim.DONE
        self._start_renewing()
        return Claim.TAKEN

    def finish(self, stream: str, partition: str, mark: bool) -> None:
        """Release a partition; with `mark`, record it finished (a lease row of its own)."""
        with self._transaction() as conn:
            if mark:
                now = datetime.now(UTC)
                fields = {"status": "ok", "started_at": self.run.started_at, "finished_at": now}
                save_state(conn, self.run.source_id, stream, partition, **fields)
            release(conn, self.run.source_id, stream, partition, self.owner)

    @contextmanager
    def leased(self, stream: str, partition: str, mark: bool = False) -> Iterator[Claim]:
        """Hold a partition's lease around a block; yields the claim (sync only when TAKEN).

        `mark`: the row is the partition's own lease row (e.g. a GitLab project's, whose streams
        have rows of their own), recorded finished when the block ends without an exception;
        otherwise the block's `save_cursor` or `fail` records the finish on the same row.
        """
        taken = self.try_claim(stream, partition)
        if taken is not Claim.TAKEN:
            yield taken
            return
        ok = False
        try:
            yield taken
            ok = True
        finally:
            self.finish(stream, partition, mark and ok)

    def fan_out(
        self,
        items: Iterable[T],
        partition: Callable[[T], tuple[str, str]],
        work: Callable[[T], Any],
        parallelism: int,
        done: Callable[[T], None] | None = None,
        mark: bool = False,
    ) -> None:
        """Run `work` on every item whose partition ((stream, partition) of its lease row) this
        worker claims, `parallelism` at a time; items another worker holds are tried again after
        each pass until finished or taken over. `done` is called for every item settled (synced
        or skipped); `mark` as in `leased`. Exceptions of `work` propagate."""
        pending = list(items)
        while pending:
            busy: list[T] = []
            with ThreadPoolExecutor(max_workers=parallelism) as pool:
                futures = {
                    pool.submit(self._attempt, partition(item), work, item, mark): item
                    for item in pending
                }
                for future in as_completed(futures):
                    item = futures[future]
                    if future.result() is Claim.BUSY:
                        busy.append(item)
                    elif done:
                        done(item)
            if busy:
                log.info("%s: %d partition(s) held by other workers; waiting", self.name, len(busy))
                time.sleep(self.poll_seconds())
            pending = busy

    @property
    def name(self) -> str:
        """The source's name (for log lines)."""
        return self.run.summary.name

    def _attempt(
        self, key: tuple[str, str], work: Callable[[T], Any], item: T, mark: bool
    ) -> Claim:
        with self.leased(*key, mark=mark) as taken:
            if taken is Claim.TAKEN:
                work(item)
            elif taken is Claim.DONE:
                with self._lock:
                    self.skipped += 1
        return taken

    def poll_seconds(self) -> float:
        """How long to wait before trying partitions other workers hold again."""
        return max(0.2, min(5.0, self.lease.total_seconds() / 10))

    # -- renewal ---------------------------------------------------------------------------

    def _start_renewing(self) -> None:
        with self._lock:
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name=f"lease-renewer-{self.owner}", daemon=True
                )
                self._renewer.start()

    def _renew_loop(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception as exc:  # a missed renewal is retried; the lease lasts 3 intervals
                log.warning("%s: cannot renew leases: %s", self.name, exc)

    def renew(self) -> int:
        """Extend every lease this worker holds on this source; returns how many."""
        with self._transaction() as conn:
            result = conn.execute(
                update(STATE)
                .where(STATE.c.source_id == self.run.source_id, STATE.c.lease_owner == self.owner)
                .values(lease_expires_at=datetime.now(UTC) + self.lease)
            )
        return int(result.rowcount or 0)

    def close(self) -> None:
        """Stop renewing (the leases themselves were released partition by partition)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
