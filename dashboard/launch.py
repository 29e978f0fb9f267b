"""Start the dashboard: `streamlit run` on the installed `streamlit_app.py`, in a child process,
until it stops or Ctrl-C.

The child reads its settings like every command: the config file and the warehouse URL reach it
as CDMETRICS_CONFIG and CDMETRICS_WAREHOUSE__URL. It listens on 127.0.0.1 unless told otherwise;
Streamlit's own output goes to stderr, keeping stdout for the command's results.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dashboard

log = logging.getLogger(__name__)
APP = Path(dashboard.__file__).parent / "streamlit_app.py"
STOP_TIMEOUT_S = 10


def command(host: str, port: int) -> list[str]:
    """The `streamlit run` command line for the dashboard."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",  # no "Deploy" button: this is a tool, not a Streamlit app in development
    ]


def environment(warehouse_url: str, config: Path | None) -> dict[str, str]:
    """The child's environment: ours, plus the warehouse URL and the config path."""
    env = dict(os.environ, CDMETRICS_WAREHOUSE__URL=warehouse_url)
    if config is not None:
        env["CDMETRICS_CONFIG"] = str(config.resolve())
    return env


def start(
    warehouse_url: str, config: Path | None = None, host: str = "127.0.0.1", port: int = 8501
) -> subprocess.Popen[bytes]:
    """The dashboard's server process, started (it answers a few seconds later)."""
    return subprocess.Popen(
        command(host, port), env=environment(warehouse_url, config), stdout=sys.stderr
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    """Stop the server (politely, then firmly); its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def serve(
    warehouse_url: str,
    config: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8501,
    announce: Callable[[str], None] = print,
) -> int:
    """Run the dashboard until it stops or Ctrl-C; announce its URL first. Returns the exit
    code (0 after Ctrl-C)."""
    process = start(warehouse_url, config, host, port)
    announce(f"dashboard: http://{host}:{port} (Ctrl-C stops it)")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a terminated parent stops its child
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop(process)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
