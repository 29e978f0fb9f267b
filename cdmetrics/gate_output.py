"""The gate decision's text, JSON and JUnit XML as strings, with the standard library only: the
gate reading the warehouse (cdmetrics/cli_gate.py, through cdmetrics.render) and the thin client
asking the service (cdmetrics/gate_client.py) print the same bytes for the same decision.

The JSON is what `rich`'s `print_json` writes off a terminal: two-space indent, non-ASCII kept.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape as xml
from xml.sax.saxutils import quoteattr

# the policies the gate evaluates, in the order its JUnit output lists them: analytics.gate's
# GATE_POLICIES (tests/test_gate_client.py holds them equal), spelled out so that the thin client
# need not import analytics (SQLAlchemy)
GATE_POLICIES = (
    "untested-image",
    "rebuilt-image",
    "unpinned-image",
    "moved-tag",
    "non-release-ref",
    "quality-gate-failed",
    "quality-gate-missing",
)
FORMATS = ("text", "json", "junit")


def render(decision: dict[str, Any], output_format: str, with_ref: bool) -> str:
    """The decision as `output_format` (text, json or junit), ending with a newline."""
    if output_format == "json":
        return gate_json(decision)
    if output_format == "junit":
        return gate_junit(decision, with_ref)
    return gate_text(decision)


def gate_json(decision: dict[str, Any]) -> str:
    """The JSON contract (docs/POLICIES.md), indented."""
    return (
        json.dumps(json.loads(json.dumps(decision, default=str)), indent=2, ensure_ascii=False)
        + "\n"
    )


def gate_text(decision: dict[str, Any]) -> str:
    """The verdict line, a line per reason (with what to do), the quality gate's line."""
    lines = [
        f"{decision['decision'].upper()}: {decision['service']} {decision['image']} -> "
        f"{decision['environment']}"
        + (f" ({decision['digest']})" if decision.get("digest") else "")
    ]
    lines += [f"  [{r['severity']}] {r['policy']}: {r['message']}" for r in decision["reasons"]]
    if gate := decision.get("quality_gate"):
        lines.append(quality_gate_line(gate))
    return "".join(f"{line}\n" for line in lines)


def quality_gate_line(gate: dict[str, Any]) -> str:
    """The text output's line on the SonarQube quality gate of the image's commit."""
    commit = (gate.get("commit") or "unknown")[:12]
    if gate.get("status") == "missing":
        return f"  quality gate: commit {commit}: no analysis before now"
    return (
        f"  quality gate: commit {commit}: {gate.get('status')} at analysis {gate.get('analysis')} "
        f"of {gate.get('project')} ({gate.get('branch')}, {gate.get('analysed_at')})"
    )


def gate_junit(decision: dict[str, Any], with_ref: bool) -> str:
    """JUnit XML: one testcase per policy evaluated; errors fail, warnings are reported in
    system-out."""
    checked = (decision.get("quality_gate") or {}).get("checked") or []
    policies = [
        p
        for p in GATE_POLICIES
        if (with_ref or p != "non-release-ref")
        and (not p.startswith("quality-gate-") or p in checked)
    ]
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for reason in decision["reasons"]:
        by_policy.setdefault(reason["policy"], []).append(reason)
    failures = sum(
        1 for p in policies if any(r["severity"] == "error" for r in by_policy.get(p, []))
    )
    cases = []
    for policy in policies:
        found = by_policy.get(policy, [])
        body = "".join(
            f"<failure message={quoteattr(r['message'])} type={quoteattr(policy)}/>"
            if r["severity"] == "error"
            else f"<system-out>{xml('warning: ' + r['message'])}</system-out>"
            for r in found
        )
        cases.append(
            f"<testcase classname={quoteattr('gate.' + decision['service'])} name={quoteattr(policy)}>"
            f"{body}</testcase>"
        )
    errors = [r for r in by_policy.get("gate", []) if decision["decision"] == "error"]
    cases += [  # cannot decide: one errored testcase, so no report reads as all passed
        f'<testcase classname={quoteattr("gate." + decision["service"])} name="gate">'
        f'<error message={quoteattr(r["message"])} type="cannot-decide"/></testcase>'
        for r in errors
    ]
    name = quoteattr(f"cdmetrics gate {decision['service']} -> {decision['environment']}")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name={name} '
        f'tests="{len(policies) + len(errors)}" failures="{failures}" errors="{len(errors)}">'
        + "".join(cases)
        + "</testsuite>\n"
    )
