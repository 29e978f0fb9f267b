"""The collector frame: what every pull collector does around its own reads.

A collector names its partitions (GitLab projects, Jenkins jobs, registry repositories, Kubernetes
namespaces, a git repository) and syncs one at a time; the frame registers the source, builds one
client per worker thread (`make_client`) and counts its requests, lists the partitions (a listing
that fails is the source's "cannot list" error), fans them out over a thread pool under the
partition leases, shows a progress task, then calls `finish` and `close`:

    run.py KINDS -> Collector.sync -> partitions -> fan_out (leases, pool) -> sync_partition

`SyncOptions` is what every collector is built with besides its source: the settings, the
warehouse, and the run's choices (progress, `--full`, retries), built once per `cdmetrics sync`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import httpx
from rich.progress import Progress
from sqlalchemy import Engine

from collectors.http import MAX_RETRIES, PolicyTransport, RateLimiter, RequestCounter, RetryPolicy
from collectors.sync import SourceSummary, SyncRun, timed
from config.redaction import redact_url
from config.settings import Settings

P = TypeVar("P")


@dataclass(frozen=True)
class SyncOptions:
    """How one `cdmetrics sync` runs its collectors: built once from the settings."""

    settings: Settings
    engine: Engine
    progress: Progress | None = None
    full: bool = False  # ignore cursors and stored versions: re-read everything
    max_retries: int = MAX_RETRIES  # retries of a failed request (429, 5xx, dropped connection)

    @property
    def workers(self) -> int:
        """Partitions synced at once per source (`[sync] parallelism`)."""
        return self.settings.sync.parallelism

    def since(self, started_at: datetime) -> datetime:
        """How far back a first (or `--full`) sync reaches: `[sync] history_days` before its start."""
        return started_at - timedelta(days=self.settings.sync.history_days)


class Collector(Generic[P]):
    """The base of every pull collector, over partitions of type `P`. Subclasses set `kind`
    (and `unit`, the progress task's word for a partition, and `listing_errors`, the exceptions
    of a failed listing), and implement `partitions`, `lease_of`, `sync_partition` and, when they
    send requests, `make_client` and `cannot_list`; `finish` and `close` are optional."""

    kind: str
    unit: str | None = None  # "projects", "jobs", ...: the progress task; None: no task
    listing_errors: tuple[type[Exception], ...] = ()
    mark_leases = False  # see `Leases.leased`

    def __init__(self, source: Any, options: SyncOptions) -> None:
        self.source, self.options = source, options
        self.settings, self.engine = options.settings, options.engine
        self.progress, self.full = options.progress, options.full
        self.max_retries = options.max_retries
        self.retry = RetryPolicy(self.max_retries, self.settings.sync.max_retry_after_s)
        self.limiter = RateLimiter(self.settings.sync.requests_per_second)
        self._local = threading.local()
        self._counters: list[RequestCounter] = []
        self._counters_lock = threading.Lock()

    # -- clients and requests ----------------------------------------------------------------

    def make_client(self, counter: RequestCounter) -> Any:
        """A new client for the calling thread, counting its requests in `counter`."""
        raise NotImplementedError

    def client(self) -> Any:
        """This thread's client (sessions and connection pools are not shared between threads)."""
        client = getattr(self._local, "client", None)
        if client is None:
            counter = self.new_counter()
            self._local.counter = counter
            client = self._local.client = self.make_client(counter)
        return client

    def new_counter(self) -> RequestCounter:
        """A request counter that `requests_made` totals."""
        counter = RequestCounter()
        with self._counters_lock:
            self._counters.append(counter)
        return counter

    def thread_requests(self) -> int:
        """Requests this thread's client has made so far."""
        self.client()
        return int(self._local.counter.value)

    def requests_made(self) -> int:
        """Requests made by every thread of this collector."""
        with self._counters_lock:
            return sum(c.value for c in self._counters)

    # -- the sync ----------------------------------------------------------------------------

    def base_url(self) -> str | None:
        """The source's URL as the warehouse keeps it (secrets masked)."""
        return redact_url(self.source.url or "") or None

    def sync(self) -> SourceSummary:
        """Sync the whole source; returns the summary (errors are in it, not raised)."""
        from warehouse.dimensions import ensure_source

        summary = SourceSummary(self.source.name, self.kind)
        with self.engine.begin() as conn:
            source_id = ensure_source(conn, self.source.name, self.kind, self.base_url())
        run = SyncRun(self.engine, source_id, summary, self.settings.sync)
        try:
            timed(summary, lambda: run.contain(lambda: self._sync(run)))
        finally:
            run.leases.close()
        summary.skipped = run.leases.skipped
        summary.requests = self.requests_made()
        return summary

    def _sync(self, run: SyncRun) -> None:
        try:
            try:
                partitions = self.partitions(run)
            except self.listing_errors as exc:
                run.summary.errors.append(self.cannot_list(exc))
                return
            task = (
                self.progress.add_task(f"{self.source.name}: {self.unit}", total=len(partitions))
                if self.progress and self.unit
                else None
            )

            def advance(_: P) -> None:
                if self.progress and task is not None:
                    self.progress.advance(task)

            run.leases.fan_out(
                partitions,
                partition=self.lease_of,
                work=lambda p: self.sync_partition(run, p),
                parallelism=self.options.workers,
                done=advance,
                mark=self.mark_leases,
            )
            self.finish(run)
        finally:
            self.close()

    def partitions(self, run: SyncRun) -> Sequence[P]:
        """The partitions to sync (registering what they need in the warehouse); raises one of
        `listing_errors` when the source cannot be listed."""
        raise NotImplementedError

    def lease_of(self, partition: P) -> tuple[str, str]:
        """The (stream, partition) of the sync_state row a worker claims for `partition`."""
        raise NotImplementedError

    def sync_partition(self, run: SyncRun, partition: P) -> None:
        """Sync one partition; its failures are recorded (`run.attempt`, `run.fail`), not raised."""
        raise NotImplementedError

    def cannot_list(self, exc: Exception) -> str:
        """The source's error when listing its partitions failed with `exc`."""
        return f"{self.source.name}: cannot list the {self.unit}: {exc}"

    def finish(self, run: SyncRun) -> None:
        """After every partition: what spans them (adopting orphans, pruning)."""

    def close(self) -> None:
        """Release the clients (connection pools); called however the sync ended."""


