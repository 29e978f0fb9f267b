"""`cdmetrics gate` as a pipeline runs it: exit codes, JSON and JUnit output, failing closed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.analytics_world import World, at
from tests.test_cli import run
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import Image

REPO = "registry.test/shop"


def warehouse(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    upgrade(engine)
    world = World(engine)
    world.line("a", "b", "c")
    world.add(Image, [{"digest": f"sha256:{s}", "repository": REPO, "revision": s} for s in "bc"])
    world.deploy("b", at(1), "test", digest="sha256:b")
    world.deploy("b", at(2), "staging", digest="sha256:b")
    world.deploy("c", at(3), "test", digest="sha256:c")
    world.derive()
    engine.dispose()
    return url


def test_gate_exit_codes_and_formats(tmp_path: Path) -> None:
    url = warehouse(tmp_path)
    base = ["--warehouse", url, "gate", "--service", "shop", "--to", "production"]
    allowed = run(tmp_path, *base, "--image", f"{REPO}@sha256:b", "--format", "json")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["decision"] == "allow"
    denied = run(
        tmp_path, *base, "--image", f"{REPO}@sha256:c", "--ref", "feature/x", "--format", "junit"
    )
    assert denied.returncode == 1
    suite = ET.fromstring(denied.stdout)
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {
        "untested-image",
        "rebuilt-image",
        "unpinned-image",
        "moved-tag",
        "non-release-ref",
    }
    assert suite.get("failures") == "2"
    assert cases["untested-image"].find("failure") is not None
    assert cases["non-release-ref"].find("failure") is not None
    text = run(tmp_path, *base, "--image", f"{REPO}@sha256:c")
    assert text.returncode == 1 and "deploy sha256:c to staging first" in text.stdout


def test_gate_fails_closed_unless_told_to_fail_open(tmp_path: Path) -> None:
    url = warehouse(tmp_path)
    unknown = run(
        tmp_path,
        "--warehouse",
        url,
        "gate",
        "--service",
        "nope",
        "--image",
        "x@sha256:1",
        "--to",
        "production",
        "--format",
        "json",
    )
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["decision"] == "error"
    unreachable = [
        "--warehouse",
        "postgresql://gate@127.0.0.1:1/none",
        "gate",
        "--service",
        "shop",
        "--image",
        "x@sha256:1",
        "--to",
        "production",
    ]
    assert run(tmp_path, *unreachable).returncode == 2
    assert run(tmp_path, *unreachable, "--fail-open").returncode == 0
