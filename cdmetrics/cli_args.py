"""The command line's shape before any command is imported: the global options (accepted on
either side of the subcommand) and which subcommand the arguments name. Standard library only:
cdmetrics/entry.py reads it to dispatch `cdmetrics gate` (docs/POLICIES.md, the gate's process
time), and the thin gate client (cdmetrics/gate_client.py) runs on it without Typer.
"""

from __future__ import annotations

GLOBAL_OPTIONS = ("--warehouse", "-w", "--config", "-c")
GLOBAL_FLAGS = ("--verbose", "-v", "-vv")  # no subcommand has an option of these names


def hoist_global_options(args: list[str]) -> list[str]:
    """`args` with `--warehouse`/`--config` (and their values) and `-v`/`--verbose` moved before
    the subcommand, so they work on either side of it (`cdmetrics demo --warehouse X -v`); `--`
    ends the search."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in GLOBAL_OPTIONS and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        global_option = arg in GLOBAL_FLAGS or arg.startswith(("--warehouse=", "--config="))
        (front if global_option else rest).append(arg)
        i += 1
    return front + rest


def subcommand(args: list[str]) -> str | None:
    """The subcommand `args` name: the first argument that is not a global option or its value
    (None when there is none, or when `--` comes first)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in GLOBAL_OPTIONS and i + 1 < len(args):
            i += 2
        elif arg in GLOBAL_FLAGS or arg.startswith(("--warehouse=", "--config=")):
            i += 1
        else:
            return None if arg == "--" else arg
    return None
