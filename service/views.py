"""The recorded policy violations for the API, in the JSON shape of `policy scan --format json`
(DESIGN.md section 6). A GET reads what scans recorded (`cdmetrics policy scan` stores every
violation with the time it was first found); it does not scan, so reading never writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from warehouse.schema import Environment, PolicyViolation, Service


def violations(
    conn: Connection,
    *,
    services: tuple[str, ...] = (),
    policies: tuple[str, ...] = (),
    severity: str | None = None,
    since: datetime | None = None,
    include_resolved: bool = False,
) -> list[dict[str, Any]]:
    """Policy violations, newest first: unresolved ones unless `include_resolved`."""
    query = (
        select(
            PolicyViolation.policy,
            PolicyViolation.severity,
            PolicyViolation.subject,
            PolicyViolation.message,
            PolicyViolation.url,
            PolicyViolation.occurred_at,
            PolicyViolation.first_seen_at,
            Service.name.label("service"),
            Environment.name.label("environment"),
        )
        .outerjoin(Service, Service.id == PolicyViolation.service_id)
        .outerjoin(Environment, Environment.id == PolicyViolation.environment_id)
        .order_by(PolicyViolation.occurred_at.desc(), PolicyViolation.id)
    )
    if services:
        query = query.where(Service.name.in_(services))
    if policies:
        query = query.where(PolicyViolation.policy.in_(policies))
    if severity:
        query = query.where(PolicyViolation.severity == severity)
    if since is not None:
        query = query.where(PolicyViolation.occurred_at >= since)
    if not include_resolved:
        query = query.where(PolicyViolation.resolved_at.is_(None))
    return [
        {
            "policy": v.policy,
            "severity": v.severity,
            "service": v.service,
            "environment": v.environment,
            "subject": v.subject,
            "message": v.message,
            "url": v.url,
            "occurred_at": v.occurred_at.isoformat(),
            "first_seen": v.first_seen_at.isoformat(),
        }
        for v in conn.execute(query)
    ]


__all__ = ["violations"]
