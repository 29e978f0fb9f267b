"""Policies (DESIGN.md section 5, docs/POLICIES.md): one module per policy (its id, default
severity, typed parameters, pure predicate and the scan's select), `registry` (id -> policy),
`violation` (the row a scan finds) and `run` (the scan over a period, and storing what it found).
The gate (analytics.gate) calls the same predicates.

The names below are loaded when first used: the gate imports single policy modules
(`from analytics.policies import untested_image`) and must not pay for the scan's imports (the
views, the registry of every policy) in a pipeline step (cdmetrics/entry.py)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analytics.policies.period import Scan
    from analytics.policies.registry import POLICIES, Policy
    from analytics.policies.run import scan, store
    from analytics.policies.violation import SEVERITIES, Violation

_HOMES = {
    "Scan": "period",
    "POLICIES": "registry",
    "Policy": "registry",
    "scan": "run",
    "store": "run",
    "SEVERITIES": "violation",
    "Violation": "violation",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"analytics.policies.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'analytics.policies' has no attribute {name!r}")


__all__ = ["POLICIES", "SEVERITIES", "Policy", "Scan", "Violation", "scan", "store"]
