"""The dashboard in a real browser: `cdmetrics dashboard` on a free port over the demo warehouse,
headless Chromium (Debian's `chromium`, driven by Playwright; `playwright install` is never
called) opens every page, waits until its Plotly charts have drawn their SVG, finds no Streamlit
exception, and saves a screenshot of each under artifacts/screenshots/ (a CI artifact).

Skips, saying why, when chromium or Playwright is missing, unless CDMETRICS_REQUIRE_BROWSER=1
(set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo_warehouse import PERIOD

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CDMETRICS = shutil.which("cdmetrics", path=str(Path(sys.executable).parent)) or "cdmetrics"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# url path -> (title, Plotly charts the page draws on the demo warehouse with findings)
PAGES = {
    "": ("Overview", 1),
    "lead_time": ("Lead time for changes", 4),
    "deployments": ("Deployments", 3),
    "failures": ("Failures and recovery", 2),
    "builds": ("Builds", 4),
    "environments": ("Environments and drift", 3),
    "policies": ("Policies", 1),
    "data_sources": ("Data sources", 1),
}
CHARTS_DRAWN = """n => {
    const charts = [...document.querySelectorAll('.js-plotly-plot')];
    return charts.length >= n && charts.every(c =>
        c.querySelector('svg.main-svg') && c.querySelector('.trace, .hm, image'));
}"""


def chromium() -> str:
    """The chromium binary, or skip (fail when CDMETRICS_REQUIRE_BROWSER=1) saying why."""
    binary = shutil.which("chromium")
    reason = None
    if binary is None:
        reason = "no `chromium` on PATH (Debian: apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is not installed (pip install -e '.[dev]')"
    if reason is None:
        assert binary is not None
        return binary
    if os.environ.get("CDMETRICS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; CDMETRICS_REQUIRE_BROWSER=1 makes this a failure")
    pytest.skip(f"{reason}; the browser test needs both")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the dashboard exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the dashboard did not answer at {url} within {timeout} s")


@pytest.fixture
def dashboard_url(tmp_path: Path, findings_url: str) -> Iterator[str]:
    """`cdmetrics dashboard` on a free port over the demo warehouse with drift and violations."""
    chromium()
    url = findings_url
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMETRICS_")}
    process = subprocess.Popen(
        [CDMETRICS, "--warehouse", url, "dashboard", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_every_page_draws_in_chromium(dashboard_url: str) -> None:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    query = "&".join(f"period={day}" for day in PERIOD)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 2400})
        for number, (path, (title, charts)) in enumerate(PAGES.items(), start=1):
            page.goto(f"{dashboard_url}/{path}?{query}", wait_until="domcontentloaded")
            page.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)
            page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
            page.wait_for_function(CHARTS_DRAWN, arg=charts, timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0, title
            page.wait_for_timeout(300)  # let the charts' transitions settle before the picture
            name = path or "overview"
            page.screenshot(path=SCREENSHOTS / f"{number:02d}-{name}.png", full_page=True)
        browser.close()
