"""The `cdmetrics` console script. `cdmetrics gate` runs in a CI pipeline step on every
promotion, so it is dispatched before the full command line is imported. When a service URL is
known it is a thin client of the running service (cdmetrics/gate_client.py: the standard library
and one HTTP request); otherwise the gate loads its own command and what the decision needs
(settings, the warehouse, the policies), not the metrics, reports, service, sandbox and derive the
other commands import (docs/POLICIES.md, the gate's process time).
"""

from __future__ import annotations

import sys


def main() -> None:
    from cdmetrics.cli_args import subcommand

    if subcommand(sys.argv[1:]) == "gate":
        from cdmetrics.gate_client import main as ask_service

        code = ask_service(sys.argv[1:])
        if code is not None:
            sys.exit(code)
        from cdmetrics.cli_gate import main as run_command  # reads the warehouse
    else:
        from cdmetrics.cli import main as run_command  # every other command: the full CLI
    run_command()
