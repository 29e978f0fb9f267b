"""The demo warehouse the dashboard's tests read: the demo organisation as of NOW, derived, with a
sync's bookkeeping; and a copy with drift snapshots and policy violations. Built once per test
session (per xdist worker) by the `demo_url` and `findings_url` fixtures in conftest.py."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from analytics import drift
from analytics.derive import derive
from sandbox.generate import generate
from tests.sandbox_load import load_org
from warehouse.dimensions import ensure_source
from warehouse.engine import open_warehouse
from warehouse.raw import Raw, store_raw
from warehouse.schema import Environment, PolicyViolation, Service
from warehouse.sync_state import save_state
from warehouse.upsert import upsert

NOW = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday: the demo history ends here
PERIOD = ("2025-12-08", "2026-03-01")  # twelve ISO weeks, both days included


def build_demo(path: Path) -> str:
    """A demo-org warehouse at `path` (as of NOW), derived, with a sync's bookkeeping: state per
    stream (one partition failed) and one rejected payload. Returns its URL."""
    url = f"sqlite:///{path}"
    engine = open_warehouse(url)
    load_org(engine, generate(1, "demo", now=NOW))
    derive(engine)
    with engine.begin() as conn:
        source = ensure_source(conn, "gitlab", "gitlab")
        for n, stream in enumerate(("pipelines", "deployments", "merge_requests")):
            save_state(
                conn,
                source,
                stream,
                "acme/payments/payments-api",
                status="failed" if n == 2 else "ok",
                started_at=NOW - timedelta(minutes=10),
                finished_at=NOW - timedelta(minutes=5),
                requests=10 + n,
                rows=100 * n,
                rejected=int(n == 1),
                error="GET /projects/7/merge_requests: 500 Internal Server Error"
                if n == 2
                else None,
            )
        store_raw(conn, source, [Raw("deployments", "d-1", {"id": "d-1"}, "no environment")], NOW)
    engine.dispose()
    return url


def add_findings(url: str) -> None:
    """A drift snapshot (as `cdmetrics derive` records it) and policy violations (as `cdmetrics
    policy scan` will store them)."""
    engine = open_warehouse(url)
    drift.record(engine, ["test", "staging", "production"], NOW - timedelta(minutes=1))
    with engine.begin() as conn:
        services = dict(conn.execute(select(Service.name, Service.id)).all())
        envs = dict(conn.execute(select(Environment.name, Environment.id)).all())
        pay = services["payments-api"]
        upsert(
            conn,
            PolicyViolation,
            [
                {
                    "policy": policy,
                    "subject": f"deployment:{n}",
                    "severity": severity,
                    "service_id": pay,
                    "environment_id": envs["production"],
                    "message": f"{policy}: do the right thing",
                    "url": f"http://gitlab.sandbox.test/d/{n}",
                    "occurred_at": NOW - timedelta(days=days),
                    "first_seen_at": NOW - timedelta(hours=12),  # all found by one first scan
                    "resolved_at": None,
                }
                for n, (policy, severity, days) in enumerate(
                    [
                        ("untested-image", "error", 1),
                        ("untested-image", "error", 20),
                        ("moved-tag", "warn", 2),
                        ("stale-branch", "info", 30),
                    ]
                )
            ],
        )
    engine.dispose()


def with_findings(demo_url: str, path: Path) -> str:
    """A copy of the demo warehouse at `path` with drift snapshots and violations; its URL."""
    source = sqlite3.connect(demo_url.removeprefix("sqlite:///"))
    target = sqlite3.connect(path)
    source.backup(target)
    source.close()
    target.close()
    url = f"sqlite:///{path}"
    add_findings(url)
    return url
