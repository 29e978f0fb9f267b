"""Each dashboard page's render time through AppTest on the large organisation, cold (what the
caches' TTL forgets cleared, then the page opened) and warm (the same view again), over the
default period (the last 12 weeks) and every service. Aims (issue #21: pages read the rollups):
under 1 s cold, 0.2 s warm; the slowest page also as a ratio to a plain scan of the period's
rows. Prints figures; asserts only that every page renders.

The warehouse is built (generated, loaded, derived) by a child process, so this process's memory
is the dashboard's own. CDMETRICS_BENCH_WAREHOUSE=path.db reuses a warehouse built before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard import data, launch

pytestmark = pytest.mark.bench
SIZE = os.environ.get("CDMETRICS_BENCH_SIZE", "large")
PAGES = {
    "overview": "Overview",
    "lead_time": "Lead time for changes",
    "deployments": "Deployments",
    "failures": "Failures and recovery",
    "builds": "Builds",
    "environments": "Environments and drift",
    "policies": "Policies",
    "data_sources": "Data sources",
}
AIM_COLD_S, AIM_WARM_S = 1.0, 0.2


def build(db: Path) -> None:
    """Generate the organisation, load it as of its end and derive, in a child process."""
    code = (
        "import time; from sandbox.generate import generate; from tests.sandbox_load import "
        "load_org; from analytics.derive import derive; from warehouse.engine import "
        f"open_warehouse; t = time.perf_counter(); e = open_warehouse('sqlite:///{db}'); "
        f"n = load_org(e, generate(1, {SIZE!r})); d = derive(e); "
        "print(n, d.deployments, round(time.perf_counter() - t, 1))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, f"building the {SIZE} org failed:\n{result.stderr[-3000:]}"
    out = result.stdout.split()
    print(
        f"\n  built the {SIZE} org: {int(out[0]):,} rows, {int(out[1]):,} deployments in {out[2]} s"
    )


def render(at: AppTest, title: str | None = None) -> float:
    start = time.perf_counter()
    at.run(timeout=300)
    elapsed = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    assert title is None or [t.value for t in at.title] == [title]
    return elapsed


def test_dashboard_pages_on_the_large_org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reused = os.environ.get("CDMETRICS_BENCH_WAREHOUSE")
    db = Path(reused) if reused else tmp_path / "dashboard.db"
    if not reused:
        build(db)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDMETRICS_WAREHOUSE__URL", f"sqlite:///{db}")
    # one session going from page to page, as a lead does: a new AppTest would scan the installed
    # packages for Streamlit components before its first run (0.2 s here), which a running
    # server does once when it starts, never on a page view
    at = AppTest.from_file(launch.APP, default_timeout=300)
    render(at)  # imports (pandas, plotly, ...), the schema check and that scan, once
    print(
        f"\n  {'page':<14} {'cold s':>7} {'warm s':>7}   (aim: cold < {AIM_COLD_S}, warm < {AIM_WARM_S})"
    )
    totals = [0.0, 0.0]
    cold_times, warm_times = [], []
    for page, title in PAGES.items():
        # what the caches' TTL forgets: every result and the days held, not the engine (one
        # per server process; with it the SQLite connections' page caches would go)
        st.cache_data.clear()
        data._rolled.clear()
        data._kept.clear()
        at.switch_page(f"app_pages/{page}.py")
        cold = render(at, title)
        warm = min(render(at, title) for _ in range(3))
        totals[0] += cold
        totals[1] += warm
        cold_times.append(cold)
        warm_times.append(warm)
        flags = ("" if cold < AIM_COLD_S else " cold over aim") + (
            "" if warm < AIM_WARM_S else " warm over aim"
        )
        print(f"  {page:<14} {cold:7.2f} {warm:7.2f}{flags}")
    print(f"  {'all pages':<14} {totals[0]:7.2f} {totals[1]:7.2f}")
    from analytics.scope import Scope
    from tests.benchmarks.scans import plain_scan
    from warehouse.engine import open_warehouse

    engine = open_warehouse(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows, t_scan = plain_scan(conn, Scope.default())
    engine.dispose()
    print(
        f"  a plain scan of the default period's {rows:,} rows: {t_scan:.2f} s; the slowest page "
        f"cold is {max(cold_times) / t_scan:.1f} times it, warm {max(warm_times) / t_scan:.2f}"
    )
