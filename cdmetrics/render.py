"""Terminal, JSON and CSV forms of command results (presentation only; the numbers come from
analytics)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table

from analytics import units
from cdmetrics import gate_output

HEADLINE = (
    ("deployment_frequency", "deployments", "deployments"),
    ("deployment_frequency", "median_days_per_week", "deploy days/week (median)"),
    ("lead_time", "median_hours", "lead time p50"),
    ("lead_time", "p90_hours", "lead time p90"),
    ("change_failure_rate", "rate", "change failure rate"),
    ("recovery_time", "median_hours", "recovery p50"),
    ("rework_rate", "rate", "rework rate"),
    ("deployment_failure_rate", "rate", "deployment failure rate"),
    ("build", "failure_rate", "pipeline failure rate"),
    ("build", "median_duration_s", "pipeline p50 (s)"),
    ("requirement_lead_time", "median_hours", "requirement lead time p50"),
    ("bug_escape_rate", "rate", "bug escape rate"),
)


# the narrower columns of `metrics --by` (a row per slice must fit 80 columns; JSON and CSV have
# every figure): hours as numbers under "(h)" (one unit per column), rates as percent
SLICE_COLUMNS = (
    ("deployment_frequency", "deployments", "deploys"),
    ("lead_time", "median_hours", "lead p50\n(h)"),
    ("lead_time", "p90_hours", "lead p90\n(h)"),
    ("change_failure_rate", "rate", "change\nfail"),
    ("recovery_time", "median_hours", "recover\np50 (h)"),
    ("rework_rate", "rate", "rework"),
    ("build", "failure_rate", "pipeline\nfail"),
)


def _cell(value: Any, field_name: str = "") -> str:
    """A figure of the table as every human surface writes it (`analytics.units`): hours as
    h or d, rates as percent; JSON and CSV keep hours and shares."""
    if value is None:
        return "-"
    if field_name.endswith("_hours"):
        return units.hours(value, "-")
    if field_name.endswith("rate"):
        return units.percent(value, "-")
    if isinstance(value, float):
        return f"{value:.3f}" if value < 1 else f"{value:,.1f}"
    return str(value)


def _period_title(scope: dict[str, Any]) -> str:
    """`2026-09-07 to 2026-12-05 (UTC)`: the first and the last day the period includes (its
    `until` is exclusive), as the dashboard's period picker shows them."""
    last = datetime.fromisoformat(scope["until"]) - timedelta(microseconds=1)
    return f"{scope['since'][:10]} to {last.date().isoformat()} ({scope.get('timezone', 'UTC')})"


def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric objects as one level of `metric.field` keys (for CSV)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        elif not isinstance(value, list):
            out[name] = value
    return out


def render_metrics(result: dict[str, Any], output_format: str, console: Console) -> None:
    """Print `cdmetrics metrics` output as a table, JSON or CSV."""
    if output_format == "json":
        console.print_json(json.dumps(result, default=str))
        return
    rows = result.get("rows") or [
        {"slice": "all", **{k: v for k, v in result.items() if k != "scope"}}
    ]
    if output_format == "csv":
        buffer = io.StringIO()
        records = [flat(r) for r in rows]
        writer = csv.DictWriter(
            buffer, fieldnames=list(dict.fromkeys(k for r in records for k in r))
        )
        writer.writeheader()
        writer.writerows(records)
        console.file.write(buffer.getvalue())
        return
    title = _period_title(result["scope"])
    if "rows" not in result:  # one column of figures, a metric per line
        table = Table(title=title)
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("level")
        for metric, field_name, label in HEADLINE:
            level = (
                result[metric].get("level")
                if field_name in ("median_days_per_week", "median_hours", "rate")
                else None
            )
            table.add_row(label, _cell(result[metric][field_name], field_name), level or "")
        console.print(table)
        return
    key = next(iter(rows[0]))
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(key, no_wrap=True)
    for *_, header in SLICE_COLUMNS:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(str(row[key]), *(_slice_cell(row[m][f], f) for m, f, _ in SLICE_COLUMNS))
    console.print(table)


def _slice_cell(value: Any, field_name: str) -> str:
    """A cell of `metrics --by`: hours as a number (its header says "(h)"), rates as percent."""
    if field_name.endswith("_hours") and value is not None:
        return f"{value:,.1f}"
    return _cell(value, field_name)


