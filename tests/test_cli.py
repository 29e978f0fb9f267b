"""The CLI as a user runs it: the installed `cdmetrics` console script in a scratch folder."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse.migrate import head_revision

CDMETRICS = shutil.which("cdmetrics", path=str(Path(sys.executable).parent)) or "cdmetrics"


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDMETRICS_")}
    return subprocess.run(
        [CDMETRICS, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def revision(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("select version_num from alembic_version").fetchone()[0])


def test_init_creates_config_and_warehouse_at_head(tmp_path: Path) -> None:
    result = run(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cdmetrics.toml").read_text().startswith("# cdmetrics configuration")
    assert revision(tmp_path / "cdmetrics.db") == head_revision()
    again = run(tmp_path, "init")
    assert again.returncode == 0 and "keeping it" in again.stdout


def test_db_upgrade_twice_changes_nothing(tmp_path: Path) -> None:
    first = run(tmp_path, "--warehouse", "sqlite:///w.db", "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert f"upgraded from empty to {head_revision()}" in first.stdout
    before = (tmp_path / "w.db").read_bytes()
    second = run(tmp_path, "--warehouse", "sqlite:///w.db", "db", "upgrade")
    assert second.returncode == 0 and "already at head" in second.stdout
    assert (tmp_path / "w.db").read_bytes() == before


def test_db_prune_raw_drops_old_bodies_and_vacuums(tmp_path: Path) -> None:
    """`db prune-raw` needs a retention (config or --days); it drops old accepted bodies and,
    with --vacuum, gives the space back to the file system."""
    from datetime import UTC, datetime, timedelta

    from warehouse.dimensions import ensure_source
    from warehouse.engine import open_warehouse
    from warehouse.raw import Raw, store_raw

    engine = open_warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        source_id = ensure_source(conn, "gitlab", "gitlab")
        big = [
            Raw("pipelines", str(i), {"i": i, "log": os.urandom(2000).hex()}) for i in range(300)
        ]
        store_raw(conn, source_id, big, fetched_at=datetime.now(UTC) - timedelta(days=10))
    engine.dispose()
    none = run(tmp_path, "--warehouse", "sqlite:///w.db", "db", "prune-raw")
    assert none.returncode == 2 and "raw_retention_days" in none.stderr
    pruned = run(
        tmp_path, "--warehouse", "sqlite:///w.db", "db", "prune-raw", "--days", "7", "--vacuum"
    )
    assert pruned.returncode == 0, pruned.stderr
    result = json.loads(pruned.stdout)
    assert result["pruned"] == 300 and result["bytes_after"] < result["bytes_before"] / 2


def test_global_options_work_after_the_subcommand(tmp_path: Path) -> None:
    """`-v` and `--warehouse` after the subcommand act as they do before it."""
    quiet = run(tmp_path, "db", "upgrade", "--warehouse", "sqlite:///quiet.db")
    assert quiet.returncode == 0, quiet.stderr
    assert "upgrading warehouse" not in quiet.stderr
    told = run(tmp_path, "db", "upgrade", "--warehouse", "sqlite:///told.db", "-v")
    assert told.returncode == 0, told.stderr
    assert "upgrading warehouse from empty" in told.stderr
    assert (tmp_path / "told.db").exists()


@pytest.mark.parametrize(
    ("config", "env", "named"),
    [
        ("[warehouse]\nurl = 'sqlite:///w.db'\nnope = 1\n", {}, "key `warehouse.nope`"),
        (
            "[warehouse]\nurl = 'sqlite:///w.db'\n[sync]\nhistory_days = 'x'\n",
            {},
            "key `sync.history_days`",
        ),
        (
            "[warehouse]\nurl = 'sqlite:///w.db'\n[[sources.git]]\nname = 'g'\npath = '.'\n"
            "[[sources.kubernetes]]\nname = 'g'\n",
            {},
            "key `sources.kubernetes[0].name`",
        ),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(
    tmp_path: Path, config: str, env: dict[str, str], named: str
) -> None:
    (tmp_path / "cdmetrics.toml").write_text(config)
    for command in (["db", "upgrade"], ["init"], ["config", "check"]):
        result = run(tmp_path, *command, env=env)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "cdmetrics.toml" in result.stderr and named in result.stderr
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdmetrics.toml"]


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (
            "[policies.non-release-ref]\nallowed_refs = 'release/*'\n",
            "non-release-ref.allowed_refs",
        ),
        ("[policies.untested-image]\nmin_soak_minute = 30\n", "untested-image.min_soak_minute"),
        ("[policies.untested-image]\nmin_soak_minutes = '1h'\n", "untested-image.min_soak_minutes"),
        ("[policies.no-such-policy]\nseverity = 'warn'\n", "policies.no-such-policy"),
        ("[environments]\npromotion_path = []\n", "environments.promotion_path"),
    ],
)
def test_bad_policy_parameters_stop_scan_and_gate_with_exit_2(
    tmp_path: Path, config: str, named: str
) -> None:
    (tmp_path / "cdmetrics.toml").write_text("[warehouse]\nurl = 'sqlite:///w.db'\n" + config)
    gate = ["gate", "--service", "shop", "--image", "r@sha256:1", "--to", "production"]
    for command in (["policy", "scan"], gate):
        result = run(tmp_path, *command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "cdmetrics.toml" in result.stderr and "key `" in result.stderr
        assert named in result.stderr and "Traceback" not in result.stderr


def test_unset_token_variable_exits_2_naming_key(tmp_path: Path) -> None:
    (tmp_path / "cdmetrics.toml").write_text(
        "[warehouse]\nurl = 'sqlite:///w.db'\n"
        "[[sources.gitlab]]\nname = 'gitlab'\nurl = 'http://gitlab.test'\ntoken_env = 'CDM_UNSET_TOKEN'\n"
    )
    result = run(tmp_path, "config", "check")
    assert result.returncode == 2
    assert "key `sources.gitlab[0].token_env`" in result.stderr
    assert "CDM_UNSET_TOKEN is not set" in result.stderr
    assert not (tmp_path / "w.db").exists()
    ok = run(tmp_path, "config", "check", env={"CDM_UNSET_TOKEN": "t0ken"})
    assert ok.returncode == 0, ok.stderr
    assert "t0ken" not in ok.stdout + ok.stderr


def test_unreachable_warehouse_exits_2(tmp_path: Path) -> None:
    result = run(
        tmp_path, "--warehouse", "postgresql://nobody:hunter2@127.0.0.1:1/none", "db", "upgrade"
    )
    assert result.returncode == 2
    assert "cannot open the warehouse" in result.stderr
    assert "hunter2" not in result.stderr  # the password is masked


def test_unsupported_warehouse_url(tmp_path: Path) -> None:
    result = run(tmp_path, "--warehouse", "mysql://x@localhost/db", "db", "upgrade")
    assert result.returncode == 2
    assert "not supported" in result.stderr


def test_sync_derive_and_metrics_against_the_sandbox(tmp_path: Path) -> None:
    from sandbox.serve import Sandbox

    with Sandbox.start("tiny", seed=2, token="t0k") as sandbox:
        (tmp_path / "cdmetrics.toml").write_text(
            "[warehouse]\nurl = 'sqlite:///w.db'\n" + sandbox.config(token_env="CDM_CLI_TOKEN")
        )
        synced = run(tmp_path, "sync", env={"CDM_CLI_TOKEN": "t0k"})
        assert synced.returncode == 0, synced.stderr
        summary = json.loads(synced.stdout.strip().splitlines()[-1])
        assert summary["sources"]["gitlab"]["ok"] and summary["sources"]["gitlab"]["rows"] > 0
        assert summary["derive"]["deployments"] > 0
        assert "t0k" not in synced.stdout + synced.stderr
    until = sandbox.org.now.date().isoformat()
    since = sandbox.org.start.date().isoformat()
    result = run(tmp_path, "metrics", "--since", since, "--until", until, "--format", "json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["deployment_frequency"]["deployments"] > 0
    assert set(figures) >= {
        "scope",
        "lead_time",
        "change_failure_rate",
        "recovery_time",
        "rework_rate",
        "deployment_failure_rate",
        "build",
    }
    weekly = run(
        tmp_path, "metrics", "--since", since, "--until", until, "--by", "week", "--format", "csv"
    )
    assert weekly.returncode == 0 and weekly.stdout.startswith("week,")
    again = run(tmp_path, "derive")
    assert again.returncode == 0 and json.loads(again.stdout)["deployments"] == 0
    bad = run(tmp_path, "metrics", "--by", "fortnight")
    assert bad.returncode == 2 and "--by" in bad.stderr


def test_sync_refuses_an_unknown_source(tmp_path: Path) -> None:
    (tmp_path / "cdmetrics.toml").write_text("[warehouse]\nurl = 'sqlite:///w.db'\n")
    result = run(tmp_path, "sync", "nope")
    assert result.returncode == 2 and "no source named nope" in result.stderr


def test_demo_headless_syncs_the_sandbox_and_prints_metrics(tmp_path: Path) -> None:
    result = run(
        tmp_path, "--warehouse", "sqlite:///demo.db", "demo", "--size", "tiny", "--headless"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sources"]["gitlab"]["ok"] and summary["sources"]["gitlab"]["rows"] > 0
    assert all(summary["sources"][k]["ok"] for k in ("jira", "zentao", "pagerduty"))
    assert "lead time p50" in result.stderr
    figures = run(
        tmp_path,
        "--warehouse",
        "sqlite:///demo.db",
        "metrics",
        "--since",
        "2000-01-01",
        "--format",
        "json",
    )
    assert json.loads(figures.stdout)["deployment_frequency"]["deployments"] > 0


def test_sync_a_plain_git_repository(tmp_path: Path) -> None:
    repo = tmp_path / "legacy"
    env = {
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@x",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@x",
        "HOME": str(tmp_path),
    }
    subprocess.run(
        ["git", "init", "-q", "-b", "main", str(repo)], check=True, env={**os.environ, **env}
    )
    for i in range(3):
        subprocess.run(
            ["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", f"change {i}"],
            check=True,
            env={**os.environ, **env},
        )
    (tmp_path / "cdmetrics.toml").write_text(
        "[warehouse]\nurl = 'sqlite:///w.db'\n"
        f"[[sources.git]]\nname = 'legacy'\npath = '{repo}'\nservice = 'legacy-app'\n"
    )
    result = run(tmp_path, "sync")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])["sources"]["legacy"]
    assert summary["ok"] and summary["rows"] >= 3


def test_a_warehouse_from_a_newer_cdmetrics_exits_2_with_one_message(tmp_path: Path) -> None:
    assert run(tmp_path, "--warehouse", "sqlite:///w.db", "db", "upgrade").returncode == 0
    with sqlite3.connect(tmp_path / "w.db") as conn:
        conn.execute("update alembic_version set version_num = '9999_from_the_future'")
    (tmp_path / "events.json").write_text("[]")
    (tmp_path / "cdmetrics.toml").write_text("[[sources.git]]\nname = 'g'\npath = '.'\n")
    gate = ("gate", "--service", "s", "--image", "r@sha256:" + "0" * 64, "--to", "production")
    for command in (
        ("db", "upgrade"), ("db", "current"), ("sync",), ("derive",), ("drift",), gate,
        ("metrics",), ("policy", "scan"), ("import", "cdevents", "events.json"),
        ("report", "weekly"), ("serve", "--port", "1"), ("dashboard", "--port", "1"),
    ):  # fmt: skip
        result = run(tmp_path, "--warehouse", "sqlite:///w.db", *command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        message = " ".join(result.stderr.split())
        assert (
            "this warehouse is at revision 9999_from_the_future, newer than this cdmetrics"
            in message
            and "upgrade cdmetrics" in message
        ), (command, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
    assert revision(tmp_path / "w.db") == "9999_from_the_future"
