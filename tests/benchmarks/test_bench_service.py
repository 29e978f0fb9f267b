"""A bounded load test of the HTTP service on loopback: 2 concurrent clients each POST 10,000
CDEvents (`service.deployed`, one event per request, keep-alive), then replay 1,000 of them,
then 10,000 more in JSON arrays of 500. Nothing may be lost: the warehouse holds exactly one raw
payload and one deployment per event.

The service runs as `cdmetrics serve` does, in its own process (uvicorn on a free loopback port),
so the clients' Python does not share its interpreter. Prints throughput and latency on each
backend; asserts only correctness, never wall time.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from analytics.stats import percentile
from tests.service_helpers import ENVIRON, READ, WRITE, count
from warehouse.schema import Deployment, RawPayload

CLIENTS = 2
EVENTS = 10_000  # per client
REPLAYS = 1_000
BATCH = 500  # events per request in the batch phase
pytestmark = pytest.mark.bench
# `cdmetrics serve` (the CLI's global options plus the service commands, as cli.py registers them)
SERVE = (
    "import typer; from cdmetrics import cli; from cdmetrics.cli_service import register; "
    "app = typer.Typer(); app.callback()(cli._main); register(app); app()"
)


def warehouse_url(engine: Engine) -> str:
    """The engine's URL for another process (a PostgreSQL test schema as its search path)."""
    url = engine.url
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("select current_schema()")).scalar_one()
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@contextmanager
def served(engine: Engine) -> Iterator[str]:
    """The service in a subprocess on a free loopback port; stopped (SIGTERM) afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-c",
        SERVE,
        "-w",
        warehouse_url(engine),
        "serve",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, env={**os.environ, **ENVIRON}, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start: {command}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(60)


def deployed(client: int, n: int) -> dict[str, Any]:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
    digest = f"{client:02d}{n:062d}"
    return {
        "context": {
            "specversion": "0.5.0",
            "id": f"bench-{client}-{n}",
            "source": f"/bench/client-{client}",
            "type": "dev.cdevents.service.deployed.0.3.0",
            "timestamp": at.isoformat(),
        },
        "subject": {
            "id": f"service/app-{n % 50}",
            "content": {
                "environment": {"id": ("test", "staging", "production")[n % 3]},
                "artifactId": f"pkg:oci/app@sha256%3A{digest}?repository_url=reg.example/app",
            },
        },
    }


def send(url: str, client: int, events: list[dict[str, Any]], latencies: list[float]) -> int:
    """POST each event on one keep-alive connection; returns how many were answered 200. The
    standard library's client: the load generator should cost the machine little."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {**WRITE, "Content-Type": "application/json"}
    ok = 0
    try:
        for event in events:
            body = json.dumps(event)
            start = time.perf_counter()
            connection.request("POST", "/events/cdevents", body, headers)
            answer = connection.getresponse()
            answer.read()
            latencies.append(time.perf_counter() - start)
            ok += answer.status == 200
    finally:
        connection.close()
    return ok


def test_two_clients_ten_thousand_events_each_nothing_lost(engine: Engine) -> None:
    payloads = {c: [deployed(c, n) for n in range(EVENTS)] for c in range(CLIENTS)}
    latencies: dict[int, list[float]] = {c: [] for c in range(CLIENTS)}
    answered: dict[int, int] = {}
    with served(engine) as url:
        threads = [
            threading.Thread(
                target=lambda c=c: answered.__setitem__(c, send(url, c, payloads[c], latencies[c]))
            )
            for c in range(CLIENTS)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        replay_latencies: list[float] = []
        replay_start = time.perf_counter()
        replayed = send(url, 0, payloads[0][:REPLAYS], replay_latencies)
        replay_seconds = time.perf_counter() - replay_start
        metrics_start = time.perf_counter()
        figures = httpx.get(
            f"{url}/api/v1/metrics",
            params={"since": "2026-01-01", "until": "2026-02-01"},
            headers=READ,
            timeout=120,
        ).json()
        first_read = time.perf_counter() - metrics_start
        derives = httpx.get(f"{url}/healthz").json()["derive"]["runs"]
        batches = [deployed(CLIENTS, n) for n in range(EVENTS)]
        batch_start = time.perf_counter()
        with httpx.Client(base_url=url, headers=WRITE, timeout=120) as http:
            stored = sum(
                http.post("/events/cdevents", json=batches[i : i + BATCH]).json()["stored"]
                for i in range(0, EVENTS, BATCH)
            )
        batch_seconds = time.perf_counter() - batch_start
    total = CLIENTS * EVENTS
    assert answered == {c: EVENTS for c in range(CLIENTS)} and replayed == REPLAYS
    assert stored == EVENTS
    assert count(engine, RawPayload) == total + EVENTS
    assert count(engine, Deployment) == total + EVENTS
    assert figures["deployment_frequency"]["deployments"] > 0
    every = sorted(latency for values in latencies.values() for latency in values)
    print(
        f"\nservice {engine.dialect.name:<10} {CLIENTS} clients x {EVENTS:,} CDEvents over HTTP: "
        f"{total / seconds:,.0f} events/s ({seconds:.1f} s), latency p50 "
        f"{percentile(every, 0.5) * 1000:.1f} ms p99 {percentile(every, 0.99) * 1000:.1f} ms; "
        f"{REPLAYS:,} replays {REPLAYS / replay_seconds:,.0f} events/s (stored once); "
        f"{derives} debounced derives; first /api/v1/metrics after the load {first_read:.2f} s; "
        f"{EVENTS:,} more in arrays of {BATCH}: {EVENTS / batch_seconds:,.0f} events/s"
    )
