"""Planner statistics on PostgreSQL: the tables a sync changed are analysed before derive plans its
queries over them.

Without statistics (a first derive after a bulk load) or with stale ones, PostgreSQL planned the
image revision join of `analytics/images.py` as nested loops over full scans: more than ten
minutes on the large organisation, against well under a second with fresh statistics. Autovacuum
analyses eventually, on its own schedule; derive cannot wait for it. ANALYZE samples a bounded
number of rows per table (`default_statistics_target` x 300), so it costs little on any size.
SQLite plans from its indexes alone and has nothing to refresh here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)


def analyze(engine: Engine, tables: Iterable[str]) -> list[str]:
    """ANALYZE `tables` (PostgreSQL; a no-op elsewhere) whose rows changed since their last
    analysis, or that were never analysed; returns the names analysed."""
    if engine.dialect.name != "postgresql":
        return []
    names = sorted(set(tables))
    start = time.perf_counter()
    with engine.connect() as conn:
        # reltuples < 0: never analysed (PostgreSQL 14+); n_mod_since_analyze: rows changed since
        stale = conn.execute(
            text(
                "SELECT c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
                "AND c.relname = ANY(:names) "
                "AND (c.reltuples < 0 OR coalesce(s.n_mod_since_analyze, 1) > 0)"
            ),
            {"names": names},
        ).scalars()
        stale_names = sorted(stale)
        for name in stale_names:
            conn.execute(text(f'ANALYZE "{name}"'))
        conn.commit()
    log.info(
        "analysed %d table(s) before derive in %.2f s: %s",
        len(stale_names),
        time.perf_counter() - start,
        ", ".join(stale_names) or "none changed",
    )
    return stale_names
