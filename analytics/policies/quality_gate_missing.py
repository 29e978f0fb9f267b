"""quality-gate-missing (warn, off by default: `[policies.quality-gate-missing] enabled = true`):
a production deployment's commit had no SonarQube analysis on an allowed branch made before the
deployment started (analytics.policies.quality_gate, which the gate calls too). On SonarQube
Community Edition only the main branch is analysed: a commit deployed from another branch is
always missing there."""

from __future__ import annotations

from sqlalchemy import Connection

import analytics.policies.quality_gate as rule
from analytics.policies.period import Scan, of_deployment
from analytics.policies.violation import Violation
from config.settings import QualityGateMissingPolicy

ID = "quality-gate-missing"
SEVERITY = "warn"
Params = QualityGateMissingPolicy  # `[policies.quality-gate-missing]` (config.settings)


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Production deployments whose commit had no deciding analysis ([] unless enabled)."""
    params = scan.params.quality_gate_missing
    if not params.enabled:
        return []
    found = rule.guarded(conn, scan)
    analyses = rule.analyses_of(conn, [c for _, c in found if c])
    return [
        of_deployment(ID, SEVERITY, d, rule.missing_message(commit))
        for d, commit in found
        if rule.verdict(analyses.get(commit or "", []), d.start, params).status == rule.MISSING
    ]
