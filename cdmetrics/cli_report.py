"""CLI command of the weekly report: `cdmetrics report weekly`. `register(app)` adds the `report`
group to the main Typer app (cdmetrics/cli.py calls it). Wiring only: the report is
`reports.model.build_report`, its formats `reports.render`, the chat post `reports.post`."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import OperationalError

from analytics.rules import FailureRules
from config.settings import Settings
from reports.week import ReportError, last_complete_week, parse_week
from warehouse.engine import normalise_url, open_warehouse

err = Console(stderr=True)
report_app = typer.Typer(
    help="Reports for people: the weekly delivery report.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _webhook(post: str | None, post_env: str | None) -> str | None:
    """The webhook URL from `--post` or the variable `--post-env` names (never printed)."""
    if post and post_env:
        raise typer.BadParameter("give --post or --post-env, not both", param_hint="--post")
    if post_env:
        url = os.environ.get(post_env)
        if not url:
            raise _fail(f"--post-env {post_env}: the variable is not set or empty")
        return url
    return post


@report_app.command("weekly")
def weekly(
    ctx: typer.Context,
    week: str | None = typer.Option(None, help="ISO week, e.g. 2026-W47 (default: the last complete week)."),
    team: list[str] | None = typer.Option(None, help="Only these teams (repeatable)."),
    service: list[str] | None = typer.Option(None, help="Only these services (repeatable)."),
    output_format: str = typer.Option("html", "--format", help="html, md, xlsx, pdf or json."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="File to write (default: weekly-<week>[-scope].<format>; - for stdout)."
    ),
    post: str | None = typer.Option(
        None, "--post", help="Incoming-webhook URL (Slack, Mattermost) to post the Markdown summary to."
    ),
    post_env: str | None = typer.Option(
        None, "--post-env", help="Variable holding that webhook URL (keeps it out of shell history)."
    ),
) -> None:  # fmt: skip
    """Write the weekly delivery report as HTML, Markdown, XLSX, PDF or JSON; optionally post it to chat."""
    from reports.markdown import summary
    from reports.model import build_report, missed_targets
    from reports.post import PostError, post_markdown
    from reports.render import FORMATS, default_filename, render

    if output_format not in FORMATS:
        raise typer.BadParameter(f"use {', '.join(FORMATS)}", param_hint="--format")
    settings: Settings = ctx.find_root().obj.settings()
    zone = settings.sync.timezone
    try:
        chosen = parse_week(week, zone) if week else last_complete_week(datetime.now(UTC), zone)
    except ReportError as exc:
        raise typer.BadParameter(str(exc), param_hint="--week") from None
    webhook = _webhook(post, post_env)
    url = normalise_url(settings.warehouse.url)
    try:
        engine = open_warehouse(url, **settings.warehouse.timeouts())
    except OperationalError as exc:
        raise _fail(
            f"cannot open the warehouse {url.render_as_string(hide_password=True)}: "
            f"{str(exc.orig).strip().splitlines()[0]}; check [warehouse] url"
        ) from None
    rules = FailureRules.from_settings(settings)
    try:
        report = build_report(
            engine,
            chosen,
            tuple(team or ()),
            tuple(service or ()),
            rules,
            targets=settings.targets.for_teams(tuple(team or ())),
        )
    except ReportError as exc:
        raise _fail(str(exc)) from None
    content = render(report, output_format)
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
    else:
        target = output or Path(default_filename(report, output_format))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        err.print(f"wrote {escape(str(target))} ({report.title})", highlight=False)
    if webhook:
        try:
            post_markdown(webhook, summary(report))
        except PostError as exc:
            raise _fail(str(exc), 1) from None
        missed = [f"{r['label']} (target {r['target']})" for r in missed_targets(report)]
        err.print(
            "posted the summary to the webhook"
            + (f"; missed targets: {', '.join(missed)}" if missed else ""),
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add the `report` command group to `app`."""
    app.add_typer(report_app, name="report")
