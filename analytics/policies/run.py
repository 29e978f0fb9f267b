"""The policy scan (DESIGN.md section 5, docs/POLICIES.md): every policy over a period, stored in
`policy_violation` with when it was first seen, and when the offending event occurred, so a
report can say what is new (analytics.views.violations).

Deployment policies look at successful deployments that finished in the period; merge-request
policies at MRs merged in it; branch policies at the state at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from analytics.policies.period import Scan
from analytics.policies.registry import POLICIES
from analytics.policies.violation import Violation
from analytics.scope import EARLIEST, LATEST, Scope
from analytics.views.violations import select_violations
from config.settings import PoliciesSettings
from warehouse.schema import Environment, PolicyViolation, Service
from warehouse.upsert import upsert


def scan(
    conn: Connection,
    since: datetime,
    until: datetime,
    promotion_path: list[str],
    params: PoliciesSettings | dict[str, dict[str, Any]] | None = None,
    only: list[str] | None = None,
) -> list[Violation]:
    """The violations of every policy (or those in `only`) over [since, until); `params` are the
    `[policies]` settings (a plain dict is validated as they are)."""
    if not isinstance(params, PoliciesSettings):
        params = PoliciesSettings.model_validate(params or {})
    s = Scan(since, until, promotion_path, params)
    found: list[Violation] = []
    with temp_in_memory(conn):
        for policy_id, policy in POLICIES.items():
            if only and policy_id not in only:
                continue
            severity = params.of(policy_id).severity or policy.severity
            found.extend(replace(v, severity=severity) for v in policy.check(conn, s))
    return found


SCAN_CACHE_KIB = 64 * 1024  # SQLite's page cache for a scan (its default is 2 MiB)


@contextmanager
def temp_in_memory(conn: Connection) -> Iterator[None]:
    """On SQLite, the scan's temporary b-trees (the recursive selects' queues and sets, sorts) in
    memory rather than in temporary files: a few tens of MB on the large sandbox organisation,
    and a second of the scan's CPU (long-lived-branch's walk of the default branches) saved; and
    a page cache of `SCAN_CACHE_KIB` rather than SQLite's 2 MiB, so that the commit graph and the
    period's deployments, which several policies read, are read from the file once rather than
    once per policy and walk step (0.8 s of the scan's CPU on the large organisation, most of
    it the system's). Both restored afterwards. Not inside a write transaction (SQLite refuses
    temp_store there): the scan then runs as it is."""

    def in_write_transaction() -> bool:  # SQLite refuses the pragma inside one
        return bool(getattr(conn.connection.dbapi_connection, "in_transaction", True))

    if conn.dialect.name != "sqlite" or in_write_transaction():
        yield
        return
    before = conn.exec_driver_sql("PRAGMA temp_store").scalar_one()
    cache = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    conn.exec_driver_sql("PRAGMA temp_store=MEMORY")
    conn.exec_driver_sql(f"PRAGMA cache_size={-SCAN_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(cache)}")
        if not in_write_transaction():
            conn.exec_driver_sql(f"PRAGMA temp_store={int(before)}")


def store(
    conn: Connection, violations: list[Violation], now: datetime | None = None
) -> list[Violation]:
    """Upsert violations into policy_violation (first_seen kept, occurred_at as the policy says,
    `now` for one that cannot say) and return them with first_seen."""
    now = now or datetime.now(UTC)
    services = dict(conn.execute(select(Service.name, Service.id)).all())
    envs = dict(conn.execute(select(Environment.name, Environment.id)).all())
    upsert(
        conn,
        PolicyViolation,
        [
            {
                "policy": v.policy,
                "subject": v.subject,
                "severity": v.severity,
                "service_id": services.get(v.service or ""),
                "environment_id": envs.get(v.environment or ""),
                "message": v.message,
                "url": v.url,
                "occurred_at": v.occurred_at or now,
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for v in violations
        ],
    )
    recorded = select_violations(
        conn,
        Scope(EARLIEST, LATEST),
        during="occurred",
        policies=sorted({v.policy for v in violations}),
    )
    seen = {(r["policy"], r["subject"]): r["first_seen_at"] for r in recorded}
    for v in violations:
        v.first_seen = seen.get((v.policy, v.subject))
    return violations