class HttpCollector(Collector[P]):
    """A collector over httpx (registries, SonarQube, the trackers): one client per thread on
    `base()` with `auth()` and `headers()`, under the shared policy (`collectors.http.
    PolicyTransport`: rate limiter, retries honouring Retry-After, timeouts, counting)."""

    follow_redirects = False

    def __init__(self, source: Any, options: SyncOptions) -> None:
        super().__init__(source, options)
        self._clients: list[httpx.Client] = []

    def base(self) -> str:
        """The URL requests are relative to."""
        return str(self.source.url).rstrip("/")

    def auth(self) -> httpx.Auth | None:
        """The clients' auth flow, shared by the threads."""
        return None

    def headers(self) -> dict[str, str]:
        """Headers of every request (credentials included)."""
        return {}

    def make_client(self, counter: RequestCounter) -> httpx.Client:
        transport = PolicyTransport(self.limiter, counter, self.retry)
        client = httpx.Client(
            base_url=self.base(),
            transport=transport,
            auth=self.auth(),
            timeout=self.settings.sync.timeout_s,
            follow_redirects=self.follow_redirects,
            headers={"User-Agent": "cdmetrics", **self.headers()},
        )
        self._local.transport = transport
        with self._counters_lock:
            self._clients.append(client)
        return client

    def client(self) -> httpx.Client:
        """This thread's client."""
        client: httpx.Client = super().client()
        return client

    def last_url(self, fallback: str) -> str:
        """This thread's last requested URL (else `fallback`), secrets masked, without its query:
        where a request that failed before an answer was going."""
        return redact_url(str(self._local.transport.last_url or fallback).split("?")[0])

    def close(self) -> None:
        """Close every thread's client (their connection pools)."""
        with self._counters_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._local = threading.local()


__all__ = ["Collector", "HttpCollector", "SyncOptions"]
