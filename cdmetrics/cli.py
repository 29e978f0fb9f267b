"""The `cdmetrics` command line. It wires the layers together and holds no domain logic."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from datetime import datetime
from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from analytics import drift as drift_analytics
from analytics import policies as policy_analytics
from analytics import views
from analytics.derive import derive
from analytics.metrics import SLICES, metrics
from analytics.rules import FailureRules
from analytics.scope import PeriodError, Scope, UnknownName
from cdmetrics.cli_gate import register as register_gate_command
from cdmetrics.cli_globals import Globals, check_warehouse_flag, new_app, run
from cdmetrics.cli_globals import cannot_open as _cannot_open
from cdmetrics.cli_globals import global_options as _main  # noqa: F401  (tests build apps on it)
from cdmetrics.cli_globals import open_settings_warehouse as _open
from cdmetrics.cli_report import register as register_report_commands
from cdmetrics.cli_service import register as register_service_commands
from cdmetrics.render import render_drift, render_metrics, render_violations
from config.settings import DEFAULT_CONFIG, ConfigError, Settings, check_secrets, load_settings
from warehouse.engine import normalise_url
from warehouse.migrate import current_revision, head_revision, upgrade

app = new_app(
    "Delivery metrics and branch-policy analytics over GitLab, Jenkins, registries and Kubernetes."
)
db_app = typer.Typer(help="Warehouse maintenance.", no_args_is_help=True, rich_markup_mode=None)
config_app = typer.Typer(
    help="Inspect the configuration.", no_args_is_help=True, rich_markup_mode=None
)
policy_app = typer.Typer(
    help="Policy checks over the warehouse.", no_args_is_help=True, rich_markup_mode=None
)
sandbox_app = typer.Typer(
    help="A generated organisation and its API simulators.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(policy_app, name="policy")
register_service_commands(app)
register_report_commands(app)
register_gate_command(app)

err = Console(stderr=True)
out = Console()
log = logging.getLogger("cdmetrics")


def _globals(ctx: typer.Context) -> Globals:
    return ctx.find_root().obj  # type: ignore[no-any-return]


SINCE_HELP = (
    "Start (date or ISO timestamp; default: Monday of the week 12 whole weeks before --until's)."
)
UNTIL_HELP = "End, exclusive (default: tomorrow 00:00 in [sync] timezone)."


@app.command()
def init(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config file."),
) -> None:
    """Write an example cdmetrics.toml (commented) and create the warehouse it names."""
    g = _globals(ctx)
    check_warehouse_flag(g.warehouse)
    path = g.config or DEFAULT_CONFIG
    example = resources.files("cdmetrics").joinpath("example.toml").read_text(encoding="utf-8")
    if path.exists() and not force:
        out.print(f"{path} exists; keeping it (use --force to overwrite)")
    else:
        load_settings(None, g.warehouse)  # fail on bad CDMETRICS_* variables before writing
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(example, encoding="utf-8")
        out.print(f"wrote {path}")
    settings = load_settings(path, g.warehouse)
    engine = _open(settings)
    out.print(
        f"warehouse {engine.url.render_as_string(hide_password=True)} at revision "
        f"{current_revision(engine)}"
    )


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Bring the warehouse schema to the newest migration (does nothing when it is there)."""
    settings = _globals(ctx).settings()
    url = normalise_url(settings.warehouse.url)
    from warehouse.engine import make_engine

    engine = make_engine(url, **settings.warehouse.timeouts())
    try:
        before, after = upgrade(engine)
    except OperationalError as exc:
        raise _cannot_open(url, exc) from None
    if before == after:
        out.print(f"warehouse already at head ({after})")
    else:
        out.print(f"warehouse upgraded from {before or 'empty'} to {after}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the warehouse's migration revision and the newest one (opening it upgrades it)."""
    settings = _globals(ctx).settings()
    engine = _open(settings)
    out.print(f"revision {current_revision(engine)} (head {head_revision()})")


@db_app.command("prune-raw")
def db_prune_raw(
    ctx: typer.Context,
    days: int | None = typer.Option(
        None, min=1, help="Keep bodies this many days (default: [warehouse] raw_retention_days)."
    ),
    vacuum: bool = typer.Option(
        False, "--vacuum", help="Then VACUUM an SQLite file to return the freed space to the disk."
    ),
) -> None:
    """Drop the bodies of accepted raw payloads older than the retention; --vacuum compacts SQLite.

    Rows, hashes and rejected payloads stay. --vacuum alone returns the space freed by an upgrade
    to compressed payloads (migration 0022) to the file system."""
    from warehouse.raw import prune_raw

    settings = _globals(ctx).settings()
    engine = _open(settings)
    keep = days or settings.warehouse.raw_retention_days
    if keep is None and not vacuum:
        raise ConfigError(
            "no retention to apply: set [warehouse] raw_retention_days or pass --days N "
            "(or --vacuum alone to compact the file)"
        )
    result: dict[str, object] = {"pruned": prune_raw(engine, keep) if keep else 0, "days": keep}
    if vacuum and engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        before = path.stat().st_size
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # into the file, in WAL mode
        result |= {"bytes_before": before, "bytes_after": path.stat().st_size}
    out.print_json(data=result, indent=None)


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate the configuration and that every secret variable it names is set."""
    g = _globals(ctx)
    settings = load_settings(g.config, g.warehouse)
    if not settings.path.exists():
        raise ConfigError(
            f"{settings.path}: no such configuration file, so there is nothing to check; create "
            "one with `cdmetrics init`, or name one with --config FILE"
        )
    check_secrets(settings)
    sources = settings.all_sources()
    out.print(f"{settings.path}: ok; {len(sources)} source(s)")
    for source in sources:
        out.print(f"  {type(source).__name__.removesuffix('Source').lower():<10} {source.name}")


@app.command()
def sync(
    ctx: typer.Context,
    sources: list[str] | None = typer.Argument(None, help="Source names (default: every source)."),
    full: bool = typer.Option(False, "--full", help="Ignore cursors and re-read everything."),
) -> None:
    """Run the collectors (with progress bars); the last line printed is a JSON summary."""
    settings = _globals(ctx).settings()
    known = {s.name for s in settings.all_sources()}
    unknown = sorted(set(sources or []) - known)
    if unknown:
        raise ConfigError(
            f"{settings.path}: no source named {', '.join(unknown)}; "
            f"configured: {', '.join(sorted(known)) or 'none'}"
        )
    if not known:
        raise ConfigError(
            f"{settings.path}: no sources configured; add a [[sources.gitlab]] table (cdmetrics init)"
        )
    check_secrets(settings)
    engine = _open(settings)
    from collectors.run import derive_once, run_sync

    summaries = run_sync(settings, engine, sources, full=full, console=err)
    for summary in summaries:
        for error in summary.errors:
            err.print(f"[red]error:[/] {escape(error)}", highlight=False)
    derived = derive_once(
        engine, [s.name for s in summaries], lambda: derive_all(engine, settings, full=full), full
    )
    if "skipped" in derived:
        err.print(f"derive skipped: {derived['skipped']}", highlight=False)
    result = {"sources": {s.name: s.as_json() for s in summaries}, "derive": derived}
    out.print_json(data=result, indent=None)
    if not all(s.ok for s in summaries):
        raise typer.Exit(1)


def derive_all(engine: Engine, settings: Settings, full: bool = False) -> dict[str, object]:
    """Derived tables, then today's drift snapshot; the summary as JSON."""
    derived = derive(
        engine,
        FailureRules.from_settings(settings),
        full=full,
        tag_revision_pattern=settings.metrics.tag_revision_pattern,
        image_repositories=settings.image_repositories(),
        timezone=settings.sync.timezone,
    )
    snapshot_rows = drift_analytics.record(engine, settings.environments.promotion_path)
    return {**derived.as_json(), "drift_rows": snapshot_rows}


def record_violations(
    engine: Engine,
    settings: Settings,
    since: datetime,
    until: datetime,
    only: list[str] | None = None,
) -> list[dict[str, object]]:
    """Evaluate the policies (`only` these, default all) over [since, until), record the
    violations in the warehouse and return them as JSON rows."""
    with engine.begin() as conn:
        found = policy_analytics.scan(
            conn, since, until, settings.environments.promotion_path, settings.policies, only=only
        )
        found = policy_analytics.store(conn, found)
    return [v.as_json() for v in found]


@app.command("derive")
def derive_command(
    ctx: typer.Context,
    full: bool = typer.Option(False, "--full", help="Rebuild every derived table from scratch."),
) -> None:
    """Bring the derived tables (deployment changes, failures) up to date; prints a JSON summary."""
    settings = _globals(ctx).settings()
    engine = _open(settings)
    out.print_json(data=derive_all(engine, settings, full=full), indent=None)


def _scope(
    since: str | None,
    until: str | None,
    zone: str,
    teams: list[str] | None = None,
    services: list[str] | None = None,
    environment: str | None = None,
) -> Scope:
    """The scope of --since/--until, --team, --service and --env (`Scope.parse`, the default
    period for what is not given); a bad period is a usage error (exit 2) naming the values."""
    try:
        return Scope.parse(since, until, teams or (), services or (), environment, zone)
    except PeriodError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since/--until") from None


@app.command("drift")
def drift_command(
    ctx: typer.Context,
    service: list[str] | None = typer.Option(None, help="Only these services (repeatable)."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
) -> None:
    """Image drift between adjacent environments of the promotion path, per service."""
    settings = _globals(ctx).settings()
    if output_format not in ("table", "json", "csv"):
        raise typer.BadParameter("use table, json or csv", param_hint="--format")
    engine = _open(settings)
    with engine.connect() as conn:
        views.check_names(conn, services=service or ())
        rows = drift_analytics.drift(
            conn, settings.environments.promotion_path, services=service or None
        )
    render_drift(drift_analytics.as_json(rows), output_format, out)


@policy_app.command("scan")
def policy_scan(
    ctx: typer.Context,
    since: str | None = typer.Option(None, help=SINCE_HELP),
    until: str | None = typer.Option(None, help=UNTIL_HELP),
    policy: list[str] | None = typer.Option(None, help="Only these policies (repeatable)."),
    output_format: str = typer.Option("table", "--format", help="table, json, junit or sarif."),
    fail_on: str = typer.Option(
        "error", "--fail-on", help="Exit 1 on violations of: error, warn or never."
    ),
) -> None:
    """Evaluate every policy over a period, record the violations, and report them."""
    if output_format not in ("table", "json", "junit", "sarif"):
        raise typer.BadParameter("use table, json, junit or sarif", param_hint="--format")
    if fail_on not in ("error", "warn", "never"):
        raise typer.BadParameter("use error, warn or never", param_hint="--fail-on")
    settings = _globals(ctx).settings()
    unknown = sorted(set(policy or []) - set(policy_analytics.POLICIES))
    if unknown:
        raise typer.BadParameter(f"unknown policy {', '.join(unknown)}", param_hint="--policy")
    period = _scope(since, until, settings.sync.timezone)
    rows = record_violations(_open(settings), settings, period.since, period.until, only=policy)
    render_violations(rows, output_format, out, sorted(policy or policy_analytics.POLICIES))
    failing = {"error": ("error",), "warn": ("error", "warn"), "never": ()}[fail_on]
    if any(r["severity"] in failing for r in rows):
        raise typer.Exit(1)


@app.command("metrics")
def metrics_command(
    ctx: typer.Context,
    since: str | None = typer.Option(None, help=SINCE_HELP),
    until: str | None = typer.Option(None, help=UNTIL_HELP),
    team: list[str] | None = typer.Option(None, help="Only these teams (repeatable)."),
    service: list[str] | None = typer.Option(None, help="Only these services (repeatable)."),
    env: str | None = typer.Option(
        None, help="Canonical environment (default: every production-tier one)."
    ),
    by: str | None = typer.Option(None, help="Slice by week, month, team or service."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
) -> None:
    """Delivery metrics (DORA and build health) over a period and scope."""
    settings = _globals(ctx).settings()
    if by is not None and by not in SLICES:
        raise typer.BadParameter(f"use one of {', '.join(SLICES)}", param_hint="--by")
    if output_format not in ("table", "json", "csv"):
        raise typer.BadParameter("use table, json or csv", param_hint="--format")
    scope = _scope(since, until, settings.sync.timezone, team, service, env)
    engine = _open(settings)
    with engine.connect() as conn:
        views.check_names(
            conn,
            scope.teams,
            scope.services,
            [env] if env else [],
            settings.environments.promotion_path,
        )
        result = metrics(conn, scope, by=by, rules=FailureRules.from_settings(settings))
    render_metrics(result, output_format, out)


@sandbox_app.command("generate")
def sandbox_generate(
    size: str = typer.Option("small", help="small | demo | large"),
    seed: int = typer.Option(1, help="Random seed: the same seed gives the same organisation."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write the ground truth JSON here."
    ),
) -> None:
    """Generate an organisation and print (or write) its ground truth as JSON."""
    from sandbox.generate import generate
    from sandbox.truth import summary

    truth = summary(generate(seed, size))
    if output:
        output.write_text(json.dumps(truth, indent=2), encoding="utf-8")
        out.print(f"wrote {output}: {truth['counts']}")
    else:
        out.print_json(data=truth)


@sandbox_app.command("serve")
def sandbox_serve(
    size: str = typer.Option("demo", help="small | demo | large"),
    seed: int = typer.Option(1, help="Random seed."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8929, help="Port of the GitLab simulator (0: any free port)."),
    token: str = typer.Option("sandbox-token", help="The token the simulators accept."),
) -> None:
    """Serve the organisation through every API simulator until interrupted.

    GitLab, Jenkins, Harbor and OCI registries, Kubernetes, SonarQube, Jira, Zentao, PagerDuty;
    prints how to sync them."""
    from sandbox.serve import Sandbox

    with (
        Sandbox.start(
            size=size,
            seed=seed,
            host=host,
            port=port,
            token=token,
            kubernetes=True,
            sonarqube=True,
            trackers=True,
        ) as sandbox,
        tempfile.TemporaryDirectory() as tmp,
    ):
        kubeconfig = sandbox.write_kubeconfig(Path(tmp) / "kubeconfig")
        out.print(
            f"{sandbox.describe()}{sandbox.kubernetes_config(kubeconfig)}",
            highlight=False,
            markup=False,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            out.print("stopped")


@app.command()
def dashboard(
    ctx: typer.Context,
    port: int = typer.Option(8501, help="Port to listen on."),
    host: str = typer.Option(
        "127.0.0.1", help="Interface to listen on (default: this machine only)."
    ),
) -> None:
    """Open the dashboard (Streamlit) on the warehouse; it runs until Ctrl-C."""
    from dashboard.launch import serve

    g = _globals(ctx)
    settings = g.settings()
    _open(settings).dispose()  # fail now, with exit 2, on a warehouse that cannot be opened
    raise typer.Exit(serve(settings.warehouse.url, g.config, host, port, announce=err.print))


@app.command()
def demo(
    ctx: typer.Context,
    size: str = typer.Option("demo", help="Sandbox size: small | demo | large."),
    seed: int = typer.Option(1, help="Random seed of the generated organisation."),
    headless: bool = typer.Option(
        False, "--headless", help="Sync and summarise only (no dashboard)."
    ),
    port: int = typer.Option(8501, help="Port of the dashboard."),
    svn: bool = typer.Option(
        False, "--svn", help="Also a Subversion repository (svnserve) that Jenkins builds."
    ),
) -> None:
    """Sandbox -> real collectors over HTTP -> warehouse -> metrics; the last line is a JSON summary."""
    from sandbox.serve import Sandbox

    g = _globals(ctx)
    check_warehouse_flag(g.warehouse)
    url = g.warehouse or "sqlite:///cdmetrics-demo.db"
    with (
        Sandbox.start(size, seed=seed, kubernetes=True, svn=svn, trackers=True) as sandbox,
        tempfile.TemporaryDirectory() as tmp,
    ):
        sources, environ = sandbox.sources(Path(tmp) / "kubeconfig")
        os.environ.update(environ)
        settings = Settings(
            warehouse={"url": url}, sources=sources, sync={"requests_per_second": 0}
        )
        err.print(sandbox.describe().splitlines()[0])
        engine = _open(settings)
        from collectors.run import run_sync

        summaries = run_sync(settings, engine, console=err)
        derived = derive_all(engine, settings)  # with today's drift snapshot
        scope = Scope.default(settings.sync.timezone)  # what the dashboard opens on
        violations = record_violations(engine, settings, scope.since, scope.until)
        with engine.connect() as conn:
            figures = metrics(conn, scope, rules=FailureRules.from_settings(settings))
    render_metrics(figures, "table", err)
    err.print(
        f"{derived['drift_rows']} drift row(s) and {len(violations)} policy violation(s) recorded"
    )
    err.print(f"warehouse: {url}; explore it with `cdmetrics metrics --by team --warehouse {url}`")
    result = {
        "sources": {s.name: s.as_json() for s in summaries},
        "derive": derived,
        "violations": len(violations),
    }
    out.print_json(data=result, indent=None)
    if not all(s.ok for s in summaries):
        raise typer.Exit(1)
    if not headless:
        from dashboard.launch import serve

        raise typer.Exit(serve(url, None, "127.0.0.1", port, announce=err.print))


def main() -> None:
    """Console-script entry of the full CLI (cdmetrics/entry.py runs `gate` without it)."""
    run(app, (UnknownName,))
