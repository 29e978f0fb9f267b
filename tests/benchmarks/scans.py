"""The plain reads every rollup-based figure of the benchmarks is compared with: a count and a
scan of the rows a scope's metrics cover (production deployment chains and pipelines finished in
its period), best of three."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, func, select

from analytics.scope import Scope
from warehouse.schema import DeploymentChain, Pipeline


def best(work: Any) -> tuple[Any, float]:
    """(result, best seconds) of three runs of `work`."""
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        result = work()
        runs.append((result, time.perf_counter() - start))
    return min(runs, key=lambda r: r[1])


def _filters(scope: Scope) -> tuple[tuple[Any, tuple[Any, ...]], ...]:
    return (
        (
            DeploymentChain,
            (DeploymentChain.is_production, scope.period(DeploymentChain.finished_at)),
        ),
        (Pipeline, (scope.period(Pipeline.finished_at),)),
    )


def plain_count(conn: Connection, scope: Scope) -> tuple[int, float]:
    """(rows, best seconds) of counting the scope's production chains and pipelines."""
    return best(
        lambda: sum(
            conn.execute(select(func.count()).select_from(t).where(*w)).scalar() or 0
            for t, w in _filters(scope)
        )
    )


def plain_scan(conn: Connection, scope: Scope) -> tuple[int, float]:
    """(rows, best seconds) of reading every column of those rows."""
    return best(
        lambda: sum(len(conn.execute(select(t).where(*w)).all()) for t, w in _filters(scope))
    )
