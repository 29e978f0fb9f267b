"""Policies (DESIGN.md section 5, docs/POLICIES.md): one module per policy (its id, default
severity, typed parameters, pure predicate and the scan's select), `registry` (id -> policy),
`violation` (the row a scan finds) and `run` (the scan over a period, and storing what it found).
The gate (analytics.gate) calls the same predicates."""

from analytics.policies.period import Scan
from analytics.policies.registry import POLICIES, Policy
from analytics.policies.run import scan, store
from analytics.policies.violation import SEVERITIES, Violation

__all__ = ["POLICIES", "SEVERITIES", "Policy", "Scan", "Violation", "scan", "store"]
