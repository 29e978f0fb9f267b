"""The report as Markdown (GitHub/GitLab-flavoured tables) for wikis, and its summary — the title,
the period and the headline table — for chat (`--post`)."""

from __future__ import annotations

from typing import Any

from reports.html import notices, period_line
from reports.model import WeeklyReport, missed_targets
from reports.tables import Table, cell, header, kind_of, shown_rows, tables

NUMERIC = ("count", "hours", "ratio", "days", "unit", "change")


def markdown_table(table: Table, zone: Any) -> str:
    """One table as Markdown; its empty text when it has no rows."""
    if not table.rows:
        return f"_{table.empty}_"
    header_row = "| " + " | ".join(header(t, k) for _, t, k in table.columns) + " |"
    rule = "|" + "|".join("---:" if k in NUMERIC else "---" for _, _, k in table.columns) + "|"
    lines = [header_row, rule]
    rows, more = shown_rows(table)
    for row in rows:
        cells = []
        for key, _, kind in table.columns:
            if kind_of(kind, row) == "url":
                cells.append(f"[link]({row[key]})" if row.get(key) else "")
            else:
                text = cell(table, key, kind, row, zone)
                cells.append(text.replace("|", "\\|").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (f"\n\n_{more}_" if more else "")


def summary(report: WeeklyReport) -> str:
    """Title, period, what to know, and the headline table: what a chat message carries."""
    headline = next(t for t in tables(report) if t.name == "headline")
    parts = [f"### {report.title}", period_line(report)]
    parts += [f"> {n}" for n in notices(report)]
    parts.append(markdown_table(headline, report.scope.zone))
    missed = [
        f"- {row['label']}: {cell(headline, 'value', 'unit', row, report.scope.zone)} "
        f"(target {row['target']})"
        for row in missed_targets(report)
    ]
    if missed:
        parts.append("**Missed targets**\n\n" + "\n".join(missed))
    return "\n\n".join(parts) + "\n"


def render_markdown(report: WeeklyReport) -> str:
    """The whole report as Markdown: the summary, then every other table."""
    zone = report.scope.zone
    parts = [summary(report).replace("### ", "# ", 1).rstrip("\n")]
    for table in tables(report):
        if table.name == "headline":
            continue
        parts.append(f"## {table.title}\n\n{markdown_table(table, zone)}")
    return "\n\n".join(parts) + "\n"
