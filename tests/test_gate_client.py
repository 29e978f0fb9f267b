"""`cdmetrics gate` as a thin client of the running service (cdmetrics/gate_client.py), over real
HTTP: the real service app on a free port against a warehouse with data, the console script in a
subprocess. The thin route must print the direct route's output with its exit code for the same
decision, fail closed (exit 2, the URL named, the token never shown) whenever it gets no decision,
and import nothing but the standard library."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from analytics.gate import GATE_POLICIES
from cdmetrics import gate_output
from tests.service_helpers import running_service
from tests.test_cli import run
from tests.test_gate_cli import REPO, silent_port, warehouse
from warehouse.engine import make_engine

ROOT = Path(__file__).resolve().parents[1]
TOKEN = {"CDMETRICS_WRITE_TOKEN": "write-secret"}  # tests.service_helpers.ENVIRON's write token
SECRET = "write-secret"
__all__ = ["silent_port"]  # a fixture, imported for the tests below


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(the warehouse URL, the URL of the service running on it), one for the module: the gate
    only reads."""
    url = warehouse(tmp_path_factory.mktemp("served"))
    engine = make_engine(url)
    with running_service(engine) as svc:
        yield url, svc.url
    engine.dispose()


def gate(*args: str) -> list[str]:
    return ["gate", "--service", "shop", "--to", "production", *args]


CASES = {
    "allow-json": gate("--image", f"{REPO}@sha256:b", "--format", "json"),
    "allow-text": gate("--image", f"{REPO}@sha256:b"),
    "allow-junit": gate("--image", f"{REPO}@sha256:b", "--format", "junit"),
    "deny-json": gate("--image", f"{REPO}@sha256:c", "--ref", "feature/x", "--format", "json"),
    "deny-text": gate("--image", f"{REPO}@sha256:c", "--ref", "feature/x"),
    "deny-junit": gate("--image", f"{REPO}@sha256:c", "--ref", "feature/x", "--format", "junit"),
    "deny-tag-text": gate("--image", f"{REPO}:latest"),  # unknown tag: unpinned, untested
    "unknown-service-json": [
        *("gate", "--service", "nope", "--to", "production", "--image", "x@sha256:1"),
        *("--format", "json"),
    ],
    "unknown-environment-junit": [
        *("gate", "--service", "shop", "--to", "prod", "--image", f"{REPO}@sha256:b"),
        *("--format", "junit"),
    ],
    "unknown-service-fail-open": [
        *("gate", "--service", "nope", "--to", "production", "--image", "x@sha256:1"),
        "--fail-open",
    ],
}
EXIT = {"allow": 0, "deny": 1, "unknown": 2}


def same_words(text: str) -> str:
    """`text` with its whitespace runs as single spaces (rich wraps the direct route's stderr)."""
    return " ".join(text.split())


@pytest.mark.parametrize("case", CASES)
def test_the_thin_route_decides_as_the_direct_route(
    tmp_path: Path, served: tuple[str, str], case: str
) -> None:
    url, service = served
    args = CASES[case]
    direct = run(tmp_path, "--warehouse", url, *args, env={"COLUMNS": "400"})
    thin = run(tmp_path, *args, "--service-url", service, env=TOKEN)
    expected = 0 if case.endswith("fail-open") else EXIT[case.split("-")[0]]
    assert direct.returncode == expected, direct.stderr
    assert (thin.returncode, thin.stdout) == (direct.returncode, direct.stdout), thin.stderr
    assert same_words(thin.stderr) == same_words(direct.stderr)
    if case.startswith("unknown"):
        assert "nope" in thin.stderr or "prod" in thin.stderr
    assert SECRET not in thin.stdout + thin.stderr


