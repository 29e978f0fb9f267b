"""Documentation stays true: the config reference is current and every CLI command is documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from cdmetrics.cli import app
from config.settings import config_reference

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current() -> None:
    assert (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8") == config_reference(), (
        "docs/CONFIG.md is out of date: run `make docs`"
    )


def commands(group: Any, prefix: str = "cdmetrics") -> list[tuple[str, str]]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            found.extend(commands(command, path))
        else:
            found.append((path, (command.help or "").strip().splitlines()[0]))
    return found


def test_every_command_is_in_the_readme_with_its_help() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = commands(typer.main.get_command(app))
    assert listed
    for path, help_line in listed:
        assert f"`{path}" in readme, f"{path} is missing from README.md"
        assert help_line.rstrip(".").lower() in readme.lower(), f"help of {path} not in README.md"
