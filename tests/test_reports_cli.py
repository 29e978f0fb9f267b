"""`cdmetrics report weekly` as a user runs it (the installed console script), and `--post` to a
real local HTTP server standing in for a Slack/Mattermost incoming webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from config.redaction import redact_url
from reports.markdown import summary
from reports.model import build_report
from reports.post import PostError, post_markdown
from reports.week import parse_week
from tests.test_cli import run
from tests.test_reports import RULES, fill
from warehouse.engine import make_engine
from warehouse.migrate import upgrade

SECRET = "T000/B000/sEcReT-tOkEn"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report-cli") / "w.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    fill(engine)
    engine.dispose()
    return path


class Webhook:
    """A threaded HTTP server on 127.0.0.1 recording what is posted to it."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(
                    {
                        "path": self.path,
                        "type": self.headers["Content-Type"],
                        "body": json.loads(body),
                    }
                )
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"invalid_token")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{SECRET}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def test_every_format_is_written(db: Path, tmp_path: Path) -> None:
    for output_format in ("html", "md", "json", "xlsx", "pdf"):
        result = run(
            tmp_path, "-w", f"sqlite:///{db}", "report", "weekly", "--week", "2026-W47",
            "--team", "payments", "--format", output_format,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        written = tmp_path / f"weekly-2026-W47-team-payments.{output_format}"
        assert written.stat().st_size > 1000
    data = json.loads((tmp_path / "weekly-2026-W47-team-payments.json").read_text())
    assert data["scope"]["teams"] == ["payments"] and data["week"] == "2026-W47"
    assert (tmp_path / "weekly-2026-W47-team-payments.pdf").read_bytes().startswith(b"%PDF")


def test_stdout_and_the_default_week(db: Path, tmp_path: Path) -> None:
    result = run(
        tmp_path, "-w", f"sqlite:///{db}", "report", "weekly", "--format", "json", "-o", "-"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["report"] == "weekly" and data["week"] == data["trend"][-1]["week"]
    assert data["until"] <= __import__("datetime").datetime.now().astimezone().isoformat()


def test_post_sends_the_markdown_summary_and_never_shows_the_url(
    db: Path, tmp_path: Path, webhook: Webhook
) -> None:
    result = run(
        tmp_path, "-w", f"sqlite:///{db}", "-vv", "report", "weekly", "--week", "2026-W47",
        "--format", "md", "--post-env", "TEAM_WEBHOOK", env={"TEAM_WEBHOOK": webhook.url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(webhook.received) == 1
    message = webhook.received[0]
    assert message["path"] == f"/hooks/{SECRET}" and message["type"] == "application/json"
    engine = make_engine(f"sqlite:///{db}")
    expected = summary(build_report(engine, parse_week("2026-W47"), rules=RULES))
    engine.dispose()
    text = message["body"]["text"]
    headline = expected.split("\n\n")[2]  # title, period, then the headline table
    assert headline.startswith("| Metric |") and headline in text
    assert text.splitlines()[0] == expected.splitlines()[0]
    assert headline in (tmp_path / "weekly-2026-W47.md").read_text()
    assert SECRET not in result.stdout + result.stderr
    assert "sEcReT" not in result.stdout + result.stderr


def test_post_with_the_url_on_the_command_line(db: Path, tmp_path: Path, webhook: Webhook) -> None:
    result = run(
        tmp_path, "-w", f"sqlite:///{db}", "-vv", "report", "weekly", "--week", "2026-W46",
        "--service", "payments-api", "--post", webhook.url, "-o", str(tmp_path / "r.html"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "service payments-api" in webhook.received[0]["body"]["text"]
    assert SECRET not in result.stdout + result.stderr


def test_a_refusing_webhook_is_an_error_without_the_secret(db: Path, tmp_path: Path) -> None:
    hook = Webhook(status=403)
    try:
        result = run(
            tmp_path, "-w", f"sqlite:///{db}", "report", "weekly", "--week", "2026-W47",
            "--post", hook.url,
        )  # fmt: skip
    finally:
        hook.close()
    assert result.returncode == 1
    assert "answered 403" in result.stderr and SECRET not in result.stderr
    assert (tmp_path / "weekly-2026-W47.html").exists()  # the report is written all the same


def test_an_unreachable_webhook_names_only_its_host() -> None:
    with pytest.raises(PostError, match=r"cannot post to http://127\.0\.0\.1:9/\*\*\*") as caught:
        post_markdown(f"http://127.0.0.1:9/hooks/{SECRET}", "hello", timeout=2)
    assert SECRET not in str(caught.value)
    assert redact_url(f"https://user:pw@hooks.example.com/services/{SECRET}?t=1", path=False) == (
        "https://hooks.example.com/***"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--week", "2026-W60"], "2026 has no ISO week 60"),
        (["--week", "last"], "not an ISO week"),
        (["--team", "nobody"], "no team named nobody"),
        (["--service", "ghost"], "no service named ghost"),
        (["--format", "docx"], "use html, md, xlsx, pdf, json"),
        (
            ["--post-env", "UNSET_WEBHOOK_VARIABLE"],
            "UNSET_WEBHOOK_VARIABLE: the variable is not set",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    db: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(tmp_path, "-w", f"sqlite:///{db}", "report", "weekly", *args)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("weekly-*"))


def test_an_empty_warehouse_writes_a_clear_report(tmp_path: Path) -> None:
    result = run(
        tmp_path, "-w", f"sqlite:///{tmp_path / 'empty.db'}", "report", "weekly",
        "--week", "2026-W47", "--format", "md", "-o", "-",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "holds no data yet" in result.stdout
    assert "| Production deployments | 0 | 0 | 0 |" in result.stdout


def test_post_lists_the_missed_targets_of_the_team(
    db: Path, tmp_path: Path, webhook: Webhook
) -> None:
    engine = make_engine(f"sqlite:///{db}")
    report = build_report(engine, parse_week("2026-W47"), ("payments",), rules=RULES)
    engine.dispose()
    figures = {row["key"]: row["value"] for row in report.headline}
    assert figures["lead_time_median"] and figures["deployments"]
    (tmp_path / "cdmetrics.toml").write_text(
        "[[teams]]\nname = 'payments'\n"
        "[targets]\nlead_time_median = '< 1000d'\ndeployments = '>= 1'\n"
        "[targets.teams.payments]\nlead_time_median = '< 1m'\n"  # one minute: missed
    )
    result = run(
        tmp_path, "-w", f"sqlite:///{db}", "report", "weekly", "--week", "2026-W47",
        "--team", "payments", "--format", "md", "--post", webhook.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = webhook.received[0]["body"]["text"]
    missed = text.split("**Missed targets**")[1]
    assert "- Lead time, median:" in missed and "(target < 1m)" in missed
    assert "Production deployments" not in missed  # met (>= 1)
    assert "| Target | Met target |" in text and "| >= 1 | yes |" in text
    assert "missed targets: Lead time, median (target < 1m)" in " ".join(result.stderr.split())
