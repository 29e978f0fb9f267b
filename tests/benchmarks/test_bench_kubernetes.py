"""Kubernetes sync of the large sandbox organisation's cluster: requests, workloads/s, rollouts/s,
and the cost of a re-sync with nothing new.

The simulator runs in its own process (a small script serving `KubernetesSimulator` for the large
org), the collector in this one, as in production. Prints figures; asserts only correctness.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from collectors.frame import SyncOptions
from collectors.kubernetes import KubernetesCollector
from config.settings import Settings
from sandbox.kubernetes_org import ENVIRONMENTS, namespace_of
from warehouse.engine import open_warehouse
from warehouse.schema import ObservedWorkload, Service

pytestmark = pytest.mark.bench
TOKEN = "sandbox-token"
NOW = datetime(2025, 6, 2, tzinfo=UTC)
SERVE = f"""
import sys, time
from datetime import datetime, UTC
from sandbox.generate import generate
from sandbox.kubernetes_api import KubernetesSimulator
from sandbox.server import SimulatorApp, SimulatorServer
org = generate(1, "large", datetime(2025, 6, 2, tzinfo=UTC))
sim = KubernetesSimulator(org, "{TOKEN}")
server = SimulatorServer(SimulatorApp(sim.router))
print(server.start(), len(sim.cluster.workloads), len(sim.cluster.observed()), flush=True)
for team in org.teams:
    print(team.name, *team.services, flush=True)
print("ready", flush=True)
sys.stdin.read()
"""


def test_kubernetes_sync_large(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url, workloads, expected = server.stdout.readline().split()
        teams: dict[str, list[str]] = {}
        while (line := server.stdout.readline().split()) != ["ready"]:
            assert line, "the simulator stopped early"
            teams[line[0]] = line[1:]
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            f"apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: {url}\n"
            "contexts:\n- name: s\n  context:\n    cluster: s\n    user: u\ncurrent-context: s\n"
            f"users:\n- name: u\n  user:\n    token: {TOKEN}\n"
        )
        namespaces = {namespace_of(t, e): e for t in teams for e in ENVIRONMENTS}
        settings = Settings(
            sources={"kubernetes": [{"name": "k8s", "kubeconfig": str(kubeconfig),
                                     "namespaces": namespaces}]},
            sync={"requests_per_second": 0, "parallelism": 4},
        )  # fmt: skip
        engine = open_warehouse(f"sqlite:///{tmp_path / 'large.db'}")
        with engine.begin() as conn:
            conn.execute(
                insert(Service),
                [{"name": s, "origin": "config"} for v in teams.values() for s in v],
            )
        start = time.perf_counter()
        summary = KubernetesCollector(
            settings.sources.kubernetes[0], SyncOptions(settings, engine)
        ).sync()
        seconds = time.perf_counter() - start
        assert summary.ok, summary.errors[:3]
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(ObservedWorkload)).scalar_one()
        assert rows == int(expected)
        print(
            f"\nkubernetes full sync (large org: {len(namespaces)} namespaces, {workloads} "
            f"workloads): {summary.requests:,} requests in {seconds:.1f} s; "
            f"{int(workloads) / seconds:,.0f} workloads/s; {rows:,} rollouts = "
            f"{rows / seconds:,.0f} rollouts/s"
        )
        start = time.perf_counter()
        again = KubernetesCollector(
            settings.sources.kubernetes[0], SyncOptions(settings, engine)
        ).sync()
        seconds = time.perf_counter() - start
        assert again.ok and again.rows == 0
        print(f"re-sync with nothing new: {again.requests:,} requests in {seconds:.1f} s, 0 rows")
    finally:
        server.kill()
        server.wait()
        for stream in (server.stdin, server.stdout):
            if stream is not None:
                stream.close()
