"""CLI commands of the HTTP service and event imports: `cdmetrics serve`, `cdmetrics import
cdevents`. `register(app)` adds them to the main Typer app (cdmetrics/cli.py calls it)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from config.settings import Settings
from warehouse.engine import normalise_url, open_warehouse

err = Console(stderr=True)
out = Console()
log = logging.getLogger("cdmetrics")
_REGISTERED = "_cdmetrics_service_commands"


def _settings(ctx: typer.Context) -> Settings:
    """The settings of the main app's global options (`--config`, `--warehouse`)."""
    return ctx.find_root().obj.settings()  # type: ignore[no-any-return]


def _open(settings: Settings) -> Engine:
    """The warehouse at head; exit 2 naming the URL when it cannot be opened."""
    url = normalise_url(settings.warehouse.url)
    try:
        return open_warehouse(url, **settings.warehouse.timeouts())
    except OperationalError as exc:
        err.print(
            f"[bold red]error:[/] cannot open the warehouse "
            f"{escape(url.render_as_string(hide_password=True))}: "
            f"{escape(str(exc.orig).strip().splitlines()[0])}; check [warehouse] url and that "
            "the database is running",
            highlight=False,
        )
        raise typer.Exit(2) from None


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (default: this machine only)."),
    port: int = typer.Option(8080, help="Port to listen on."),
    max_body_mb: float = typer.Option(10.0, help="Largest request body accepted, in MiB."),
    derive_interval: float = typer.Option(5.0, help="Seconds between derives while events arrive."),
    window_days: int = typer.Option(30, help="Days covered by the DORA gauges of GET /metrics."),
) -> None:  # fmt: skip
    """Serve the HTTP API (events in, metrics and gate decisions out) until interrupted."""
    from datetime import timedelta

    from service.app import create_app
    from service.server import is_loopback
    from service.server import serve as run
    from service.state import MiB, ServiceOptions

    settings = _settings(ctx)
    engine = _open(settings)
    options = ServiceOptions(
        max_body_bytes=int(max_body_mb * MiB),
        derive_interval_s=derive_interval,
        metrics_window=timedelta(days=window_days),
    )
    app = create_app(settings, engine, options)
    secrets = app.state.service.secrets
    open_scopes = [s.name for s in (secrets.read, secrets.write, secrets.gitlab) if s.open]
    if open_scopes and not is_loopback(host):
        err.print(
            f"[yellow]warning:[/] listening on {escape(host)} with no credential for: "
            f"{', '.join(open_scopes)} (their *_env keys are empty)",
            highlight=False,
        )
    err.print(f"cdmetrics service on http://{host}:{port} (API description: /docs)")
    run(app, host, port)


def import_cdevents(
    ctx: typer.Context,
    file: str = typer.Argument(..., help="A JSON or JSON Lines file of CDEvents; - reads stdin."),
) -> None:
    """Import CDEvents from a JSON or JSON Lines file (- reads stdin); the last line is a JSON summary."""
    from analytics.derive import derive
    from analytics.rules import FailureRules
    from collectors.cdevents import import_events, read_events

    settings = _settings(ctx)
    text = _read(file)
    engine = _open(settings)
    summary = import_events(engine, read_events(text), settings=settings)
    for rejection in summary.rejected:
        err.print(
            f"[red]rejected[/] #{rejection.position} (line, or item of an array): "
            f"{escape(rejection.reason)}",
            highlight=False,
            soft_wrap=True,
        )
    result: dict[str, Any] = summary.as_json()
    if summary.changed_metrics:
        pattern = settings.metrics.tag_revision_pattern
        derived = derive(
            engine,
            FailureRules.from_settings(settings),
            tag_revision_pattern=pattern,
            image_repositories=settings.image_repositories(),
            timezone=settings.sync.timezone,
        )
        result["derive"] = derived.as_json()
    out.print_json(data=result, indent=None)
    if summary.rejected:
        raise typer.Exit(1)


def _read(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    path = Path(file)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        err.print(
            f"[bold red]error:[/] cannot read {escape(file)}: {exc.strerror}", highlight=False
        )
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Add `serve` and the `import` group to `app` (once; a second call does nothing)."""
    if getattr(app, _REGISTERED, False):
        return
    setattr(app, _REGISTERED, True)
    app.command("serve")(serve)
    import_app = typer.Typer(
        help="Import events from files.", no_args_is_help=True, rich_markup_mode=None
    )
    import_app.command("cdevents")(import_cdevents)
    app.add_typer(import_app, name="import")


__all__ = ["register"]
