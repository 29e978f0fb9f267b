"""The violation row of the policy scan: what `cdmetrics policy scan --format json` prints and
`policy_violation` stores (analytics.policies.run.store)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

SEVERITIES = ("error", "warn", "info")


@dataclass
class Violation:
    """One row of `cdmetrics policy scan --format json`."""

    policy: str
    severity: str
    service: str | None
    environment: str | None
    subject: str
    message: str
    url: str | None = None
    occurred_at: datetime | None = None  # when the offending event happened
    first_seen: datetime | None = None  # when a scan first found it (set by `store`)

    def as_json(self) -> dict[str, Any]:
        """The violation as JSON, times as ISO 8601."""
        return {
            **asdict(self),
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
        }