def render_drift(rows: list[dict[str, Any]], output_format: str, console: Console) -> None:
    """Print `cdmetrics drift` output as a table, JSON or CSV."""
    if output_format == "json":
        console.print_json(json.dumps(rows, default=str))
        return
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["service"])
        writer.writeheader()
        writer.writerows(rows)
        console.file.write(buffer.getvalue())
        return
    table = Table(title="drift between adjacent environments", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("service", no_wrap=True)
    table.add_column("upstream -> downstream", overflow="fold")
    table.add_column("in sync")
    table.add_column("commits\nbehind", justify="right")
    table.add_column("drifting\n(h)", justify="right")
    table.add_column("digests (up, down)", no_wrap=True)
    for r in rows:
        table.add_row(
            r["service"],
            f"{r['upstream']} -> {r['downstream']}",
            "yes" if r["in_sync"] else "no",
            _cell(r["commits_behind"]),
            _cell(r["drift_age_hours"], "drift_age_hours"),
            f"{_short(r['upstream_digest'])} {_short(r['downstream_digest'])}",
        )
    console.print(table)


def _short(digest: str | None) -> str:
    """The first 8 hex digits of a digest (the JSON has it whole)."""
    return digest.removeprefix("sha256:")[:8] if digest else "-"


def render_gate(
    decision: dict[str, Any], output_format: str, console: Console, with_ref: bool
) -> None:
    """Print a gate decision as text, JSON or JUnit XML: cdmetrics.gate_output's text (the thin
    gate client prints the same), JSON highlighted on a terminal."""
    if output_format == "json":
        console.print_json(json.dumps(decision, default=str))
    else:
        console.file.write(gate_output.render(decision, output_format, with_ref))


SARIF_LEVELS = {"error": "error", "warn": "warning", "info": "note"}


def violations_sarif(rows: list[dict[str, Any]]) -> str:
    """SARIF 2.1.0: one rule per policy, one result per violation (logical location: the service)."""
    rules = sorted({r["policy"] for r in rows})
    results = [
        {
            "ruleId": r["policy"],
            "level": SARIF_LEVELS.get(r["severity"], "warning"),
            "message": {"text": r["message"]},
            "locations": [
                {
                    "logicalLocations": [
                        {
                            "name": r["service"] or "organisation",
                            "kind": "module",
                            "fullyQualifiedName": f"{r['service']}/{r['environment'] or '-'}",
                        }
                    ]
                }
            ],
            "partialFingerprints": {"subject": r["subject"]},
            **({"properties": {"url": r["url"]}} if r.get("url") else {}),
        }
        for r in rows
    ]
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "cdmetrics",
                        "informationUri": "https://example.invalid/cdmetrics",
                        "rules": [{"id": rule, "name": rule} for rule in rules],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, default=str)


def violations_junit(rows: list[dict[str, Any]], policies: list[str]) -> str:
    """JUnit XML: one testcase per policy evaluated, failing with its violations."""
    from xml.sax.saxutils import escape as xml
    from xml.sax.saxutils import quoteattr

    by_policy: dict[str, list[dict[str, Any]]] = {p: [] for p in policies}
    for r in rows:
        by_policy.setdefault(r["policy"], []).append(r)
    failing = [p for p, found in by_policy.items() if found]
    cases = "".join(
        f'<testcase classname="policy" name={quoteattr(p)}>'
        + (
            f"<failure message={quoteattr(f'{len(found)} violation(s)')} "
            f"type={quoteattr(found[0]['severity'])}>"
            + xml("\n".join(f"{v['service']}: {v['message']}" for v in found))
            + "</failure>"
            if found
            else ""
        )
        + "</testcase>"
        for p, found in by_policy.items()
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="cdmetrics policy scan" '
        f'tests="{len(by_policy)}" failures="{len(failing)}" errors="0">{cases}</testsuite>\n'
    )


def render_violations(
    rows: list[dict[str, Any]], output_format: str, console: Console, policies: list[str]
) -> None:
    """Print `cdmetrics policy scan` output as a table, JSON, JUnit or SARIF."""
    if output_format == "json":
        console.print_json(json.dumps(rows, default=str))
    elif output_format == "sarif":
        console.file.write(violations_sarif(rows) + "\n")
    elif output_format == "junit":
        console.file.write(violations_junit(rows, policies))
    else:
        console.print(violation_counts(rows))
        for r in rows:  # a line per violation, then its message indented: fits 80 columns
            where = "/".join(x for x in (r["service"], r["environment"]) if x) or "organisation"
            when = (r.get("occurred_at") or "")[:10]
            console.print(
                f"{r['severity']:<5} {r['policy']}  {where}  {when}",
                highlight=False,
                markup=False,
            )
            console.print(Padding(r["message"], (0, 0, 0, 6)), highlight=False, markup=False)


def violation_counts(rows: list[dict[str, Any]]) -> Table:
    """Violations per policy and severity: what `policy scan` prints before the list."""
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r["policy"], r["severity"])] = counts.get((r["policy"], r["severity"]), 0) + 1
    table = Table(title=f"{len(rows)} policy violation(s)", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("policy")
    table.add_column("severity")
    table.add_column("violations", justify="right")
    order = {"error": 0, "warn": 1, "info": 2}
    for (policy, severity), n in sorted(
        counts.items(), key=lambda c: (order.get(c[0][1], 3), c[0][0])
    ):
        table.add_row(policy, severity, str(n))
    return table
