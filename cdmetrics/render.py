"""Terminal, JSON and CSV forms of command results (presentation only; the numbers come from
analytics)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich.console import Console
from rich.table import Table

HEADLINE = (
    ("deployment_frequency", "deployments", "deployments"),
    ("deployment_frequency", "median_days_per_week", "deploy days/week (median)"),
    ("lead_time", "median_hours", "lead time p50 (h)"),
    ("lead_time", "p90_hours", "lead time p90 (h)"),
    ("change_failure_rate", "rate", "change failure rate"),
    ("recovery_time", "median_hours", "recovery p50 (h)"),
    ("rework_rate", "rate", "rework rate"),
    ("deployment_failure_rate", "rate", "deployment failure rate"),
    ("build", "failure_rate", "pipeline failure rate"),
    ("build", "median_duration_s", "pipeline p50 (s)"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 1 else f"{value:,.1f}"
    return str(value)


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
    title = f"{result['scope']['since'][:10]} to {result['scope']['until'][:10]}"
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
            table.add_row(label, _cell(result[metric][field_name]), level or "")
        console.print(table)
        return
    key = next(iter(rows[0]))
    table = Table(title=title)
    table.add_column(key)
    for _, _, label in HEADLINE:
        table.add_column(label, justify="right")
    for row in rows:
        table.add_row(str(row[key]), *(_cell(row[m][f]) for m, f, _ in HEADLINE))
    console.print(table)


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
    table = Table(title="drift between adjacent environments")
    for column in (
        "service",
        "pair",
        "in sync",
        "commits behind",
        "drifting (h)",
        "upstream",
        "downstream",
    ):
        table.add_column(
            column, justify="right" if column in ("commits behind", "drifting (h)") else "left"
        )
    for r in rows:
        table.add_row(
            r["service"],
            f"{r['upstream']} -> {r['downstream']}",
            "yes" if r["in_sync"] else "no",
            _cell(r["commits_behind"]),
            _cell(r["drift_age_hours"]),
            (r["upstream_digest"] or "-")[:19],
            (r["downstream_digest"] or "-")[:19],
        )
    console.print(table)
