"""`cdmetrics gate` as a CI pipeline step runs it: one process per decision, so its time is the
interpreter's start, the imports and the decision (2-3 ms). Prints, best of 5, the wall and CPU
time of the console script's route (cdmetrics/entry.py: `gate` dispatched before the full CLI is
imported) beside the full CLI's, and the floor: an interpreter importing only the libraries the
decision cannot do without (SQLAlchemy's ORM, which maps the warehouse schema, and
pydantic-settings, which reads the configuration). Bytecode is written on the first run, as an
installed package has it. Asserts only that both routes decide alike; never wall time.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_gate_cli import REPO, warehouse

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[2]
ROUTES = {
    "console script (cdmetrics/entry.py)": "from cdmetrics.entry import main; main()",
    "full CLI (cdmetrics/cli.py)": "from cdmetrics.cli import main; main()",
}
FLOORS = {
    "interpreter alone": "pass",
    "import sqlalchemy": "import sqlalchemy",
    "import sqlalchemy.orm, pydantic_settings, typer, rich": (
        "import sqlalchemy.orm, pydantic_settings, typer, rich.console"
    ),
    "import the gate's modules (cli_gate, its settings, schema, policies)": (
        "import cdmetrics.cli_gate, warehouse.engine, warehouse.migrate"
    ),
}


def timed(
    code: str, args: list[str], cwd: Path
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(best wall s, best CPU s of the child, the last run) over 5 runs of `python -c code args`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
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


def test_gate_process_time(tmp_path: Path) -> None:
    url = warehouse(tmp_path)
    args = [
        *("--warehouse", url, "gate", "--service", "shop", "--to", "production"),
        *("--image", f"{REPO}@sha256:c", "--ref", "feature/x", "--format", "json"),
    ]
    print("\n`cdmetrics gate` as a process (a denial, JSON), best of 5:")
    outputs = {}
    for name, code in ROUTES.items():
        wall, cpu, result = timed(code, args, tmp_path)
        outputs[name] = (result.returncode, result.stdout)
        print(f"  {name}: {wall:.3f} s wall, {cpu:.3f} s CPU")
    print("the floor, best of 5:")
    for name, code in FLOORS.items():
        wall, cpu, _ = timed(code, [], tmp_path)
        print(f"  {name}: {wall:.3f} s wall, {cpu:.3f} s CPU")
    (code, stdout), *others = outputs.values()
    assert code == 1 and '"decision": "deny"' in stdout
    assert all(other == (code, stdout) for other in others)
