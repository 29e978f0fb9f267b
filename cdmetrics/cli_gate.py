"""CLI command of the promotion gate: `cdmetrics gate`. `register(app)` adds it to the main
Typer app (cdmetrics/cli.py calls it); `main` runs it alone (cdmetrics/entry.py). The decision is
`analytics.gate.evaluate`; its output `cdmetrics.render.render_gate`.

The contract (docs/POLICIES.md): exit 0 allow, 1 deny, 2 cannot decide, for *every* failure; the
requested output is written in all three cases; `--fail-open` turns exactly the third into 0.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from analytics import gate as gate_analytics
from cdmetrics import gate_client, gate_output
from cdmetrics.cli_globals import CannotDecide, new_app, run
from cdmetrics.render import render_gate
from config.settings import ConfigError, Settings
from warehouse.engine import WarehouseURLError
from warehouse.migrate import NewerWarehouseError

err = Console(stderr=True)
out = Console()
log = logging.getLogger("cdmetrics")


def gate(
    ctx: typer.Context,
    service: str = typer.Option(..., help="The service being promoted."),
    image: str = typer.Option(..., help="Image reference: repo@sha256:... (best) or repo:tag."),
    to: str = typer.Option(..., "--to", help="Target environment (canonical name)."),
    ref: str | None = typer.Option(None, help="Git ref being released (checks non-release-ref)."),
    output_format: str = typer.Option("text", "--format", help="text, json or junit."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write the decision to this file instead of stdout."
    ),
    fail_open: bool = typer.Option(False, "--fail-open", help="Allow when the gate cannot decide."),
    service_url: str | None = typer.Option(
        None,
        "--service-url",
        help="Ask the running `cdmetrics serve` at this URL instead of reading the warehouse "
        "(default $CDMETRICS_SERVICE__URL or [service] url; --warehouse reads the warehouse).",
    ),
    token_env: str | None = typer.Option(
        None,
        "--token-env",
        help="Variable holding the service's write token (default [service] write_token_env, "
        "CDMETRICS_WRITE_TOKEN).",
    ),
    timeout: float = typer.Option(
        gate_client.DEFAULT_TIMEOUT_S, "--timeout", help="Seconds to wait for the service."
    ),
) -> None:
    """Refuse a promotion that breaks policy: exit 0 allow, 1 deny, 2 cannot decide.

    Every failure (unknown service, unreadable config, unreachable or locked warehouse or service,
    ...) is "cannot decide": the decision `error` is still written, and `--fail-open` turns it
    into exit 0. With a service URL the gate asks the service (POST /api/v1/gate) and imports
    nothing else: a pipeline step's answer in a fraction of the time.
    """
    if output_format not in gate_output.FORMATS:
        raise typer.BadParameter("use text, json or junit", param_hint="--format")
    if not timeout > 0:
        raise typer.BadParameter("seconds, more than 0", param_hint="--timeout")
    remote = _remote(ctx, service_url, token_env, timeout)
    if remote is not None:  # the thin client's route (cdmetrics/entry.py takes it before Typer)
        code = gate_client.decide(remote, service, image, to, ref, output_format, output, fail_open)
        raise typer.Exit(code)
    try:
        decision = _decide(ctx, service, image, to, ref)
    except Exception as exc:  # the contract: any failure at all is "cannot decide"
        log.debug("gate cannot decide", exc_info=exc)
        message = cannot_decide_message(exc)
        decision = gate_analytics.error_decision(service, image, to, message).as_json()
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    try:
        _write_gate(decision, output_format, output, ref is not None)
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot write {output}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    if decision["decision"] == "error":
        if fail_open:
            err.print("gate cannot decide; allowing because of --fail-open (exit 0)")
            raise typer.Exit(0)
        raise typer.Exit(2)
    raise typer.Exit(0 if decision["decision"] == "allow" else 1)


def _remote(
    ctx: typer.Context, service_url: str | None, token_env: str | None, timeout: float
) -> gate_client.Remote | None:
    """Where to ask when a service URL is known (gate_client.configured_url) and `--warehouse`
    does not name the warehouse instead; None: read the warehouse."""
    warehouse = ctx.find_root().obj.warehouse
    if service_url and warehouse:
        raise typer.BadParameter(
            "give --warehouse (read it) or --service-url (ask the service), not both",
            param_hint="--service-url",
        )
    if warehouse:
        return None
    return gate_client.remote(service_url, token_env, timeout, ctx.find_root().obj.config)


KNOWN_FAILURES = (
    CannotDecide,
    gate_analytics.CannotDecide,
    ConfigError,
    WarehouseURLError,
    NewerWarehouseError,
)


def cannot_decide_message(exc: BaseException) -> str:
    """What to tell the user about `exc`: its own text for the failures cdmetrics names, the
    database's first line for a database error, else the exception's type and first line."""
    if isinstance(exc, KNOWN_FAILURES):
        return str(exc)
    if isinstance(exc, DBAPIError):
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig)
        return f"the warehouse failed: {first}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"unexpected error {type(exc).__name__}: {first}".rstrip(": ")


def _decide(
    ctx: typer.Context, service: str, image: str, to: str, ref: str | None
) -> dict[str, Any]:
    """The gate decision as JSON; raises whatever keeps it from deciding."""
    g = ctx.find_root().obj  # cdmetrics.cli_globals.Globals
    settings: Settings = g.settings()
    engine: Engine = g.open(settings)
    try:
        with engine.connect() as conn:
            return gate_analytics.evaluate(
                conn,
                service,
                image,
                to,
                settings.environments.promotion_path,
                ref=ref,
                policy=settings.policies,
            ).as_json()
    finally:
        engine.dispose()


def _write_gate(decision: dict[str, Any], output_format: str, path: Path | None, ref: bool) -> None:
    """Render the decision to stdout, or to `path` when given (its folder is created)."""
    if path is None:
        render_gate(decision, output_format, out, ref)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as file:
        render_gate(decision, output_format, Console(file=file, width=200), ref)


def register(app: typer.Typer) -> None:
    """Add `gate` to the main app, whose context object opens the warehouse (`Globals.open`)."""
    app.command()(gate)


def main() -> None:
    """`cdmetrics gate` alone (cdmetrics/entry.py): the global options and this one command, so a
    pipeline step's gate imports what the decision needs and not the whole CLI. The command is
    the same function with the same options, so its exit codes and output are the full CLI's."""
    app = new_app("The promotion gate of cdmetrics.")
    register(app)
    run(app)


__all__ = ["CannotDecide", "cannot_decide_message", "main", "register"]
