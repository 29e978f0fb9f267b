"""The report as an Excel workbook (openpyxl): an About sheet, then one sheet per table with a
frozen header row and typed cells — counts and hours as numbers, shares as numbers formatted as
percent, times as dates in the report's time zone (Excel has no time zones; the About sheet
names it), links as hyperlinks."""

from __future__ import annotations

from datetime import datetime
from io import BytesIO
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from reports.model import WeeklyReport
from reports.tables import Table, header, kind_of, tables

FORMATS = {"hours": "0.0", "days": "0.0", "ratio": "0.0%", "time": "yyyy-mm-dd hh:mm"}


def excel_value(value: Any, kind: str, zone: ZoneInfo) -> Any:
    """A cell value: numbers stay numbers, aware times become local times without a zone."""
    if isinstance(value, datetime):
        return value.astimezone(zone).replace(tzinfo=None)
    if kind == "count" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def render_xlsx(report: WeeklyReport) -> bytes:
    """The workbook as bytes."""
    zone = report.scope.zone
    book = Workbook()
    about = book.active
    about.title = "About"
    for label, value in (
        ("Report", report.title),
        ("Week", report.week.key),
        ("From", report.scope.since.replace(tzinfo=None)),
        ("Until (exclusive)", report.scope.until.replace(tzinfo=None)),
        ("Time zone", report.week.timezone),
        ("Scope", report.label),
        ("Generated (UTC)", report.generated_at.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)),
    ):
        about.append([label, value])
        if isinstance(value, datetime):
            about.cell(about.max_row, 2).number_format = FORMATS["time"]
    about.column_dimensions["A"].width, about.column_dimensions["B"].width = 20, 60
    for table in tables(report):
        _sheet(book, table, zone)
    out = BytesIO()
    book.save(out)
    return out.getvalue()


def _sheet(book: Workbook, table: Table, zone: ZoneInfo) -> None:
    sheet = book.create_sheet(table.name[:31])
    kinds = [kind if kind not in ("unit", "change") else "number" for _, _, kind in table.columns]
    sheet.append(
        [header(title, kind) for (key, title, _), kind in zip(table.columns, kinds, strict=True)]
    )
    for c in sheet[1]:
        c.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for row in table.rows:
        values = [
            excel_value(row.get(key), kind_of(kind, row), zone) for key, _, kind in table.columns
        ]
        sheet.append(values)
        for index, (key, _, kind) in enumerate(table.columns, start=1):
            target = sheet.cell(sheet.max_row, index)
            real = kind_of(kind, row)
            if real in FORMATS:
                target.number_format = FORMATS[real]
            if isinstance(target.value, str) and target.value.startswith("="):
                target.data_type = "s"  # a title like "=cmd|..." is text, never a formula
            if real == "url" and row.get(key):
                target.hyperlink = str(row[key])
    for index, (key, title, _) in enumerate(table.columns, start=1):
        longest = max([len(title), *(len(str(r.get(key) or "")) for r in table.rows[:200])])
        sheet.column_dimensions[get_column_letter(index)].width = min(max(longest + 2, 8), 60)
