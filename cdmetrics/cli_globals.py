"""What every `cdmetrics` command shares, kept light enough for `cdmetrics gate` in a pipeline
step: the global options (`--warehouse`, `--config`, `-v`, accepted on either side of the
subcommand), the root callback that stores them (`Globals`), opening the warehouse with the errors
a user can act on, and the console-script error handling (`run`).

cdmetrics/cli.py builds the full command line on these; cdmetrics/entry.py runs `gate` on them
alone, without importing the rest of the CLI (docs/OPERATIONS.md, the gate's process time).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from cdmetrics.cli_args import hoist_global_options
from config.settings import ConfigError, Settings, load_settings
from warehouse.engine import WarehouseURLError, normalise_url

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL
    from sqlalchemy.exc import DBAPIError

WAREHOUSE_URL_VARIABLE = "CDMETRICS_WAREHOUSE__URL"
# what SQLite says when another process writes or migrates the same file at the same moment
SQLITE_BUSY_WORDS = ("locked", "busy", "already exists")

err = Console(stderr=True)


class CannotDecide(Exception):
    """The command cannot run (warehouse unreachable, ...): exit 2 with the reason."""


class GlobalOptionsAnywhere(TyperGroup):
    """The main command group, taking its global options after a subcommand as well."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Typer's vendored Context
        return super().parse_args(ctx, hoist_global_options(args))


@dataclass
class Globals:
    config: Path | None
    warehouse: str | None

    def settings(self) -> Settings:
        """The settings of a command that opens the warehouse; raises ConfigError rather than
        create an empty `cdmetrics.db` nobody asked for (no config file, no `--warehouse`, no
        CDMETRICS_WAREHOUSE__URL) or a folder a mistyped `--warehouse` names."""
        check_warehouse_flag(self.warehouse)
        settings = load_settings(self.config, self.warehouse)
        if not (self.warehouse or settings.path.exists() or WAREHOUSE_URL_VARIABLE in os.environ):
            default = normalise_url(settings.warehouse.url).database or ""
            if not Path(default).exists():
                raise ConfigError(
                    f"no configuration file {settings.path} here and no --warehouse, so there is "
                    f"no warehouse to read (not creating an empty {default}); start with "
                    "`cdmetrics init` (writes cdmetrics.toml and its warehouse) or `cdmetrics "
                    "demo` (a generated organisation), or name one with --config FILE or "
                    "--warehouse URL"
                )
        return settings

    def open(self, settings: Settings) -> Engine:
        """The warehouse of `settings` at head; raises CannotDecide when it cannot be opened."""
        return open_settings_warehouse(settings)


def check_warehouse_flag(url: str | None) -> None:
    """Raise ConfigError when `--warehouse` names an SQLite file in a folder that does not exist
    (a typo must not create folders); other URLs are checked when opened."""
    if not url:
        return
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().parent
        if not folder.is_dir():
            raise ConfigError(
                f"--warehouse {url}: the folder {folder} does not exist; create it first or "
                "check the path"
            )


def open_settings_warehouse(settings: Settings) -> Engine:
    """The warehouse at head with the configured timeouts; raises CannotDecide, naming the URL,
    when the database cannot be reached or read (unreachable, timed out, not a database)."""
    from sqlalchemy.exc import DBAPIError

    from warehouse.engine import open_warehouse

    url = normalise_url(settings.warehouse.url)
    try:
        return open_warehouse(url, **settings.warehouse.timeouts())
    except DBAPIError as exc:
        raise cannot_open(url, exc) from None


def cannot_open(url: URL, exc: DBAPIError) -> CannotDecide:
    """The error for a warehouse that failed to open: a connection problem names the URL; an
    SQLite file that is busy or was being created by another process at the same moment says so
    (the URL is fine then)."""
    reason = str(exc.orig).strip().splitlines()[0]
    where = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and any(w in reason for w in SQLITE_BUSY_WORDS):
        return CannotDecide(
            f"the SQLite warehouse {where} is in use by another cdmetrics process ({reason}); "
            "SQLite has one writer: run one sync at a time on it, or try again when the other "
            "process ends (several workers at once need PostgreSQL)"
        )
    return CannotDecide(
        f"cannot open the warehouse {where}: {reason}; check [warehouse] url and that the "
        "database is running"
    )


def global_options(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Config file (default ./cdmetrics.toml or $CDMETRICS_CONFIG)."
    ),
    warehouse: str | None = typer.Option(
        None,
        "--warehouse",
        "-w",
        help="Warehouse URL, overriding the url in the config's warehouse section.",
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output (-vv: debug)."
    ),
) -> None:
    # the root callback (no docstring: the app's help is the main help): logging at the
    # verbosity asked for, and the global options in `ctx.obj`, a Globals
    from rich.logging import RichHandler

    from config.redaction import install_log_redaction

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=err, show_path=False)]
    )
    install_log_redaction()
    ctx.obj = Globals(config, warehouse)


def new_app(help: str) -> typer.Typer:
    """The root Typer app with the global options (cdmetrics/cli.py's, and the gate's alone)."""
    app = typer.Typer(
        cls=GlobalOptionsAnywhere,
        help=help,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain help: no `<bool>` after flags, fits 80 columns
    )
    app.callback()(global_options)
    return app


def run(app: Callable[[], Any], known: tuple[type[Exception], ...] = ()) -> None:
    """Console-script entry: run `app`, turning the errors cdmetrics names (config, warehouse URL,
    cannot open, newer warehouse, and `known`) into a message and exit code 2."""
    from warehouse.migrate import NewerWarehouseError

    named: tuple[type[Exception], ...] = (
        ConfigError,
        WarehouseURLError,
        CannotDecide,
        NewerWarehouseError,
        *known,
    )
    try:
        app()
    except named as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
