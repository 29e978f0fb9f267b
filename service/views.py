"""The recorded policy violations for the API, in the JSON shape of `policy scan --format json`
(DESIGN.md section 6). A GET reads what scans recorded (`cdmetrics policy scan` stores every
violation with the time it was first found); it does not scan, so reading never writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from analytics.scope import EARLIEST, LATEST, Scope
from analytics.views.violations import select_violations


def violations(
    conn: Connection,
    *,
    services: tuple[str, ...] = (),
    policies: tuple[str, ...] = (),
    severity: str | None = None,
    since: datetime | None = None,
    include_resolved: bool = False,
) -> list[dict[str, Any]]:
    """Policy violations that occurred at or after `since` (default: ever), newest first:
    unresolved ones unless `include_resolved` (analytics.views.violations.select_violations)."""
    start = since or EARLIEST
    scope = Scope(start, max(LATEST, start + timedelta(microseconds=1)), services=services)
    rows = select_violations(
        conn,
        scope,
        during="occurred",
        policies=policies,
        severities=(severity,) if severity else (),
        unresolved=not include_resolved,
    )
    return [
        {
            "policy": v["policy"],
            "severity": v["severity"],
            "service": v["service"],
            "environment": v["environment"],
            "subject": v["subject"],
            "message": v["message"],
            "url": v["url"],
            "occurred_at": v["occurred_at"].isoformat(),
            "first_seen": v["first_seen_at"].isoformat(),
        }
        for v in rows
    ]


__all__ = ["violations"]
