"""Helpers for tests that sync the sandbox: settings pointing at it, and warehouse snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, Table, UniqueConstraint, func, select

from config.settings import Settings
from sandbox.serve import Sandbox
from sandbox.server import FaultRule, SimulatorApp
from sandbox.truth import SYNCED_TABLES
from warehouse.schema import metadata

# A fixed end of generated history, for tests that pick one particular shape out of the generated
# data (an interim Jenkins result, an issue listing, a history split by `history_days`): generated
# up to today, the organisation changes every day, and a shape such a test needs may be missing.
HISTORY_END = datetime(2026, 12, 4, tzinfo=UTC)

TOKEN_ENV = "CDM_TEST_GITLAB_TOKEN"
VOLATILE = {
    "id",
    "fetched_at",
    "changed_at",
    "first_seen_at",
    "last_seen_at",
    "started_at",
    "finished_at",
}


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
        sync={"requests_per_second": 0, "history_days": sandbox.history_days(), **sync},
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


# (seconds ahead of the HTTP date a 429 names, [sync] max_retry_after_s): one obeyed, one capped
DATE_RETRY_AFTER = [(1.0, 60.0), (3600.0, 0.5)]


def answer_429_with_a_date(app: SimulatorApp, path: str, ahead: float) -> FaultRule:
    """Make `app` answer the first three requests matching `path` with 429 and a Retry-After HTTP
    date `ahead` seconds from now; returns the rule (its `fired` count is live)."""
    return app.faults.add(FaultRule(path=path, kind="429", http_date=True, seconds=ahead, times=3))


def record_waits(collector: Any) -> list[float]:
    """The waits `collector`'s retry policy asks for, recorded instead of slept."""
    waits: list[float] = []
    collector.retry.sleep = waits.append
    return waits


def assert_waited_retry_after(waits: list[float], ahead: float, cap: float) -> None:
    """Three waits, each what the date asked (whole seconds, so up to `ahead`) or the cap."""
    assert len(waits) == 3, waits
    if ahead > cap:
        assert waits == [cap] * 3  # backoff (at most 0.4 s here) is shorter than the cap
    else:
        assert all(0 <= w <= ahead for w in waits), waits


# bookkeeping of how the warehouse was filled, not what it holds
BOOKKEEPING = ("alembic_version", "sync_state", "derive_state")
# snapshots taken at the wall-clock time of a derive: only the latest one is compared, without the
# hour it was taken in and the ages measured at that moment
SNAPSHOTS = {"drift_snapshot": ("taken_at", "drift_age_s")}


def _natural_key(table: Table) -> tuple[str, ...]:
    return next(
        tuple(c.name for c in con.columns)
        for con in table.constraints
        if isinstance(con, UniqueConstraint) and con.info.get("natural_key")
    )


def _compared(column: Column[Any]) -> bool:
    """Whether a column says what the warehouse holds: not a surrogate id, not when this
    warehouse fetched or first saw a row (`volatile`, `kept` and `changed` columns), not when a
    snapshot was taken."""
    if column.primary_key or {"volatile", "kept"} & set(column.info):
        return False
    return column.name not in SNAPSHOTS.get(column.table.name, ())


def by_natural_keys(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every table but the bookkeeping ones, sorted, each row as its compared columns with every
    foreign key replaced by the natural key of the row it references, so that two warehouses
    filled in different orders (different surrogate ids) compare equal when they hold the same."""
    keys: dict[str, dict[Any, tuple[Any, ...]]] = {}
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:  # referenced tables first
            if table.name in BOOKKEEPING:
                continue
            columns = [c for c in table.columns if _compared(c) or c.name in _natural_key(table)]

            def value(column: Column[Any], v: Any) -> Any:
                fk = next(iter(column.foreign_keys), None)
                # a column holding another row's id without a foreign key names it in `refers`
                referred = column.info.get("refers") or (fk and fk.column.table.name)
                return v if not referred or v is None else keys[referred][v]

            query = select(table.c.id, *columns)
            if table.name in SNAPSHOTS:
                taken = table.c[SNAPSHOTS[table.name][0]]
                query = query.where(taken == select(func.max(taken)).scalar_subquery())
            found = conn.execute(query).all()
            natural = [c for c in columns if c.name in _natural_key(table)]
            keys[table.name] = {  # first, so that a row may refer to another of its table
                row[0]: tuple(value(c, row[1 + columns.index(c)]) for c in natural) for row in found
            }
            out[table.name] = sorted(
                (
                    tuple(
                        value(c, v) for c, v in zip(columns, row[1:], strict=True) if _compared(c)
                    )
                    for row in found
                ),
                key=repr,
            )
    return out


def differences(table: str, found: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> str:
    """What a table lacks and what it has too many of, against the reference (a few rows each)."""
    missing = [r for r in expected if r not in found]
    extra = [r for r in found if r not in expected]
    return (
        f"{table} differs: {len(found)} rows, {len(expected)} expected;\n"
        f"missing {missing[:2]}\nunexpected {extra[:2]}"
    )
