"""Keeping the derived tables fresh while events stream in, without deriving per event.

Ingest marks the warehouse *dirty* when deployments, incidents or images changed. A background
loop derives at most once per `interval` seconds while dirty, and every read of metrics first
derives when dirty, so an answer never lags the events already acknowledged. Derives are
serialised, and on SQLite hold the single-writer lock the ingest takes too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from analytics.derive import derive
from analytics.rules import FailureRules
from warehouse.image_repositories import Configured

log = logging.getLogger(__name__)


class Freshness:
    """Debounced `analytics.derive.derive` for one warehouse."""

    def __init__(
        self,
        engine: Engine,
        rules: FailureRules,
        *,
        tag_revision_pattern: str,
        image_repositories: Configured | None = None,
        timezone: str = "UTC",
        writer_lock: Callable[[], AbstractContextManager[Any]],
        interval: float = 5.0,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.tag_revision_pattern = tag_revision_pattern
        self.image_repositories = image_repositories
        self.timezone = timezone  # of the rollups' days ([sync] timezone)
        self.writer_lock = writer_lock
        self.interval = interval
        self.generation = 0  # bumped by every derive: caches of derived figures key on it
        self.runs = 0
        self.failures = 0
        self.seconds = 0.0
        self.last_run: datetime | None = None
        self._dirty = False
        self._lock = threading.Lock()

    @property
    def dirty(self) -> bool:
        return self._dirty

    @property
    def pending(self) -> bool:
        """Whether events are waiting for a derive (or one is running for them)."""
        return self._dirty or self._lock.locked()

    def mark_dirty(self) -> None:
        """Events changed what derive reads."""
        self._dirty = True

    def ensure_fresh(self) -> bool:
        """Derive now if dirty; returns whether it derived. A failed derive is logged, counted
        and retried by the next call; readers then see the previous derivation."""
        with self._lock:
            if not self._dirty:
                return False
            self._dirty = False  # events arriving during the derive mark it dirty again
            start = time.perf_counter()
            try:
                with self.writer_lock():
                    summary = derive(
                        self.engine,
                        self.rules,
                        tag_revision_pattern=self.tag_revision_pattern,
                        image_repositories=self.image_repositories,
                        timezone=self.timezone,
                    )
            except Exception:
                self._dirty = True
                self.failures += 1
                log.exception("derive failed; retrying on the next read or tick")
                return False
            self.seconds += time.perf_counter() - start
            self.runs += 1
            self.generation += 1
            self.last_run = datetime.now(UTC)
            log.info("derived: %s", summary.as_json())
            return True

    async def run(self) -> None:
        """The background loop (cancel it to stop): derive while dirty, at most every interval."""
        while True:
            await asyncio.sleep(self.interval)
            if self._dirty:
                await run_in_threadpool(self.ensure_fresh)


__all__ = ["Freshness"]
