"""`cdmetrics gate` as a pipeline runs it: exit codes, JSON and JUnit output, failing closed."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.analytics_world import World, at
from tests.conftest import pg_engine
from tests.test_cli import run
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import Image

REPO = "registry.test/shop"


def build(engine: Engine) -> None:
    """Services shop (a line a -> b -> c), image b tested through staging, c only in test."""
    upgrade(engine)
    world = World(engine)
    world.line("a", "b", "c")
    world.add(Image, [{"digest": f"sha256:{s}", "repository": REPO, "revision": s} for s in "bc"])
    world.deploy("b", at(1), "test", digest="sha256:b")
    world.deploy("b", at(2), "staging", digest="sha256:b")
    world.deploy("c", at(3), "test", digest="sha256:c")
    world.derive()


def warehouse(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    build(engine)
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
        "quality-gate-failed",  # production: the SonarQube gate of the image's commit
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


# --- the contract holds for every failure (issue #22 item 5) ---------------------------------

GATE = ["gate", "--service", "shop", "--image", f"{REPO}@sha256:b", "--to", "production"]


def corrupt_sqlite(tmp_path: Path) -> list[str]:
    (tmp_path / "corrupt.db").write_bytes(b"this is no SQLite database, " * 100)
    return ["--warehouse", f"sqlite:///{tmp_path / 'corrupt.db'}"]


def newer_warehouse(tmp_path: Path) -> list[str]:
    url = warehouse(tmp_path)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '9999'"))
    engine.dispose()
    return ["--warehouse", url]


def non_utf8_config(tmp_path: Path) -> list[str]:
    (tmp_path / "latin1.toml").write_bytes(
        '[warehouse]\nurl = "sqlite:///wäre.db"\n'.encode("latin-1")
    )
    return ["--config", str(tmp_path / "latin1.toml")]


def directory_config(tmp_path: Path) -> list[str]:
    (tmp_path / "conf.d").mkdir()
    return ["--config", str(tmp_path / "conf.d")]


def unreachable_postgres(tmp_path: Path) -> list[str]:
    return ["--warehouse", "postgresql://gate@127.0.0.1:1/none"]  # a closed loopback port


FAILURES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "corrupt-sqlite": (corrupt_sqlite, "file is not a database"),
    "newer-warehouse": (newer_warehouse, "revision 9999, newer than this cdmetrics"),
    "non-utf8-config": (non_utf8_config, "latin1.toml: not UTF-8 text"),
    "directory-config": (directory_config, "conf.d: cannot be read as a configuration file"),
    "unreachable-postgres": (unreachable_postgres, "cannot open the warehouse"),
}


def assert_cannot_decide(
    tmp_path: Path, args: list[str], message: str, extra: list[str], code: int
) -> None:
    """Run the gate with `args`: exit `code`, the message on stderr, the error decision in the
    JSON file and in the JUnit report on stdout."""
    out = tmp_path / "out" / "gate.json"
    # wide enough that the message's path (tmp_path: long under pytest-xdist) is not broken
    wide = {"COLUMNS": "400"}
    result = run(tmp_path, *args, *GATE, "--format", "json", "-o", str(out), *extra, env=wide)
    assert result.returncode == code, result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    decision = json.loads(out.read_text(encoding="utf-8"))
    assert decision["decision"] == "error" and decision["service"] == "shop"
    assert message in decision["reasons"][0]["message"]
    junit = run(tmp_path, *args, *GATE, "--format", "junit", *extra)
    assert junit.returncode == code
    suite = ET.fromstring(junit.stdout)
    assert suite.get("errors") == "1" and suite.find("testcase/error") is not None, junit.stdout
    if extra:
        assert "allowing because of --fail-open" in result.stderr
    else:
        assert "--fail-open" not in result.stderr


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail-open"])
@pytest.mark.parametrize("kind", FAILURES)
def test_every_failure_cannot_decide(tmp_path: Path, kind: str, fail_open: bool) -> None:
    make, message = FAILURES[kind]
    extra = ["--fail-open"] if fail_open else []
    assert_cannot_decide(tmp_path, make(tmp_path), message, extra, 0 if fail_open else 2)


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail-open"])
def test_a_locked_table_times_out_and_cannot_decide(
    tmp_path: Path, pg_schema_url: tuple[str, str], fail_open: bool
) -> None:
    """A table held by another connection: the lock timeout (1 s from the config) ends the wait."""
    url, schema = pg_schema_url
    engine = pg_engine(url, schema)
    build(engine)
    config = tmp_path / "cdmetrics.toml"
    config.write_text(
        f'[warehouse]\nurl = "{url}?options=-csearch_path%3D{schema}"\nlock_timeout_s = 1\n',
        encoding="utf-8",
    )
    extra = ["--fail-open"] if fail_open else []
    with engine.begin() as conn:
        conn.execute(text("lock table service in access exclusive mode"))
        assert_cannot_decide(
            tmp_path, ["--config", str(config)], "lock timeout", extra, 0 if fail_open else 2
        )
    engine.dispose()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail-open"])
def test_a_database_that_never_answers_cannot_decide(
    tmp_path: Path, silent_port: int, fail_open: bool
) -> None:
    """Without a connect timeout libpq would wait for the server's first word forever."""
    config = tmp_path / "cdmetrics.toml"
    url = f"postgresql://gate@127.0.0.1:{silent_port}/none"
    config.write_text(f'[warehouse]\nurl = "{url}"\nconnect_timeout_s = 2\n', encoding="utf-8")
    extra = ["--fail-open"] if fail_open else []
    code = 0 if fail_open else 2
    assert_cannot_decide(tmp_path, ["--config", str(config)], "timeout expired", extra, code)
