"""Run the collectors of every configured source (or those named), with progress bars on a terminal."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, select

from collectors.frame import Collector, SyncOptions
from collectors.git import GitCollector
from collectors.gitlab import GitLabCollector
from collectors.jenkins import JenkinsCollector
from collectors.jira import JiraCollector
from collectors.kubernetes import KubernetesCollector
from collectors.pagerduty import PagerDutyCollector
from collectors.registry import RegistryCollector
from collectors.sonarqube import SonarQubeCollector
from collectors.svn import SvnCollector
from collectors.sync import SourceSummary
from collectors.zentao import ZentaoCollector
from config.settings import Settings
from warehouse.locks import DERIVE_LOCK, try_advisory_lock
from warehouse.raw import prune_raw
from warehouse.schema import Source
from warehouse.sync_state import derived_after_last_finish, mark_derived

log = logging.getLogger(__name__)
# every pull collector by its `[[sources.<kind>]]` table, in the order they run: each finds what an
# earlier one registered (Jenkins' builds GitLab's repos and Subversion's `r<n>` commits; Kubernetes
# after the sources that name services; registries after them, label trust compares with the
# services' repositories; SonarQube and the trackers last: their analyses and mappings name the
# repositories and services the code sources registered)
KINDS: dict[str, type[Collector[Any]]] = {
    "gitlab": GitLabCollector,
    "svn": SvnCollector,
    "jenkins": JenkinsCollector,
    "git": GitCollector,
    "kubernetes": KubernetesCollector,
    "registry": RegistryCollector,
    "sonarqube": SonarQubeCollector,
    "jira": JiraCollector,
    "zentao": ZentaoCollector,
    "pagerduty": PagerDutyCollector,
}


def run_sync(
    settings: Settings,
    engine: Engine,
    names: Sequence[str] | None = None,
    *,
    full: bool = False,
    console: Console | None = None,
) -> list[SourceSummary]:
    """Sync every configured source (or those named), one summary each, kind by kind in the
    order of `KINDS`; then apply `[warehouse] raw_retention_days` to the raw payloads."""
    wanted = set(names or [])
    console = console or Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=False,
    )
    options = SyncOptions(settings, engine, progress=progress, full=full)
    summaries = []
    with progress:
        for kind, collector in KINDS.items():
            for source in getattr(settings.sources, kind):
                if not wanted or source.name in wanted:
                    summaries.append(collector(source, options).sync())
    keep_days = settings.warehouse.raw_retention_days
    if keep_days is not None:
        pruned = prune_raw(engine, keep_days)
        log.info("raw payloads: dropped %d bodies older than %d days", pruned, keep_days)
    return summaries


def derive_once(
    engine: Engine,
    names: Sequence[str],
    derive: Callable[[], dict[str, object]],
    full: bool = False,
) -> dict[str, object]:
    """Run `derive` once per sync round of the named sources: only the worker holding the derive
    lock (a PostgreSQL advisory lock; a file lock next to an SQLite file) derives, and only when
    a partition finished since the last derive (`full`: always). Returns derive's summary, or
    `{"skipped": reason}`."""
    with try_advisory_lock(engine, DERIVE_LOCK) as mine:
        if not mine:
            return _skipped("another worker is deriving now")
        with engine.connect() as conn:
            ids = list(conn.execute(select(Source.id).where(Source.name.in_(names))).scalars())
            if not full and derived_after_last_finish(conn, ids):
                return _skipped("another worker derived after every partition of this round")
        started = datetime.now(UTC)
        result = derive()
        with engine.begin() as conn:
            mark_derived(conn, ids, started, datetime.now(UTC))
        return result


def _skipped(reason: str) -> dict[str, object]:
    log.warning("derive skipped: %s", reason)
    return {"skipped": reason}
