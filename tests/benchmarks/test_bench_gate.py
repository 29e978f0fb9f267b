"""`cdmetrics gate` as a CI pipeline step runs it: one process per decision, so its time is the
interpreter's start, the imports and the decision (2-3 ms). Prints, best of 5, the wall and CPU
time of the console script's routes: the thin client asking a running service (cdmetrics/
gate_client.py: the standard library and one POST /api/v1/gate, the service started here on the
same warehouse), the direct route reading the warehouse (cdmetrics/entry.py: `gate` dispatched
before the full CLI is imported), the full CLI's; then the floors: an interpreter importing only
the libraries a decision cannot do without (the thin client: urllib, json; reading the warehouse:
SQLAlchemy's ORM, which maps the schema, and pydantic-settings, which reads the configuration), and
the service's answer alone (one POST from this process). The CPU is the client process's; the
service's work shows in the wall time. Bytecode is written on the first run, as an installed
package has it. Asserts only that every route decides alike; never wall time.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.service_helpers import WRITE, running_service
from tests.test_gate_cli import REPO, warehouse
from warehouse.engine import make_engine

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[2]
ENTRY = "from cdmetrics.entry import main; main()"
ROUTES = {
    "direct, console script (cdmetrics/entry.py)": ENTRY,
    "direct, full CLI (cdmetrics/cli.py)": "from cdmetrics.cli import main; main()",
}
FLOORS = {
    "interpreter alone": "pass",
    "import urllib.request, json (the thin client's libraries)": "import urllib.request, json",
    "import sqlalchemy": "import sqlalchemy",
    "import sqlalchemy.orm, pydantic_settings, typer, rich": (
        "import sqlalchemy.orm, pydantic_settings, typer, rich.console"
    ),
    "import the gate's modules (cli_gate, its settings, schema, policies)": (
        "import cdmetrics.cli_gate, warehouse.engine, warehouse.migrate"
    ),
}


def timed(
    code: str, args: list[str], cwd: Path, extra: dict[str, str] | None = None
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(best wall s, best CPU s of the child, the last run) over 5 runs of `python -c code args`
    (with the variables `extra`)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("CDMETRICS_")
    }
    env.update(extra or {})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    walls, cpus = [], []
    for _ in range(6):  # the first run writes bytecode and is not counted
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls[1:]), min(cpus[1:]), result


def one_post(url: str, body: bytes) -> float:
    """Seconds of one POST /api/v1/gate from this process (the service's answer alone)."""
    request = urllib.request.Request(
        url + "/api/v1/gate",
        data=body,
        headers={**WRITE, "Content-Type": "application/json"},
        method="POST",
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
    except urllib.error.HTTPError as exc:  # a denial is 200; anything else fails below
        raise AssertionError(f"the service answered {exc.code}") from None
    return time.perf_counter() - start


def test_gate_process_time(tmp_path: Path) -> None:
    url = warehouse(tmp_path)
    decision = [
        *("gate", "--service", "shop", "--to", "production"),
        *("--image", f"{REPO}@sha256:c", "--ref", "feature/x", "--format", "json"),
    ]
    args = ["--warehouse", url, *decision]
    print("\n`cdmetrics gate` as a process (a denial, JSON), best of 5:")
    outputs = {}
    engine = make_engine(url)
    with running_service(engine) as service:
        thin = [*decision, "--service-url", service.url]
        token = {"CDMETRICS_WRITE_TOKEN": WRITE["Authorization"].removeprefix("Bearer ")}
        wall, cpu, result = timed(ENTRY, thin, tmp_path, token)
        outputs["thin"] = (result.returncode, result.stdout)
        print(f"  thin client, asking the service (cdmetrics/gate_client.py): {wall:.3f} s wall, "
              f"{cpu:.3f} s CPU")  # fmt: skip
        body = json.dumps(
            {"service": "shop", "image": f"{REPO}@sha256:c", "to": "production", "ref": "feature/x"}
        ).encode()
        answer = min(one_post(service.url, body) for _ in range(6))
    engine.dispose()
    for name, code in ROUTES.items():
        wall, cpu, result = timed(code, args, tmp_path)
        outputs[name] = (result.returncode, result.stdout)
        print(f"  {name}: {wall:.3f} s wall, {cpu:.3f} s CPU")
    print("the floors, best of 5:")
    print(f"  the service's answer alone (one POST from this process): {answer:.3f} s wall")
    for name, code in FLOORS.items():
        wall, cpu, _ = timed(code, [], tmp_path)
        print(f"  {name}: {wall:.3f} s wall, {cpu:.3f} s CPU")
    (code, stdout), *others = outputs.values()
    assert code == 1 and '"decision": "deny"' in stdout
    assert all(other == (code, stdout) for other in others)
