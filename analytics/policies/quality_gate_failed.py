"""quality-gate-failed (error): a production deployment's commit had failed SonarQube's quality
gate — its latest analysis on an allowed branch made before the deployment started (see
analytics.policies.quality_gate, which the gate calls too). The message names the failing
conditions and links the analysis."""

from __future__ import annotations

from sqlalchemy import Connection

import analytics.policies.quality_gate as rule
from analytics.policies.period import Scan, of_deployment
from analytics.policies.violation import Violation
from config.settings import QualityGatePolicy

ID = "quality-gate-failed"
SEVERITY = "error"
Params = QualityGatePolicy  # `[policies.quality-gate-failed]`, validated at start (config.settings)


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Production deployments whose commit's deciding analysis failed the gate."""
    params = scan.params.quality_gate_failed
    if not rule.any_failed(conn):
        return []
    found = rule.guarded(conn, scan)
    analyses = rule.analyses_of(conn, [c for _, c in found if c])
    violations = []
    for d, commit in found:
        if not commit:
            continue
        v = rule.verdict(analyses.get(commit, []), d.start, params)
        if v.status == rule.FAILED:
            violations.append(of_deployment(ID, SEVERITY, d, rule.failed_message(commit, v)))
    return violations
