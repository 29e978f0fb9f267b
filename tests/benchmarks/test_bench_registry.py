"""Registry sync of the large sandbox organisation, Harbor and OCI kinds: requests, images/s,
requests per image against the minimum the API allows for the same data, and the cost of a sync
with nothing new. The simulators run in threads of this process (uvicorn), the collector beside
them. Prints figures; asserts only correctness.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collectors.frame import SyncOptions
from collectors.registry import RegistryCollector
from config.settings import Settings
from sandbox import registry_payloads as truth
from sandbox.generate import generate
from sandbox.model import Organisation
from sandbox.oci import is_multiarch
from sandbox.registry_api import HarborSimulator, OCISimulator
from sandbox.server import SimulatorApp, SimulatorServer
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import Image, ImageTag

pytestmark = pytest.mark.bench
USER, PASSWORD = "robot$bench", "bench-secret"
PAGE = 100


@pytest.fixture(scope="module")
def org() -> Organisation:
    start = time.perf_counter()
    generated = generate(1, "large", datetime(2025, 6, 2, tzinfo=UTC))
    print(f"\ngenerated the large organisation in {time.perf_counter() - start:.1f} s")
    return generated


def minimum(org: Organisation, kind: str) -> int:
    """Requests the API needs at the least for the same data."""
    services = [s for s in org.services if s.images]
    images = sum(len(s.images) for s in services)
    indexes = sum(len(s.images) for s in services if is_multiarch(s))
    tags = len(truth.current(org))
    if kind == "harbor":
        events = sum(len(s.tag_history) for s in services)
        artifact_pages = sum(math.ceil(len(s.images) / PAGE) for s in services)
        return math.ceil(events / PAGE) + math.ceil(len(services) / PAGE) + artifact_pages + indexes
    tag_pages = sum(
        max(1, math.ceil(len({t for t, _, _ in s.tag_history}) / PAGE)) for s in services
    )
    # /v2/ with its token challenge, the catalog, tag lists, one request per tag (the first tag
    # of an image brings its manifest), a platform manifest per index and a config per image
    return 3 + math.ceil(len(services) / PAGE) + tag_pages + tags + indexes + images


@pytest.fixture(scope="module")
def servers(org: Organisation) -> Iterator[dict[str, SimulatorServer]]:
    harbor = SimulatorServer(SimulatorApp(HarborSimulator(org, USER, PASSWORD).router))
    oci = SimulatorServer(SimulatorApp(OCISimulator(org, USER, PASSWORD).router))
    with harbor, oci:
        yield {"harbor": harbor, "oci": oci}


@pytest.mark.parametrize("kind", ["harbor", "oci"])
def test_bench_registry_sync(
    org: Organisation,
    servers: dict[str, SimulatorServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    monkeypatch.setenv("BENCH_REGISTRY_USER", USER)
    monkeypatch.setenv("BENCH_REGISTRY_PASSWORD", PASSWORD)
    settings = Settings(
        sources={"registry": [{"name": kind, "kind": kind, "url": servers[kind].url,
                               "host": truth.HOST, "projects": ["acme"],
                               "user_env": "BENCH_REGISTRY_USER",
                               "token_env": "BENCH_REGISTRY_PASSWORD"}]},
        sync={"requests_per_second": 0, "parallelism": 8},
    )  # fmt: skip
    engine = make_engine(f"sqlite:///{tmp_path / 'bench.db'}")
    upgrade(engine)
    source = settings.sources.registry[0]
    summary = RegistryCollector(source, SyncOptions(settings, engine)).sync()
    assert summary.ok, summary.errors
    again = RegistryCollector(source, SyncOptions(settings, engine)).sync()
    assert again.ok and again.rows == 0
    with engine.connect() as conn:
        image_rows = conn.execute(select(func.count()).select_from(Image)).scalar_one()
        images = conn.execute(
            select(func.count()).select_from(Image).where(Image.index_digest.is_(None))
        ).scalar_one()
        tag_rows = conn.execute(select(func.count()).select_from(ImageTag)).scalar_one()
    assert image_rows == len(truth.expected_images(org))
    least = minimum(org, kind)
    print(
        f"\n{kind}: {images} images ({image_rows} image rows with platform manifests), "
        f"{tag_rows} tag rows in {summary.seconds:.1f} s = {images / summary.seconds:.0f} images/s; "
        f"{summary.requests} requests = {summary.requests / images:.2f} per image, minimum "
        f"{least} = {least / images:.2f} per image (ratio {summary.requests / least:.2f}); "
        f"sync with nothing new: {again.requests} requests in {again.seconds:.2f} s"
    )
