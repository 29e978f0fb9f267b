"""Log redaction (config/redaction.py): URLs with secrets masked, installed explicitly at start-up
by each entry point, never by importing a module."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import urllib3

from collectors.http import PolicySession, PolicyTransport, RateLimiter, RequestCounter, RetryPolicy
from config.redaction import RedactingFilter, install_log_redaction, redact_text, redact_url
from sandbox.server import Router, SimulatorApp, SimulatorServer

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-T0KEN"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://robot:{SECRET}@git.example.com/g/p.git", "https://***@git.example.com/g/p.git"),
        (
            f"https://blobs.test/layer?X-Amz-Signature={SECRET}&part=1",
            "https://blobs.test/layer?X-Amz-Signature=***&part=1",
        ),
        (f"http://h:8080/api/v4/projects?private_token={SECRET}", None),
        ("https://plain.example.com/a/b?page=2", "https://plain.example.com/a/b?page=2"),
    ],
)
def test_redact_url_masks_user_info_and_secret_query_values(url: str, shown: str | None) -> None:
    redacted = redact_url(url)
    assert SECRET not in redacted
    if shown is not None:
        assert redacted == shown


def test_redact_url_without_the_path_keeps_scheme_and_host_only() -> None:
    url = f"https://user:pw@hooks.example.com:8443/services/{SECRET}?t=1"
    assert redact_url(url, path=False) == "https://hooks.example.com:8443/***"


def test_redact_text_masks_every_url_and_request_target_and_leaves_the_rest() -> None:
    text = (
        f"GET https://reg.test/v2/?token={SECRET} then "
        f'http://127.0.0.1:80 "GET /api/v4/projects?private_token={SECRET}&page=2 HTTP/1.1" 200'
        " and https://plain.test/a?b=c%20d"
    )
    redacted = redact_text(text)
    assert SECRET not in redacted
    assert "token=***" in redacted and "private_token=***&page=2" in redacted
    assert "https://plain.test/a?b=c%20d" in redacted  # nothing secret: left as it was
    assert redact_text(f"hook at https://h.test/services/{SECRET}", {SECRET: "***"}) == (
        "hook at https://h.test/services/***"
    )


def test_importing_the_modules_installs_nothing() -> None:
    code = (
        "import logging\n"
        "factory = logging.getLogRecordFactory()\n"
        "import config.redaction, collectors.http, collectors.registry, collectors.gitlab\n"
        "import collectors.jenkins, collectors.kubernetes, reports.post, service.server\n"
        "import cdmetrics.cli\n"
        "assert logging.getLogRecordFactory() is factory\n"
        "for name in ('httpx', 'httpcore', 'urllib3'):\n"
        "    assert not logging.getLogger(name).filters, name\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_the_cli_installs_it_at_start_up(tmp_path: Path) -> None:
    code = (
        "import logging, sys\n"
        "from typer.testing import CliRunner\n"
        "from cdmetrics.cli import app\n"
        f"result = CliRunner().invoke(app, ['-w', 'sqlite:///{tmp_path / 'w.db'}', 'db', 'current'])\n"
        f"logging.getLogger('httpx').warning('HTTP Request: GET %s', "
        f"'https://reg.test/v2/?token={SECRET}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "reg.test/v2/?token=***" in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.fixture
def server() -> Iterator[str]:
    router = Router()
    router.add("/v2/", lambda request: {"ok": True})
    router.add("/api/v4/projects", lambda request: [])
    with SimulatorServer(SimulatorApp(router)) as running:
        yield running.url


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """Every log line of every logger (debug and up), as a handler would write it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_token_in_a_url_logged_by_a_collector_never_reaches_the_log_output(
    server: str, output: io.StringIO
) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    policy = RetryPolicy(0)
    # httpx (the registry collector's client) logs each request line with its full URL
    transport = PolicyTransport(RateLimiter(0), RequestCounter(), policy)
    with httpx.Client(transport=transport) as client:
        assert client.get(f"{server}/v2/?token={SECRET}&n=1").status_code == 200
    # requests over urllib3 (python-gitlab, python-jenkins) log the request target at DEBUG
    session = PolicySession(RateLimiter(0), RequestCounter(), 5, policy)
    assert session.get(f"{server}/api/v4/projects?private_token={SECRET}").status_code == 200
    with urllib3.PoolManager() as pool:
        assert pool.request("GET", f"{server}/v2/?access_token={SECRET}").status == 200
    # and a collector's own messages, whether the URL is an argument or part of the text
    log = logging.getLogger("collectors.registry")
    log.warning("cannot read %s", f"{server.replace('://', f'://robot:{SECRET}@')}/v2/")
    log.warning(f"retrying {server}/v2/?signature={SECRET}")
    try:
        requests.get(f"http://127.0.0.1:9/x?password={SECRET}", timeout=1)
    except requests.ConnectionError as exc:
        log.exception("unreachable: %s", exc)
    text = output.getvalue()
    assert "HTTP Request: GET" in text and "token=***&n=1" in text
    assert "private_token=***" in text and "robot" not in text
    assert SECRET not in text


def test_a_redacting_filter_masks_the_secrets_it_is_given() -> None:
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "HTTP Request: POST %s",
        (f"https://h.test/{SECRET}",),
        None,
    )
    RedactingFilter({f"https://h.test/{SECRET}": "https://h.test/***"}).filter(record)
    assert record.getMessage() == "HTTP Request: POST https://h.test/***"
