"""Helpers for tests that sync the sandbox: settings pointing at it, and warehouse snapshots."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from cdmetrics.settings import Settings
from sandbox.serve import Sandbox
from sandbox.truth import SYNCED_TABLES
from warehouse.schema import metadata

TOKEN_ENV = "CDM_TEST_GITLAB_TOKEN"
VOLATILE = {"id", "fetched_at", "first_seen_at", "last_seen_at", "started_at", "finished_at"}


def sandbox_settings(sandbox: Sandbox, **sync: Any) -> Settings:
    """Settings with one GitLab source on the sandbox (no client-side rate limit)."""
    return Settings(
        sources={
            "gitlab": [
                {
                    "name": "gitlab",
                    "url": sandbox.gitlab_url,
                    "token_env": TOKEN_ENV,
                    "groups": [sandbox.org.root_group],
                }
            ]
        },
        sync={"requests_per_second": 0, **sync},
    )


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: int(
                conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one()
            )
            for name in SYNCED_TABLES
        }


def snapshot(
    engine: Engine, tables: tuple[str, ...] = SYNCED_TABLES
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the synced tables, without surrogate ids and fetch times, sorted."""
    out = {}
    with engine.connect() as conn:
        for name in tables:
            table = metadata.tables[name]
            columns = [
                c for c in table.columns if c.name not in VOLATILE and not c.name.endswith("_id")
            ]
            rows = conn.execute(select(*columns)).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out
