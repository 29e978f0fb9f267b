"""Every output format of the weekly report, by name: `html`, `md`, `xlsx`, `pdf` and `json`."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any

from reports.html import notices, render_html
from reports.markdown import render_markdown
from reports.model import WeeklyReport
from reports.tables import tables

FORMATS = ("html", "md", "xlsx", "pdf", "json")


def report_json(report: WeeklyReport) -> dict[str, Any]:
    """The JSON contract of docs/REPORTS.md: the week, the scope, the week's and the previous
    week's metrics objects (as `cdmetrics metrics --format json`), and every table's rows."""
    out: dict[str, Any] = {
        "report": "weekly",
        "week": report.week.key,
        "since": report.scope.since,
        "until": report.scope.until,
        "timezone": report.week.timezone,
        "scope": {
            "label": report.label,
            "teams": list(report.scope.teams),
            "services": list(report.scope.services),
            "environment": "production (tier)",
        },
        "generated_at": report.generated_at,
        "warehouse_empty": report.warehouse_empty,
        "notices": notices(report),
        "metrics": report.metrics,
        "previous_metrics": report.previous_metrics,
        "period": report.period.as_json() if report.period else None,
        "period_metrics": report.period_metrics,
    }
    notable = set(report.notable)
    out["notable"] = {}
    for table in tables(report):
        (out["notable"] if table.name in notable else out)[table.name] = table.rows
    return out


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def render_json(report: WeeklyReport) -> str:
    return json.dumps(report_json(report), default=_encode, indent=2, ensure_ascii=False) + "\n"


def render_pdf(report: WeeklyReport) -> bytes:
    """The HTML page printed to PDF by WeasyPrint (A4 landscape; needs Debian's pango)."""
    with warnings.catch_warnings():  # a notice about an optional library, not about the report
        warnings.filterwarnings("ignore", "HarfBuzz-Subset", DeprecationWarning)
        from weasyprint import HTML  # imported here: it loads pango, which only the PDF needs

    pdf = HTML(string=render_html(report, for_print=True)).write_pdf()
    assert pdf is not None  # write_pdf without a target returns the bytes
    return pdf


def render(report: WeeklyReport, output_format: str) -> bytes:
    """The report in `output_format` as bytes (text formats UTF-8)."""
    from reports.xlsx import render_xlsx

    renderers: dict[str, Callable[[WeeklyReport], str | bytes]] = {
        "html": render_html,
        "md": render_markdown,
        "json": render_json,
        "xlsx": render_xlsx,
        "pdf": render_pdf,
    }
    if output_format not in renderers:
        raise ValueError(f"unknown report format {output_format!r}; use {', '.join(FORMATS)}")
    result = renderers[output_format](report)
    return result.encode("utf-8") if isinstance(result, str) else result


def default_filename(report: WeeklyReport, output_format: str) -> str:
    """`weekly-2026-W47.html`, `weekly-2026-W47-team-payments.pdf`, ..."""
    scope = ""
    if report.scope.services:
        scope = "-service-" + "-".join(report.scope.services)
    elif report.scope.teams:
        scope = "-team-" + "-".join(report.scope.teams)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in scope)
    return f"weekly-{report.week.key}{safe}.{output_format}"
