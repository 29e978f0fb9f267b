"""Merged MRs not yet in production (`selects.unreleased`, issue #21): what derive pays to maintain
`merge_request.released_at` (a full derive, an incremental one after more days of data) and
what the reads cost per scope, against the old per-MR computation (`reference_unreleased` in
tests/test_unreleased_select.py) and a plain scan of the rows they choose from (every column of
the MRs merged before the scope's end). Prints figures; asserts only that the reads equal the
old computation.

The organisation is the demo one by default (`CDMETRICS_BENCH_SIZE`; the large one takes long to
build here), loaded as of three days before its end (`CDMETRICS_BENCH_DAYS`) in a child process.
`CDMETRICS_BENCH_WAREHOUSE` names a prebuilt SQLite warehouse (e.g. the large organisation) to
measure instead: it is upgraded and derived (a warehouse from before migration 0025 fills every
MR's released_at then), and the incremental step is skipped. `CDMETRICS_BENCH_OLD=0` skips the
old computation (minutes per scope on the large organisation).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from analytics import releases, selects
from analytics.derive import derive
from analytics.scope import Scope
from tests.benchmarks.scans import best
from tests.benchmarks.test_bench_analytics import build
from tests.test_unreleased_select import reference_unreleased
from warehouse.engine import open_warehouse
from warehouse.schema import Environment, MergeRequest

pytestmark = pytest.mark.bench
SIZE = os.environ.get("CDMETRICS_BENCH_SIZE", "demo")
OLD = os.environ.get("CDMETRICS_BENCH_OLD", "1") != "0"
# the incremental step: the demo organisation ends on a Monday 00:00, so its last day alone (a
# Sunday) brings almost nothing; the last three days bring Friday's deployments
DAYS = float(os.environ.get("CDMETRICS_BENCH_DAYS", "3"))


def merged_scan(conn: Connection, scope: Scope) -> tuple[int, float]:
    """(rows, best seconds) of reading every column of the MRs merged before the scope's end."""
    return best(
        lambda: len(
            conn.execute(
                select(MergeRequest).where(
                    MergeRequest.state == "merged", MergeRequest.merged_at < scope.until
                )
            ).all()
        )
    )


def _key(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(((r.service, r.team, r.at, r.released_at) for r in rows), key=repr)


def test_unreleased_reads_and_their_maintenance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshes: list[float] = []
    refresh = releases.refresh

    def timed_refresh(*args: Any, **kwargs: Any) -> int:
        start = time.perf_counter()
        changed = refresh(*args, **kwargs)
        refreshes.append(time.perf_counter() - start)
        return changed

    monkeypatch.setattr(releases, "refresh", timed_refresh)
    reused = os.environ.get("CDMETRICS_BENCH_WAREHOUSE")
    print()
    if reused:
        engine = open_warehouse(f"sqlite:///{reused}")
        start = time.perf_counter()
        summary = derive(engine)
        print(
            f"  derive of {reused}: {time.perf_counter() - start:.2f} s, of which released_at "
            f"{refreshes[-1]:.2f} s ({summary.released:,} MRs changed)"
        )
        with engine.connect() as conn:
            last = conn.execute(select(func.max(MergeRequest.merged_at))).scalar_one()
        end = last + timedelta(seconds=1)  # its last merge included
    else:
        db = tmp_path / "unreleased.db"
        build(db, DAYS, SIZE)
        engine = open_warehouse(f"sqlite:///{db}")
        start = time.perf_counter()
        full = derive(engine, full=True)
        print(
            f"  full derive: {time.perf_counter() - start:.2f} s, of which released_at "
            f"{refreshes[-1]:.2f} s ({full.released:,} MRs released)"
        )
        end = datetime.fromisoformat(build(db, 0, SIZE)[0])
        start = time.perf_counter()
        incremental = derive(engine)
        print(
            f"  incremental derive after {DAYS:g} more day(s): {time.perf_counter() - start:.2f} s, of "
            f"which released_at {refreshes[-1]:.2f} s ({incremental.released:,} MRs changed)"
        )
    with engine.connect() as conn:
        merged = conn.execute(
            select(func.count()).where(MergeRequest.state == "merged")
        ).scalar_one()
        environments = dict(conn.execute(select(Environment.name, Environment.tier)).all())
        named = [n for n, tier in sorted(environments.items()) if tier == "production"][:1] + [
            n for n, tier in sorted(environments.items()) if tier == "staging"
        ][:1]
        default = Scope.default(now=end)
        scopes = {
            "production, default period": default,
            "production, last week": Scope(end - timedelta(weeks=1), end),
            "production, whole history": Scope(datetime(1970, 1, 1, tzinfo=end.tzinfo), end),
            **{
                f"{environments[n]} {n!r}, default period": Scope(
                    default.since, default.until, environment=n
                )
                for n in named
            },
        }
        print(f"  {merged:,} merged MRs")
        print(
            f"  {'scope':<38} {'rows':>6} {'new s':>8} {'old s':>9} {'old/new':>8} "
            f"{'scan rows':>9} {'scan s':>7} {'new/scan':>8}"
        )
        for name, scope in scopes.items():
            rows, t_new = best(lambda s=scope: selects.unreleased(conn, s))
            scanned, t_scan = merged_scan(conn, scope)
            old, speedup = "skipped", ""
            if OLD:
                start = time.perf_counter()
                want = reference_unreleased(conn, scope)  # once: seconds to minutes
                t_old = time.perf_counter() - start
                assert _key(rows) == _key(want), name
                old, speedup = f"{t_old:9.2f}", f"{t_old / t_new:7.0f}x"
            print(
                f"  {name:<38} {len(rows):>6} {t_new:8.4f} {old:>9} {speedup:>8} "
                f"{scanned:>9,} {t_scan:7.4f} {t_new / t_scan:7.2f}x"
            )
    engine.dispose()
