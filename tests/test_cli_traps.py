"""No traps in the CLI (issue #16): every mistake exits 2 with a message naming the object and
what to do, never a traceback, and nothing is created by a mistake. Run as a user runs it: the
installed console script in a scratch folder, on one tiny demo warehouse shared by the module."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.test_cli import run


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `demo.db`, made by `cdmetrics demo` with `--warehouse` after the
    subcommand."""
    folder = tmp_path_factory.mktemp("traps")
    result = run(folder, "demo", "--size", "tiny", "--headless", "--warehouse", "sqlite:///demo.db")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["derive"]["drift_rows"] > 0 and summary["violations"] > 0
    return folder


def stopped(result: object, *words: str) -> str:
    """The one-line form of stderr of a command that must have exited 2 naming `words`."""
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    message = " ".join(result.stderr.split())  # type: ignore[attr-defined]
    assert "Traceback" not in message
    for word in words:
        assert word in message, (word, message)
    return message


def test_demo_records_drift_and_violations_for_the_pages(demo_folder: Path) -> None:
    with sqlite3.connect(demo_folder / "demo.db") as conn:
        snapshots = conn.execute("select count(*) from drift_snapshot").fetchone()[0]
        violations = conn.execute("select count(*) from policy_violation").fetchone()[0]
    assert snapshots > 0 and violations > 0


def known_service(folder: Path) -> str:
    with sqlite3.connect(folder / "demo.db") as conn:
        return str(conn.execute("select name from service order by name").fetchone()[0])


@pytest.mark.parametrize(
    "command",
    [
        ("metrics", "--service"),
        ("drift", "--service"),
        ("report", "weekly", "-o", "-", "--service"),
        ("gate", "--image", "r@sha256:" + "0" * 64, "--to", "production", "--service"),
    ],
)
def test_a_misspelt_service_names_the_closest_known_one(
    demo_folder: Path, command: tuple[str, ...]
) -> None:
    service = known_service(demo_folder)
    typo = service[:-1] + ("x" if service[-1] != "x" else "y")
    result = run(demo_folder, "--warehouse", "sqlite:///demo.db", *command, typo)
    stopped(result, f"no service named {typo}", f"closest to {typo}: {service}")


def test_unknown_team_and_environment_are_named(demo_folder: Path) -> None:
    team = run(demo_folder, "metrics", "--team", "nobody-at-all", "-w", "sqlite:///demo.db")
    stopped(team, "no team named nobody-at-all", "known:")
    env = run(demo_folder, "metrics", "--env", "prodution", "-w", "sqlite:///demo.db")
    stopped(env, "no environment named prodution", "closest to prodution: production")


def test_a_reversed_period_names_both_dates(demo_folder: Path) -> None:
    for command in (("metrics",), ("policy", "scan")):
        result = run(
            demo_folder,
            *command,
            "--since",
            "2026-03-01",
            "--until",
            "2026-02-01",
            "--warehouse",
            "sqlite:///demo.db",
        )
        stopped(result, "2026-03-01", "2026-02-01", "reversed")


@pytest.mark.parametrize(
    "command",
    [("metrics",), ("drift",), ("policy", "scan"), ("db", "current"), ("report", "weekly")],
)
def test_without_config_or_warehouse_nothing_is_created(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = run(tmp_path, *command)
    stopped(result, "no configuration file cdmetrics.toml", "cdmetrics init", "cdmetrics demo")
    assert list(tmp_path.iterdir()) == []


def test_config_check_without_a_file_is_an_error(tmp_path: Path) -> None:
    stopped(run(tmp_path, "config", "check"), "cdmetrics.toml", "cdmetrics init")


def test_a_warehouse_in_a_missing_folder_is_an_error_not_a_folder(tmp_path: Path) -> None:
    for command in (("metrics",), ("init",), ("demo", "--headless", "--size", "tiny")):
        result = run(tmp_path, *command, "--warehouse", "sqlite:///no/such/w.db")
        stopped(result, "--warehouse sqlite:///no/such/w.db", "does not exist")
    assert not (tmp_path / "no").exists() and not (tmp_path / "cdmetrics.toml").exists()


def test_flags_show_no_placeholder_in_help(tmp_path: Path) -> None:
    for command in (("demo",), ("gate",), ("sync",)):
        result = run(tmp_path, *command, "--help")
        assert result.returncode == 0 and "<bool>" not in result.stdout, result.stdout
    assert "--headless " in run(tmp_path, "demo", "--help").stdout


@pytest.mark.parametrize(
    "command",
    [("metrics", "--by", "team"), ("metrics", "--by", "service"), ("drift",), ("policy", "scan")],
)
def test_tables_fit_80_columns_without_breaking_names(
    demo_folder: Path, command: tuple[str, ...]
) -> None:
    period = () if command == ("drift",) else ("--since", "2000-01-01")
    result = run(demo_folder, *command, *period, "-w", "sqlite:///demo.db", env={"COLUMNS": "80"})
    assert result.returncode in (0, 1), result.stderr  # policy scan exits 1 on errors
    lines = result.stdout.splitlines()
    assert lines and max(len(line.rstrip()) for line in lines) <= 80, result.stdout
    if command[0] != "metrics" or command[-1] == "service":
        assert known_service(demo_folder) in result.stdout  # not folded across lines


def test_policy_scan_opens_with_counts_per_policy_and_severity(demo_folder: Path) -> None:
    result = run(demo_folder, "policy", "scan", "--since", "2000-01-01", "-w", "sqlite:///demo.db")
    rows = json.loads(
        run(
            demo_folder, "policy", "scan", "--since", "2000-01-01", "--format", "json",
            "-w", "sqlite:///demo.db",
        ).stdout
    )  # fmt: skip
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r["policy"], r["severity"])] = counts.get((r["policy"], r["severity"]), 0) + 1
    text = result.stdout
    first_listed = min(text.index(r["message"][:30]) for r in rows)
    for (policy, severity), n in counts.items():
        line = next(x for x in text.splitlines() if x.split()[:2] == [policy, severity])
        assert line.split()[-1] == str(n) and text.index(line) < first_listed
