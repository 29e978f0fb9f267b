"""The report as one self-contained HTML page: styles inline, charts as inline SVG, no script and
no resource fetched from anywhere (links to GitLab pages are plain hyperlinks), so it opens
offline, survives being mailed, and is the source of the PDF."""

from __future__ import annotations

from datetime import timedelta
from html import escape
from typing import Any

from reports import svg
from reports.model import WeeklyReport
from reports.tables import Table, cell, header, kind_of, show, shown_rows, tables

STYLE = """
@page { size: A4 landscape; margin: 12mm; }
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; font-size: 10pt; color: #222;
       margin: 1.5em auto; max-width: 1200px; padding: 0 1em; }
h1 { font-size: 17pt; margin-bottom: 0.2em; }
h2 { font-size: 12.5pt; margin: 1.4em 0 0.4em; border-bottom: 1px solid #ddd; }
p.meta { color: #555; margin-top: 0; }
p.notice { background: #fff4d6; border: 1px solid #e8c66a; padding: 0.5em 0.8em; }
p.empty { color: #666; font-style: italic; }
table { border-collapse: collapse; margin: 0.3em 0 0.8em; font-size: 9pt; }
th, td { border: 1px solid #d5d9de; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
td.n { text-align: right; white-space: nowrap; }
td.good { color: #17753a; } td.bad { color: #b3261e; }
.charts svg { display: inline-block; margin: 0 1em 0.6em 0; vertical-align: top; }
a { color: #2457a6; }
"""
TREND_CHARTS = (
    ("deployments", "Production deployments", "count"),
    ("lead_time_median", "Lead time, median", "hours"),
    ("change_failure_rate", "Change failure rate", "ratio"),
    ("recovery_median", "Recovery time, median", "hours"),
)
NUMERIC = ("count", "hours", "ratio", "days", "unit", "change")

SAFE_LINKS = ("https://", "http://")  # a link of another scheme (javascript:) is shown as text


IN_THE_XLSX = ("environments",)  # long tables the PDF leaves to the XLSX (and JSON)


def render_html(report: WeeklyReport, for_print: bool = False) -> str:
    """The report as an HTML document (UTF-8 text); `for_print` (the PDF) names the tables of
    `IN_THE_XLSX` instead of printing them, after the first page's figures."""
    zone = report.scope.zone
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(report.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(report.title)}</h1>",
        f'<p class="meta">{escape(period_line(report))}</p>',
        *(f'<p class="notice">{escape(n)}</p>' for n in notices(report)),
    ]
    by_name = {t.name: t for t in tables(report)}
    parts.append(_table(by_name.pop("headline"), zone, heading="Headline"))
    parts.append(f"<h2>Last {len(report.trend)} weeks</h2>")
    parts.append(_trend_charts(report))
    parts.append(_table(by_name.pop("trend"), zone, heading=None))
    services = [r for r in report.services if r["deployments"]][:15]
    parts.append(f"<h2>{escape(by_name['services'].title)}</h2>")
    if services:
        parts.append(
            '<div class="charts">'
            + svg.bars(
                "Production deployments this week",
                [r["service"] for r in services],
                [r["deployments"] for r in services],
                lambda v: show(v, "count", zone),
            )
            + "</div>"
        )
    parts.append(_table(by_name.pop("services"), zone, heading=None))
    attempts = by_name.pop("environments")
    if for_print:
        parts.append(f"<h2>{escape(attempts.title)}</h2>")
        parts.append(
            f'<p class="notice">{len(attempts.rows):,} rows: in the XLSX (sheet '
            f"{escape(attempts.name)}) and JSON formats of this report.</p>"
        )
    else:
        parts.append(_table(attempts, zone))
    stages = by_name.pop("lead_time_stages")
    parts.append(f"<h2>{escape(stages.title)}</h2>")
    if any(r["median_hours"] is not None for r in report.stages):
        parts.append(
            '<div class="charts">'
            + svg.bars(
                "Median hours per stage this week",
                [r["stage"] for r in report.stages],
                [r["median_hours"] for r in report.stages],
                lambda v: show(v, "hours", zone),
            )
            + "</div>"
        )
    parts.append(_table(stages, zone, heading=None))
    parts.extend(_table(t, zone) for t in by_name.values())
    parts.append("</body></html>")
    return "\n".join(parts)


def period_line(report: WeeklyReport) -> str:
    """`Monday 2026-11-16 to Sunday 2026-11-22 (Europe/Berlin); generated ...`."""
    sunday = report.week.monday + timedelta(days=6)
    return (
        f"{report.week.monday:%A %Y-%m-%d} to {sunday:%A %Y-%m-%d} ({report.week.timezone}); "
        f"production environments; generated {report.generated_at:%Y-%m-%d %H:%M} UTC"
    )


def notices(report: WeeklyReport) -> list[str]:
    """What a reader must know before the numbers: an empty warehouse, a week without deployments."""
    if report.warehouse_empty:
        return [
            "The warehouse holds no data yet: run `cdmetrics sync` (or `cdmetrics demo`) first. "
            "Every figure below is empty."
        ]
    if not report.metrics["deployment_frequency"]["deployments"]:
        return [
            f"No production deployment finished in {report.week.key} for the {report.label}: "
            "deployment, lead-time and failure figures are empty for this week."
        ]
    return []


def _trend_charts(report: WeeklyReport) -> str:
    zone = report.scope.zone
    labels = [row["week"].split("-")[1] for row in report.trend]
    charts = [
        svg.columns(
            title,
            labels,
            [row[key] for row in report.trend],
            lambda v, kind=kind: show(v, kind, zone),  # type: ignore[misc]
            partial=[row["partial"] for row in report.trend],
        )
        for key, title, kind in TREND_CHARTS
    ]
    return '<div class="charts">' + "".join(charts) + "</div>"


def _table(table: Table, zone: Any, heading: str | None = "") -> str:
    out = []
    if heading is not None:
        out.append(f"<h2>{escape(heading or table.title)}</h2>")
    if not table.rows:
        out.append(f'<p class="empty">{escape(table.empty)}</p>')
        return "\n".join(out)
    head = "".join(f"<th>{escape(header(title, kind))}</th>" for _, title, kind in table.columns)
    body = []
    rows, more = shown_rows(table)
    for row in rows:
        cells = []
        for key, _, kind in table.columns:
            text = cell(table, key, kind, row, zone)
            classes = ["n"] if kind in NUMERIC else []
            if kind == "change" and row.get(key):
                improved = (row[key] > 0) == (row.get("better") == "up")
                classes.append("good" if improved else "bad")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            if kind_of(kind, row) == "url" and str(row.get(key) or "").startswith(SAFE_LINKS):
                content = f'<a href="{escape(str(row[key]))}">link</a>'
            else:
                content = escape(text)
            cells.append(f"<td{attr}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    if more:
        out.append(f'<p class="empty">{escape(more)}</p>')
    return "\n".join(out)