def test_the_service_url_comes_from_the_option_the_variable_or_the_config(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    """Every spelling of the URL takes the thin route (no warehouse in reach: the decision can
    only come from the service), and the full command line (`cdmetrics.cli`) delegates alike;
    `--warehouse` reads the warehouse, with `--service-url` it is a usage error."""
    url, service = served
    args = CASES["deny-json"]
    direct = run(tmp_path, "--warehouse", url, *args)
    via_variable = run(tmp_path, *args, env={**TOKEN, "CDMETRICS_SERVICE__URL": service + "/"})
    config = tmp_path / "conf" / "gate.toml"
    config.parent.mkdir()
    config.write_text(
        f'[service]\nurl = "{service}"\nwrite_token_env = "MY_GATE_TOKEN"\n', encoding="utf-8"
    )
    via_config = run(tmp_path, "--config", str(config), *args, env={"MY_GATE_TOKEN": SECRET})
    full_cli = subprocess.run(
        [sys.executable, "-c", "from cdmetrics.cli import main; main()", *args],
        cwd=tmp_path,
        env={**clean_environ(), **TOKEN, "CDMETRICS_SERVICE__URL": service},
        capture_output=True,
        text=True,
        check=False,
    )
    for result in (via_variable, via_config, full_cli):
        assert (result.returncode, result.stdout) == (1, direct.stdout), result.stderr
    token_env = run(tmp_path, *args, "--service-url", service, "--token-env", "OTHER_TOKEN",
                    env={"OTHER_TOKEN": SECRET})  # fmt: skip
    assert (token_env.returncode, token_env.stdout) == (1, direct.stdout), token_env.stderr
    warehouse_wins = run(
        tmp_path, "--warehouse", url, *args, env={"CDMETRICS_SERVICE__URL": "http://127.0.0.1:9"}
    )
    assert (warehouse_wins.returncode, warehouse_wins.stdout) == (1, direct.stdout)
    both = run(tmp_path, "--warehouse", url, *args, "--service-url", service)
    assert both.returncode == 2 and "not both" in both.stderr and not both.stdout
    junit = CASES["deny-junit"]
    files = [tmp_path / "direct" / "gate.xml", tmp_path / "thin" / "gate.xml"]
    direct_file = run(tmp_path, "--warehouse", url, *junit, "-o", str(files[0]))
    thin_file = run(tmp_path, *junit, "-o", str(files[1]), "--service-url", service, env=TOKEN)
    assert direct_file.returncode == thin_file.returncode == 1
    assert not thin_file.stdout and files[1].read_bytes() == files[0].read_bytes()


def clean_environ() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CDMETRICS_")}
    return {**environ, "PYTHONPATH": str(ROOT)}


def assert_cannot_ask(
    tmp_path: Path, service: str, words: str, env: dict[str, str], *extra: str
) -> None:
    """The thin gate asking `service`: exit 2 with `words` and the URL on stderr, the error
    decision in JSON and JUnit; `--fail-open` exits 0; the token never printed."""
    result = run(tmp_path, *CASES["allow-json"], "--service-url", service, *extra, env=env)
    assert result.returncode == 2, result.stderr
    message = same_words(result.stderr)
    assert words in message and service.rstrip("/") + "/api/v1/gate" in message, message
    decision = json.loads(result.stdout)
    assert decision["decision"] == "error" and words in decision["reasons"][0]["message"]
    junit = run(tmp_path, *CASES["allow-junit"], "--service-url", service, *extra, env=env)
    suite = ET.fromstring(junit.stdout)
    assert junit.returncode == 2 and suite.get("errors") == "1"
    assert suite.find("testcase/error") is not None
    opened = run(tmp_path, *CASES["allow-json"], "--service-url", service, "--fail-open", *extra,
                 env=env)  # fmt: skip
    assert opened.returncode == 0 and "allowing because of --fail-open" in opened.stderr
    for answer in (result, junit, opened):
        assert SECRET not in answer.stdout + answer.stderr


def test_a_wrong_or_missing_token_cannot_decide(tmp_path: Path, served: tuple[str, str]) -> None:
    _, service = served
    assert_cannot_ask(tmp_path, service, "refused the token in CDMETRICS_WRITE_TOKEN (401",
                      {"CDMETRICS_WRITE_TOKEN": "not-" + SECRET})  # fmt: skip
    assert_cannot_ask(tmp_path, service, "refused no token (CDMETRICS_WRITE_TOKEN is not set)", {})


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_or_silent_service_cannot_decide(tmp_path: Path, silent_port: int) -> None:
    assert_cannot_ask(tmp_path, f"http://127.0.0.1:{closed_port()}", "cannot reach", TOKEN)
    assert_cannot_ask(tmp_path, f"http://127.0.0.1:{silent_port}/", "did not answer within 1 s",
                      TOKEN, "--timeout", "1")  # fmt: skip


class Stub(BaseHTTPRequestHandler):
    """Answers every POST as its path says: /garbage/... 200 text, /html/... 500 HTML,
    /moved/... a redirect, /denied/... 403, anything else FastAPI's 404; records the
    Authorization headers it saw."""

    seen: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        Stub.seen.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.path.split("/")[1]
        status, body, headers = {
            "garbage": (200, b"hello, this is not JSON", {}),
            "html": (500, b"<html>Internal Server Error</html>", {"Content-Type": "text/html"}),
            "moved": (302, b"", {"Location": "http://elsewhere.invalid/api/v1/gate"}),
            "denied": (403, b'{"detail": "the write scope is not configured"}', {}),
        }.get(kind, (404, b'{"detail": "Not Found"}', {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/garbage", "answered no gate decision: 'hello, this is not JSON'"),
        ("/html", "answered 500, no gate decision"),
        ("/moved", "a redirect to http://elsewhere.invalid/api/v1/gate"),
        ("/denied", "refuses gate requests (403 (the write scope is not configured))"),
        ("/wrong/prefix", "there is no cdmetrics gate at"),
    ],
)
def test_an_answer_that_is_no_decision_cannot_decide(
    tmp_path: Path, stub: str, path: str, words: str
) -> None:
    Stub.seen.clear()
    assert_cannot_ask(tmp_path, stub + path, words, TOKEN)
    assert Stub.seen and all(seen == f"Bearer {SECRET}" for seen in Stub.seen)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://cdmetrics.example", "is not an http(s) URL"),
        (f"http://gate:{SECRET}@127.0.0.1:9/", "put no credentials in the URL"),
    ],
)
def test_a_service_url_that_is_not_one_cannot_decide(tmp_path: Path, url: str, words: str) -> None:
    result = run(tmp_path, *CASES["allow-json"], "--service-url", url, env=TOKEN)
    assert result.returncode == 2 and words in same_words(result.stderr)
    assert json.loads(result.stdout)["decision"] == "error"
    assert SECRET not in result.stdout + result.stderr


def test_the_thin_route_imports_only_the_standard_library(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    """`-X importtime` lists every module the process imported: none of SQLAlchemy, pydantic,
    Typer, rich, nor our warehouse, analytics or settings."""
    _, service = served
    code = "from cdmetrics.entry import main; main()"
    args = [*CASES["deny-json"], "--service-url", service]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        cwd=tmp_path,
        env={**clean_environ(), **TOKEN},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and json.loads(result.stdout)["decision"] == "deny"
    modules = {
        line.rpartition("|")[2].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert {"urllib.request", "cdmetrics.gate_client", "cdmetrics.gate_output"} <= modules
    heavy = ("sqlalchemy", "pydantic", "pydantic_settings", "typer", "click", "rich", "httpx")
    ours = ("analytics", "warehouse", "config", "collectors", "service", "dashboard", "reports")
    loaded = {m for m in modules if m.split(".")[0] in heavy + ours}
    assert not loaded and "cdmetrics.cli_gate" not in modules


def test_the_thin_output_knows_the_gates_policies() -> None:
    """The JUnit order the thin client spells out is analytics.gate's."""
    assert gate_output.GATE_POLICIES == GATE_POLICIES
