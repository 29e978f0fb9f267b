"""Requests per source and stream of the trackers' syncs (Jira Cloud, Zentao, PagerDuty) on the
small organisation: a first sync, then a second one with no change (issue 18's closing figures).
Prints them; asserts only that the second sync writes nothing and costs less than the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collectors.frame import SyncOptions
from collectors.jira import JiraCollector
from collectors.pagerduty import PagerDutyCollector
from collectors.sync import SourceSummary
from collectors.zentao import ZentaoCollector
from config.settings import Settings
from sandbox.generate import generate
from sandbox.serve import Sandbox
from tests.sandbox_helpers import HISTORY_END
from warehouse.engine import open_warehouse

pytestmark = pytest.mark.bench
COLLECTORS: dict[str, Any] = {
    "jira": JiraCollector,
    "zentao": ZentaoCollector,
    "pagerduty": PagerDutyCollector,
}


def per_stream(summary: SourceSummary) -> str:
    streams = {name: s.requests for name, s in summary.streams.items()}
    listing = summary.requests - sum(streams.values())  # login, statuses, products, services
    parts = [f"{name} {n}" for name, n in sorted(streams.items())]
    return f"{summary.requests} ({', '.join([f'listing {listing}', *parts])})"


def test_tracker_requests_first_and_no_change_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = generate(1, "small", HISTORY_END)
    engine = open_warehouse(f"sqlite:///{tmp_path / 'bench.db'}")
    with Sandbox.start(org=org, jenkins=False, registry=False, trackers=True) as sb:
        sources, environ = sb.tracker_sources()
        for name, value in (
            environ | {"BENCH_JIRA_USER": sb.jira_user, "BENCH_JIRA_TOKEN": sb.token}
        ).items():
            monkeypatch.setenv(name, value)
        sources["jira"] = [sb.jira_source("BENCH_JIRA_TOKEN", "BENCH_JIRA_USER")]
        settings = Settings(
            sources=sources, sync={"requests_per_second": 0, "history_days": sb.history_days()}
        )
        print()
        for kind, cls in COLLECTORS.items():
            source = getattr(settings.sources, kind)[0]
            first = cls(source, SyncOptions(settings, engine)).sync()
            again = cls(source, SyncOptions(settings, engine)).sync()
            assert first.ok and again.ok and again.rows == 0, (first.errors, again.errors)
            assert again.requests < first.requests
            print(
                f"{kind:9s} first sync {per_stream(first)}; no change {per_stream(again)} "
                f"({again.requests / first.requests:.2f} of the first)"
            )
