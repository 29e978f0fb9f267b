"""Alembic, driven from code: no alembic.ini is needed to upgrade a warehouse.

Alembic (and the parsing of every migration script) is imported only when a warehouse is not at
`HEAD`: opening a warehouse at head, as every command but the first does, reads its version row
and nothing else (a CI step's `cdmetrics gate` pays no migration machinery)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from warehouse.locks import lock_migrations, migration_file_lock

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# the newest migration's revision id; tests/test_warehouse.py checks it against the scripts
HEAD = "0031"
log = logging.getLogger(__name__)


def alembic_config(engine: Engine | None = None) -> Config:
    """An alembic Config pointing at our migrations (and at `engine`'s connection when given)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["configure_logger"] = False
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


class NewerWarehouseError(Exception):
    """The warehouse is at a revision this code does not know: a newer cdmetrics migrated it."""


def head_revision() -> str:
    """The newest migration's revision id, read from the scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the warehouse is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _at_head(engine: Engine) -> bool:
    """Whether the warehouse's version row says `HEAD` (one small select, no alembic)."""
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return list(versions) == [HEAD]
    except DBAPIError:  # no version table yet (an empty database): the full path says what to do
        return False


def check_known(revision: str | None) -> None:
    """Raise NewerWarehouseError when `revision` (the warehouse's) is none of our migrations."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    if revision is not None and revision not in {s.revision for s in script.walk_revisions()}:
        raise NewerWarehouseError(
            f"this warehouse is at revision {revision}, newer than this cdmetrics (whose newest "
            f"is {head_revision()}); upgrade cdmetrics"
        )


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the warehouse to `revision`; returns (before, after). Does nothing when at head.

    Raises NewerWarehouseError, touching nothing, when a newer cdmetrics migrated it.
    """
    if revision == "head" and _at_head(engine):
        return HEAD, HEAD
    before = current_revision(engine)
    check_known(before)
    target = head_revision() if revision == "head" else revision
    if before != target:
        before = _upgrade_locked(engine, revision, target)
    return before, target


def _upgrade_locked(engine: Engine, revision: str, target: str) -> str | None:
    """Migrate under a lock, so that workers starting at once never race (the first migrates,
    the others wait and then find the warehouse at `target`); returns the revision found."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with migration_file_lock(engine), engine.begin() as conn:
        lock_migrations(conn)
        before = MigrationContext.configure(conn).get_current_revision()
        check_known(before)
        if before != target:
            log.info("upgrading warehouse from %s to %s", before or "empty", target)
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    return before
