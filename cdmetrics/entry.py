"""The `cdmetrics` console script. `cdmetrics gate` runs in a CI pipeline step on every
promotion, so it is dispatched before the full command line is imported: the gate loads its own
command and what the decision needs (settings, the warehouse, the policies), not the metrics,
reports, service, sandbox and derive the other commands import (docs/OPERATIONS.md).
"""

from __future__ import annotations

import sys


def main() -> None:
    from cdmetrics.cli_args import subcommand

    if subcommand(sys.argv[1:]) == "gate":
        from cdmetrics.cli_gate import main as run_command
    else:
        from cdmetrics.cli import main as run_command  # every other command: the full CLI
    run_command()
