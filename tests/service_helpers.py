"""The HTTP service for tests: started with uvicorn on a free loopback port, spoken to over real
HTTP (httpx), with known secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from config.settings import Settings
from service.app import create_app
from service.server import ServiceServer
from service.state import ServiceOptions, ServiceState
from warehouse.schema import Base

FIXTURES = Path(__file__).parent / "fixtures"
ENVIRON = {
    "CDMETRICS_READ_TOKEN": "read-secret",
    "CDMETRICS_WRITE_TOKEN": "write-secret",
    "GITLAB_WEBHOOK_SECRET": "gitlab-secret",
}
READ = {"Authorization": "Bearer read-secret"}
WRITE = {"Authorization": "Bearer write-secret"}
GITLAB = {"X-Gitlab-Token": "gitlab-secret"}


@dataclass
class Running:
    """A running service: its URL, an HTTP client on it, and its state."""

    url: str
    client: httpx.Client
    state: ServiceState


@contextmanager
def running_service(
    engine: Engine,
    settings: Settings | None = None,
    options: ServiceOptions | None = None,
    environ: dict[str, str] | None = None,
) -> Iterator[Running]:
    """The service on `engine`, served until the block ends (client closed, server stopped)."""
    app = create_app(
        settings or Settings(), engine, options, ENVIRON if environ is None else environ
    )
    with ServiceServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield Running(server.url, client, app.state.service)


def fixture(*parts: str) -> Any:
    """A JSON fixture under tests/fixtures."""
    return json.loads(FIXTURES.joinpath(*parts).read_text(encoding="utf-8"))


def count(engine: Engine, table: type[Base]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def prometheus_samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of a Prometheus text exposition (comments skipped)."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
