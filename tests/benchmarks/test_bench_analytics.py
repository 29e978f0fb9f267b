"""Analytics on the large organisation: full derive, incremental derive after one more day of data,
every metric for 90 days over all services read from the rollups, and its ratio to a plain count
and a plain scan of the rows it covers (and the growth small -> demo -> large). The warehouse is
built by a separate process (generation takes ~1.2 GB), so the peak memory
printed is the analytics' own. Prints figures; asserts only correctness.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from analytics import metrics
from analytics.derive import derive
from analytics.scope import Scope
from sandbox.generate import default_now, generate
from tests.benchmarks.scans import plain_count, plain_scan
from tests.sandbox_load import load_org
from warehouse.engine import open_warehouse

pytestmark = pytest.mark.bench
SIZE = os.environ.get("CDMETRICS_BENCH_SIZE", "large")


@cache
def weekday_end() -> datetime:
    """The generated organisations' end for the benches: the latest midnight that ends a working
    day (Tuesday to Saturday at 00:00 UTC), so that the day an incremental derive is measured on
    is a weekday whatever day the bench runs (run on a Monday, the last day was a Sunday, with
    almost nothing to derive). Read once a process: a bench that loads an organisation twice
    across midnight would otherwise load two organisations a day apart, every row changed."""
    end = default_now()
    while (end - timedelta(days=1)).weekday() > 4:
        end -= timedelta(days=1)
    return end


def build(db: Path, days_before_end: float, size: str = SIZE) -> tuple[str, float]:
    """Load the generated org of `size` (ending at `weekday_end`) as of `days_before_end` before
    its end, in a child process; returns its end (ISO and POSIX time)."""
    code = (
        "import sys, time; from datetime import datetime, timedelta; "
        "from sandbox.generate import generate; "
        "from tests.sandbox_load import load_org; from warehouse.engine import open_warehouse; "
        f"org = generate(1, {size!r}, now=datetime.fromisoformat({weekday_end().isoformat()!r})); "
        "t = time.perf_counter(); "
        f"n = load_org(open_warehouse('sqlite:///{db}'), org, org.now - timedelta(days={days_before_end})); "
        "print(org.now.isoformat(), n, round(time.perf_counter() - t, 1))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split()
    print(
        f"  loaded {size} org as of end - {days_before_end} d: {int(out[1]):,} rows in {out[2]} s"
    )

    return out[0], datetime.fromisoformat(out[0]).timestamp()


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def test_analytics_on_the_large_org(tmp_path: Path) -> None:
    db = tmp_path / "analytics.db"
    end_iso, _ = build(db, 1)
    engine = open_warehouse(f"sqlite:///{db}")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    full, t_full = timed(lambda: derive(engine, full=True))
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"\nfull derive: {t_full:.2f} s ({full.as_json()}); peak RSS {rss_after / 1024:.0f} MB "
        f"(+{(rss_after - rss_before) / 1024:.0f} MB during derive)"
    )
    build(db, 0)
    incremental, t_inc = timed(lambda: derive(engine))
    print(
        f"incremental derive after one more day: {t_inc:.2f} s, {t_inc / t_full:.3f} of the full "
        f"one (aims: <= 2 s, <= 0.05) ({incremental.as_json()})"
    )
    again, t_again = timed(lambda: derive(engine))
    print(f"derive with nothing new: {t_again:.2f} s ({again.as_json()})")
    assert incremental.deployments < full.deployments

    end = datetime.fromisoformat(end_iso)
    scope = Scope(end - timedelta(days=90), end)  # the org ends at a midnight: whole days
    rolled_up_metrics(engine, scope, SIZE)
    gate_and_policies(engine, db, scope)


def rolled_up_metrics(engine: Any, scope: Scope, label: str) -> float:
    """Every metric of `scope` read from the rollups (`analytics.metrics.metrics`), beside a plain
    count and a plain scan of the rows they cover (production deployment chains and pipelines
    finished in the period) and the row-based path (`selects.load` + `compute`), whose figures
    must be equal. Returns the seconds of the rollup-based metrics."""
    from analytics import rollups, selects

    with engine.connect() as conn:
        rows, t_count = plain_count(conn, scope)
        _, t_scan = plain_scan(conn, scope)
        found, t_metrics = min(
            (timed(lambda: metrics.metrics(conn, scope)) for _ in range(3)), key=lambda r: r[1]
        )
        days = rollups.load(conn, scope)
        data, t_rows = timed(lambda: selects.load(conn, scope))
        by_rows, t_compute = timed(lambda: metrics.compute(data))
    assert {k: v for k, v in found.items() if k != "scope"} == by_rows
    print(
        f"  {label}: every metric for {scope.days:.0f} days from the rollups {t_metrics:.3f} s "
        f"({days.stored:,} stored days, {rows:,} rows in the period); plain count {t_count:.3f} s "
        f"(ratio {t_metrics / t_count:.2f}, aim <= 1.5), plain scan {t_scan:.3f} s (ratio "
        f"{t_metrics / t_scan:.2f}); from the rows {t_rows + t_compute:.3f} s (ratio "
        f"{(t_rows + t_compute) / t_scan:.2f} to the scan); identical figures"
    )
    return t_metrics


def test_rolled_up_metrics_grow_with_days_not_rows(tmp_path: Path) -> None:
    """Every metric from the rollups on the small and the demo organisations (the large one:
    `test_analytics_on_the_large_org`), for the growth small -> demo -> large."""
    for size in ("small", "demo"):
        engine = open_warehouse(f"sqlite:///{tmp_path / size}.db")
        org = generate(1, size, now=weekday_end())
        load_org(engine, org)
        derive(engine)
        end = datetime.combine(org.now.date(), datetime.min.time(), org.now.tzinfo)
        rolled_up_metrics(engine, Scope(end - timedelta(days=90), end), size)
        engine.dispose()


def gate_and_policies(engine: Any, db: Path, scope: Scope) -> None:
    """Gate latency in-process (p50, p95) and as a CLI process; policy scan over the period."""
    from analytics.gate import evaluate
    from analytics.policies import scan
    from analytics.stats import percentile
    from warehouse.schema import Deployment, Service

    path = ["test", "staging", "production"]
    with engine.connect() as conn:
        cases = conn.execute(
            select(Service.name, Service.image_repository, Deployment.image_digest)
            .join(Service, Service.id == Deployment.service_id)
            .where(Deployment.image_digest.is_not(None))
            .order_by(Deployment.id.desc())
            .limit(200)
        ).all()
        latencies = []
        for service, repository, digest in cases:
            start = time.perf_counter()
            evaluate(conn, service, f"{repository}@{digest}", "production", path, ref="main")
            latencies.append((time.perf_counter() - start) * 1000)
        cpu = time.process_time()
        violations, seconds = timed(lambda: scan(conn, scope.since, scope.until, path))
        cpu = time.process_time() - cpu
    print(
        f"  gate in-process over {len(latencies)} decisions: p50 {percentile(latencies, 0.5):.1f} ms, "
        f"p95 {percentile(latencies, 0.95):.1f} ms"
    )
    service, repository, digest = cases[0]
    command = [
        str(Path(sys.executable).parent / "cdmetrics"),
        "--warehouse",
        f"sqlite:///{db}",
        "gate",
        "--service",
        service,
        "--image",
        f"{repository}@{digest}",
        "--to",
        "production",
    ]
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        runs.append(time.perf_counter() - start)
    print(
        f"  gate as a CLI process: {min(runs):.2f} s (best of 3, interpreter start and imports included)"
    )
    print(
        f"  policy scan over 90 days, all services: {seconds:.2f} s ({cpu:.2f} s CPU, aim <= 5), "
        f"{len(violations):,} violations"
    )
