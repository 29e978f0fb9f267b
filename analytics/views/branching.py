"""Branch strategy per repository, for the Policies page beside the branch policies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from analytics.branching import classify
from analytics.scope import Scope


def branch_strategies(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Per service in scope: its repository's branch strategy, the signals that decided it in
    words, and each signal (environment branches as one comma-separated string), by service."""
    rows = []
    for s in classify(conn, scope):
        row = s.as_json()
        row["environment_branches"] = ", ".join(s.environment_branches)
        rows.append(row)
    return rows
