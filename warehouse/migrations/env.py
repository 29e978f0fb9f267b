"""Alembic environment: runs on the connection handed over by `warehouse.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from warehouse.engine import make_engine
from warehouse.schema import metadata

config = context.config


def _configure(conn: Connection) -> None:
    context.configure(
        connection=conn,
        target_metadata=metadata,
        render_as_batch=conn.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        _configure(conn)
        return
    # `alembic -x url=sqlite:///dev.db revision --autogenerate -m "..."` for developers
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///cdmetrics.db")
    with make_engine(url).begin() as connection:
        _configure(connection)


run()
