"""The weekly report on the large organisation: building the model (twelve weeks of the analytics
API plus the views) and rendering each format, for one team and for the whole organisation.
Aims: the whole organisation's model < 2 s (it reads the rollups), the HTML within 5 s; each
model time also as a ratio to a plain scan of the rows its period covers. Prints figures;
asserts only correctness, never wall time.

CDMETRICS_BENCH_WAREHOUSE=path.db reuses a warehouse built before as `build` leaves it (derived,
with a drift snapshot and a policy scan); its end is taken as its last pipeline's finish.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from analytics import views
from analytics.metrics import metrics
from analytics.scope import Scope
from reports.model import build_report
from reports.render import FORMATS, render
from reports.week import last_complete_week
from tests.benchmarks.scans import plain_scan
from warehouse.engine import open_warehouse
from warehouse.schema import Pipeline

pytestmark = pytest.mark.bench
SIZE = os.environ.get("CDMETRICS_BENCH_SIZE", "large")
AIM_HTML_S = 5.0


def build(db: Path) -> datetime:
    """Generate the organisation, load it, derive, record a drift snapshot and a 30-day policy
    scan (as `cdmetrics sync` and `policy scan` leave them), in a child process (generation takes
    over a gigabyte). Returns the organisation's end."""
    code = f"""
import time
from datetime import timedelta
from analytics import drift, policies
from analytics.derive import derive
from sandbox.generate import generate
from tests.sandbox_load import load_org
from warehouse.engine import open_warehouse
from warehouse.schema import Pipeline

t = time.perf_counter()
engine = open_warehouse("sqlite:///{db}")
org = generate(1, {SIZE!r})
rows = load_org(engine, org)
derived = derive(engine)
path = ["test", "staging", "production"]
last_thursday = org.now - timedelta(days=org.now.weekday() + 4)  # in the last complete week
drift.record(engine, path, last_thursday)
with engine.begin() as conn:
    found = policies.scan(conn, org.now - timedelta(days=30), org.now, path)
    stored = policies.store(conn, found, last_thursday)
print(org.now.isoformat(), rows, derived.deployments, len(stored), round(time.perf_counter() - t, 1))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, f"building the {SIZE} org failed:\n{result.stderr[-3000:]}"
    end, rows, deployments, violations, seconds = result.stdout.split()
    print(
        f"\n  built the {SIZE} org: {int(rows):,} rows, {int(deployments):,} deployments, "
        f"{int(violations):,} violations in {seconds} s"
    )
    return datetime.fromisoformat(end)


def test_weekly_report_on_the_large_org(tmp_path: Path) -> None:
    reused = os.environ.get("CDMETRICS_BENCH_WAREHOUSE")
    db = Path(reused) if reused else tmp_path / "reports.db"
    end = None if reused else build(db)
    engine = open_warehouse(f"sqlite:///{db}")
    if end is None:
        with engine.connect() as conn:
            end = conn.execute(select(func.max(Pipeline.finished_at))).scalar()
        assert end is not None, f"{db} holds no pipelines"
    week = last_complete_week(end)
    with engine.connect() as conn:
        team = views.filter_options(conn)["teams"][0]
    for label, teams in ((f"team {team}", (team,)), ("whole org", ())):
        start = time.perf_counter()
        report = build_report(engine, week, teams)
        t_model = time.perf_counter() - start
        with engine.connect() as conn:
            scope = Scope(week.since, week.until, teams)
            expected = metrics(conn, scope)
        assert report.metrics["deployment_frequency"] == expected["deployment_frequency"]
        assert report.metrics["lead_time"] == expected["lead_time"]
        with engine.connect() as conn:
            rows, t_scan = plain_scan(conn, report.period or report.scope)
        print(
            f"  {label}, {week.key}: model {t_model:.2f} s (aim < 2 s for the whole org; ratio "
            f"{t_model / t_scan:.1f} to a plain scan of the {rows:,} rows of its period, "
            f"{t_scan:.2f} s) "
            f"({report.metrics['deployment_frequency']['deployments']} deployments, "
            f"{len(report.services)} services, {len(report.violations)} new violations)"
        )
        for output_format in FORMATS:
            start = time.perf_counter()
            content = render(report, output_format)
            t_render = time.perf_counter() - start
            total = t_model + t_render
            aim = f" (aim {AIM_HTML_S:.0f} s)" if output_format == "html" else ""
            print(
                f"    {output_format:>4}: render {t_render:.2f} s, report {total:.2f} s{aim}, "
                f"{len(content) / 1024:,.0f} KiB"
            )
            assert content
    engine.dispose()
