"""The dashboard in a real browser: `cdmetrics dashboard` on a free port over the demo warehouse,
headless Chromium (Debian's `chromium`, driven by Playwright; `playwright install` is never
called) opens every page, waits until its Plotly charts have drawn their SVG, finds no Streamlit
exception, and saves a screenshot of each under artifacts/screenshots/ (a CI artifact).

The lead's walk (issue #16) runs on what `cdmetrics demo` itself stores: every page, drift and
violations shown, a tile followed to the Deployments list, a chart bar to the Changes list and a
Builds bar to the Pipelines list with the filters kept in the URL; its screenshots go to a
temporary folder (path printed) and artifacts/screenshots/lead-walk/.

Skips, saying why, when chromium or Playwright is missing, unless CDMETRICS_REQUIRE_BROWSER=1
(set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from analytics.views import filter_options
from tests.demo_warehouse import PERIOD
from warehouse.engine import open_warehouse

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


def serve_dashboard(url: str, folder: Path) -> Iterator[str]:
    """`cdmetrics dashboard` on a free port over the warehouse `url`; yields its address."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMETRICS_")}
    process = subprocess.Popen(
        [CDMETRICS, "--warehouse", url, "dashboard", "--port", str(port)],
        cwd=folder,
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


@pytest.fixture
def dashboard_url(tmp_path: Path, findings_url: str) -> Iterator[str]:
    """`cdmetrics dashboard` on a free port over the demo warehouse with drift and violations."""
    chromium()
    yield from serve_dashboard(findings_url, tmp_path)


@pytest.fixture(scope="module")
def demo_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(dashboard address, warehouse URL) of `cdmetrics demo --headless --size small` served by
    `cdmetrics dashboard`."""
    chromium()
    folder = tmp_path_factory.mktemp("lead-walk")
    url = f"sqlite:///{folder / 'demo.db'}"
    demo = [CDMETRICS, "--warehouse", url, "demo", "--headless", "--size", "small"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMETRICS_")}
    ran = subprocess.run(demo, cwd=folder, env=env, capture_output=True, timeout=600)
    assert ran.returncode == 0, ran.stderr.decode()[-2000:]
    for address in serve_dashboard(url, folder):
        yield address, url


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


def settled(page: Any, title: str) -> None:
    """Wait until the page titled `title` finished running, and check it raised nothing."""
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
    assert page.locator('[data-testid="stException"]').count() == 0, title


def test_the_lead_walks_from_figures_to_the_rows_behind_them(
    demo_dashboard: tuple[str, str], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    address, url = demo_dashboard
    kept = SCREENSHOTS / "lead-walk"
    kept.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {tmp_path} and {kept}")

    def picture(name: str) -> None:
        for folder in (tmp_path, kept):
            page.screenshot(path=folder / f"{name}.png", full_page=True)

    engine = open_warehouse(url)
    with engine.connect() as conn:
        team = filter_options(conn)["teams"][0]
    engine.dispose()
    pages = {
        **PAGES,
        "deployments_list": ("Deployments list", 0),
        "changes_list": ("Changes list", 0),
        "pipelines_list": ("Pipelines list", 0),
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 2400})
        for number, (path, (title, charts)) in enumerate(pages.items(), start=1):
            page.goto(f"{address}/{path}", wait_until="domcontentloaded")
            settled(page, title)
            page.wait_for_function(CHARTS_DRAWN, arg=min(charts, 1), timeout=60_000)
            picture(f"{number:02d}-{path or 'overview'}")
            if path == "environments":
                assert page.locator(".st-key-drift .js-plotly-plot").count() == 1
            if path == "policies":
                assert page.locator(".st-key-violations [data-testid='stDataFrame']").count() == 1

        # a tile to the Deployments list, the team filter kept
        page.goto(f"{address}/?team={team}", wait_until="domcontentloaded")
        settled(page, "Overview")
        page.get_by_role("link", name="The deployments").first.click()
        settled(page, "Deployments list")
        assert f"team={team}" in page.url and "status=success" in page.url, page.url
        assert page.locator(".st-key-deployments-list [data-testid='stDataFrame']").count() == 1
        picture("20-tile-to-deployments-list")

        # a bar of the lead-time distribution to the Changes list, the team filter kept
        page.goto(f"{address}/lead_time?team={team}", wait_until="domcontentloaded")
        settled(page, "Lead time for changes")
        click_tallest(page, ".st-key-histogram .js-plotly-plot g.point path")
        settled(page, "Changes list")
        assert f"team={team}" in page.url and "min_hours=" in page.url, page.url
        assert page.locator(".st-key-changes-list [data-testid='stDataFrame']").count() == 1
        picture("21-bar-to-changes-list")

        # a week's bar of failed pipelines to the Pipelines list, the team filter kept
        page.goto(f"{address}/builds?team={team}", wait_until="domcontentloaded")
        settled(page, "Builds")
        click_tallest(page, ".st-key-failure-rate .js-plotly-plot g.bars g.point path")
        settled(page, "Pipelines list")
        assert f"team={team}" in page.url and "status=failed" in page.url, page.url
        assert re.search(r"bucket=\d{4}-W\d{2}(&|$)", page.url), page.url
        assert page.locator(".st-key-pipelines-list [data-testid='stDataFrame']").count() == 1
        picture("23-builds-bar-to-pipelines-list")

        # the month view: the tiles compare months, a month's bar opens that month's deployments
        page.goto(f"{address}/?team={team}", wait_until="domcontentloaded")
        settled(page, "Overview")
        page.locator("[data-testid='stSidebar'] button", has_text="month").click()
        page.get_by_text("per month").first.wait_for(timeout=60_000)
        settled(page, "Overview")
        assert "by=month" in page.url, page.url
        today = datetime.now(UTC).date()  # the demo's time zone is UTC
        month = today.year * 12 + today.month - 1 - 5
        six_months = f"{month // 12}-{month % 12 + 1:02d}-01 → {today}"
        assert page.locator("[data-testid='stSidebar']").get_by_text(six_months).count() == 1
        click_tallest(page, ".st-key-trend-month .js-plotly-plot g.bars g.point path")
        settled(page, "Deployments list")
        assert re.search(r"bucket=\d{4}-\d{2}(&|$)", page.url) and "by=month" in page.url, page.url
        picture("22-month-bar-to-deployments-list")
        browser.close()


def click_tallest(page: Any, bars: str) -> None:
    """Click the tallest bar matching the selector `bars`, once drawn, near its foot (a rate
    line drawn over the bars may cross its middle)."""
    found = page.locator(bars)
    found.first.wait_for(state="attached", timeout=60_000)
    page.wait_for_timeout(300)  # the bars grow into place
    heights = [found.nth(i).bounding_box()["height"] for i in range(found.count())]
    box = found.nth(heights.index(max(heights))).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.9)
