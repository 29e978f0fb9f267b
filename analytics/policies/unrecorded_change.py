"""unrecorded-change (warn): Kubernetes ran a digest that no recorded deployment put there
(analytics.observed)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from analytics.observed import unrecorded
from analytics.policies.period import Scan
from analytics.policies.violation import Violation
from config.settings import PolicySettings
from warehouse.schema import Environment, Service

ID = "unrecorded-change"
SEVERITY = "warn"
Params = PolicySettings  # `[policies.unrecorded-change]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Kubernetes ran a digest that no recorded deployment put there (analytics.observed)."""
    found = unrecorded(conn, scan.since, scan.until)
    names = dict(conn.execute(select(Service.id, Service.name)).all())
    envs = dict(conn.execute(select(Environment.id, Environment.name)).all())
    return [
        Violation(
            ID,
            SEVERITY,
            names.get(r.service_id),
            envs.get(r.environment_id),
            f"rollout {r.cluster}/{r.namespace}/{r.workload}#{r.revision}",
            f"{r.cluster}/{r.namespace}/{r.workload} started running {(r.digest or '')[:19]} at "
            f"{r.at:%Y-%m-%d %H:%M} UTC and no recorded deployment put it there: deploy through "
            "the pipeline, or revert the change by hand",
            occurred_at=r.at,
        )
        for r in found
    ]
