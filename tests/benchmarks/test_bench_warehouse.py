"""Upsert throughput: 100,000 commit rows, inserted then upserted again unchanged, on each backend.

Prints figures; asserts only correctness, never wall time.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, func, select

from tests.test_warehouse import commit_rows, make_repo
from warehouse.schema import Commit
from warehouse.upsert import upsert

ROWS = 100_000
pytestmark = pytest.mark.bench


def timed_upsert(engine: Engine, rows: list[dict[str, object]]) -> tuple[int, float]:
    start = time.perf_counter()
    with engine.begin() as conn:
        written = upsert(conn, Commit, rows)
    return written, time.perf_counter() - start


def test_upsert_throughput(engine: Engine) -> None:
    repo_id = make_repo(engine)
    rows = commit_rows(repo_id, ROWS)
    inserted, t_insert = timed_upsert(engine, rows)
    unchanged, t_noop = timed_upsert(engine, rows)
    changed_rows = [dict(r, title="edited") for r in rows]
    changed, t_update = timed_upsert(engine, changed_rows)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Commit)).scalar_one() == ROWS
    assert (inserted, unchanged, changed) == (ROWS, 0, ROWS)
    name = engine.dialect.name
    print(
        f"\nupsert {name:<10} {ROWS:,} commit rows: insert {ROWS / t_insert:,.0f} rows/s "
        f"({t_insert:.2f} s); unchanged re-upsert {ROWS / t_noop:,.0f} rows/s ({t_noop:.2f} s); "
        f"all changed {ROWS / t_update:,.0f} rows/s ({t_update:.2f} s); "
        f"re-upsert/insert time ratio {t_noop / t_insert:.2f}"
    )
