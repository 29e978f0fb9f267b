"""The weekly report's formats: a self-contained HTML page, the same headline table in Markdown,
an XLSX that reads back equal to the data, a PDF whose text holds the headline numbers and whose
pages render (Debian's pdftotext and pdftoppm), and the JSON contract."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from reports.markdown import markdown_table, render_markdown, summary
from reports.model import WeeklyReport, build_report
from reports.render import render, report_json
from reports.tables import cell, header, kind_of, tables
from reports.week import parse_week
from tests.test_reports import RULES, fill
from warehouse.engine import make_engine
from warehouse.migrate import upgrade


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('reports') / 'w.db'}")
    upgrade(engine)
    fill(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def report(warehouse: Engine) -> WeeklyReport:
    return build_report(warehouse, parse_week("2026-W47", "Europe/Berlin"), rules=RULES)


def headline_texts(report: WeeklyReport) -> list[str]:
    """Each headline row's label and its this-week value as the report prints it."""
    table = tables(report)[0]
    zone = report.scope.zone
    return [f"{row['label']}|{cell(table, 'value', 'unit', row, zone)}" for row in table.rows]


class Resources(HTMLParser):
    """Every attribute value and inline style that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.fetching: list[str] = []
        self.scripts = 0
        self.style = ""
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.in_style = tag == "style"
        for name, value in attrs:
            if tag == "a" and name == "href":
                continue  # a hyperlink is followed by the reader, never fetched
            if value and re.search(r"(https?:)?//", value):
                self.fetching.append(f"<{tag} {name}={value}>")

    def handle_endtag(self, tag: str) -> None:
        self.in_style = False

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.style += data


def test_html_is_self_contained(report: WeeklyReport) -> None:
    html = render(report, "html").decode()
    parser = Resources()
    parser.feed(html)
    assert parser.fetching == []
    assert parser.scripts == 0
    assert "url(" not in parser.style and "@import" not in parser.style
    assert "<link" not in html and "<img" not in html and "<iframe" not in html
    assert html.count("<svg") >= 5  # four trend charts, services, stages: all inline
    assert 'href="http://gitlab.sandbox.test/' in html  # links to GitLab stay hyperlinks
    for text in headline_texts(report):
        label, value = text.split("|")
        assert re.search(
            rf"<td>{re.escape(label)}</td><td class=\"n\">{re.escape(value)}</td>", html
        )


def test_markdown_has_the_same_headline_table(report: WeeklyReport) -> None:
    md = render_markdown(report)
    short = summary(report)
    headline = markdown_table(tables(report)[0], report.scope.zone)
    assert headline in md and headline in short
    rows = [line for line in headline.splitlines()[2:]]
    assert len(rows) == len(report.headline)
    for row, text in zip(rows, headline_texts(report), strict=True):
        label, value = text.split("|")
        assert row.startswith(f"| {label} | {value} |")
    for table in tables(report)[1:]:
        assert f"## {table.title}" in md
    assert "\n## " not in short  # the chat summary is the headline only


def test_a_column_of_hours_has_one_unit_in_its_header(report: WeeklyReport) -> None:
    """Columns of hours say "(h)" in the header and hold bare hours (never "3.2 d" beside
    "37.5 h"); the headline's figures, a unit per row, keep theirs."""
    zone = report.scope.zone
    md = render_markdown(report)
    seen = 0
    for table in tables(report)[1:]:
        for key, title, kind in table.columns:
            if kind != "hours":
                continue
            assert f"{title} (h)" in md
            for row in table.rows:
                if row.get(key) is not None:
                    seen += 1
                    assert re.fullmatch(r"-?[\d,]+\.\d", cell(table, key, kind, row, zone))
    assert seen


def test_xlsx_reads_back_equal_to_the_data(report: WeeklyReport) -> None:
    book = pd.read_excel(BytesIO(render(report, "xlsx")), sheet_name=None, engine="openpyxl")
    zone = report.scope.zone
    assert list(book) == ["About", *(t.name for t in tables(report))]
    for table in tables(report):
        sheet = book[table.name]
        assert list(sheet.columns) == [header(t, kind) for _, t, kind in table.columns]
        assert len(sheet) == len(table.rows)
        for (key, _, kind), column in zip(table.columns, sheet.columns, strict=True):
            for row, got in zip(table.rows, sheet[column], strict=True):
                want = row.get(key)
                if want is None:
                    assert pd.isna(got), (table.name, key)
                elif isinstance(want, datetime):
                    assert got == pd.Timestamp(want.astimezone(zone).replace(tzinfo=None))
                elif isinstance(want, bool) or kind_of(kind, row) in ("text", "url"):
                    assert got == want, (table.name, key)
                else:
                    assert got == pytest.approx(want), (table.name, key)
    assert len(book["services"]) > 0 and len(book["failures"]) > 0


def test_xlsx_cells_are_typed_and_headers_frozen(report: WeeklyReport) -> None:
    from openpyxl import load_workbook

    book = load_workbook(BytesIO(render(report, "xlsx")))
    for table in tables(report):
        assert book[table.name].freeze_panes == "A2"
    failures = book["failures"]
    assert failures["B2"].is_date and failures["B2"].number_format == "yyyy-mm-dd hh:mm"
    assert isinstance(book["services"]["C2"].value, int)
    assert book["headline"]["B6"].number_format == "0.0%"  # change failure rate, a share


def test_json_follows_the_contract(report: WeeklyReport) -> None:
    data = json.loads(render(report, "json"))
    assert data["report"] == "weekly" and data["week"] == "2026-W47"
    assert data["since"] == "2026-11-16T00:00:00+01:00" and data["timezone"] == "Europe/Berlin"
    assert (
        data["metrics"]["deployment_frequency"]["deployments"]
        == report.metrics["deployment_frequency"]["deployments"]
    )
    assert [r["week"] for r in data["trend"]][-1] == "2026-W47"
    assert set(data["notable"]) == {
        "slowest_merge_requests",
        "longest_lived_branches",
        "most_failing_pipelines",
    }
    for key in (
        "headline",
        "services",
        "environments",
        "lead_time_stages",
        "failures",
        "incidents",
        "drift",
        "violations",
        "quality_gates",
    ):
        assert isinstance(data[key], list), key
    assert (
        json.loads(json.dumps(report_json(report), default=str))["scope"]["label"]
        == "whole organisation"
    )


def need(binary: str) -> str:
    """The binary's path, or skip saying why (fail when CI or CDMETRICS_REQUIRE_BROWSER is set)."""
    path = shutil.which(binary)
    if path:
        return path
    reason = f"no `{binary}` here (Debian: `make report-deps` installs poppler-utils and pango)"
    if os.environ.get("CDMETRICS_REQUIRE_BROWSER") == "1" or os.environ.get("CI"):
        pytest.fail(f"{reason}; CI / CDMETRICS_REQUIRE_BROWSER=1 makes this a failure")
    pytest.skip(reason)


def test_pdf_text_holds_the_headline_and_its_pages_render(
    report: WeeklyReport, tmp_path: Path
) -> None:
    pdftotext, pdftoppm = need("pdftotext"), need("pdftoppm")
    try:
        pdf_bytes = render(report, "pdf")
    except OSError as exc:  # WeasyPrint could not load pango
        need(f"pango ({exc})")
    pdf = tmp_path / "weekly.pdf"
    pdf.write_bytes(pdf_bytes)
    text = subprocess.run(
        [pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert report.title in text
    attempts = "Deployment attempts per service and environment"
    assert attempts in text and "in the XLSX (sheet environments)" in text  # not its rows
    assert report.environments and "in the XLSX" not in render(report, "html").decode()
    lines = text.splitlines()
    for pair in headline_texts(report):
        label, value = pair.split("|")
        assert any(label in line and value in line for line in lines), pair
    subprocess.run([pdftoppm, "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    info = subprocess.run(
        [need("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    count = re.search(r"Pages:\s+(\d+)", info)
    assert count is not None, info
    assert len(pages) == int(count[1]) >= 2
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 2000 for p in pages)


def test_the_json_contract_is_documented(report: WeeklyReport) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "REPORTS.md").read_text(encoding="utf-8")
    data = json.loads(render(report, "json"))
    rows = [(k, v) for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
    rows += [(k, v) for k, v in data["notable"].items() if v]
    for key in data:
        assert f'"{key}"' in doc, key
    for name, table in rows:
        for column in table[0]:
            assert f'"{column}"' in doc, f"{name}.{column} is not in docs/REPORTS.md"


def test_pages_show_the_first_rows_and_say_where_the_rest_are(
    report: WeeklyReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reports.tables.SHOWN_ROWS", 5)
    total = len(report.violations)
    assert total > 5
    note = f"Showing 5 of {total} rows; the XLSX and JSON formats have all."
    assert note in render(report, "html").decode()
    table = next(t for t in tables(report) if t.name == "violations")
    md = markdown_table(table, report.scope.zone)
    assert md.count("\n| ") == 5 and md.endswith(f"_{note}_")
    book = pd.read_excel(BytesIO(render(report, "xlsx")), sheet_name="violations")
    assert len(book) == total


def test_outside_text_is_never_a_formula_nor_a_script_link(report: WeeklyReport) -> None:
    """Titles, branch names and links come from other systems: a title starting with `=` is text in
    the XLSX, and a link of another scheme than http(s) is no link in the HTML."""
    import dataclasses

    from openpyxl import load_workbook

    table = next(
        t
        for t in tables(report)
        if t.rows
        and any(kind == "text" for _, _, kind in t.columns)
        and any(kind == "url" for _, _, kind in t.columns)
    )
    text_key = next(k for k, _, kind in table.columns if kind == "text")
    url_key = next(k for k, _, kind in table.columns if kind == "url")
    field = next(
        f.name for f in dataclasses.fields(report) if getattr(report, f.name) is table.rows
    )
    evil = [
        {**table.rows[0], text_key: '=HYPERLINK("http://x.test","y")', url_key: "javascript:alert(1)"},
        *table.rows[1:],
    ]  # fmt: skip
    hostile = dataclasses.replace(report, **{field: evil})
    book = load_workbook(BytesIO(render(hostile, "xlsx")))
    column = 1 + [k for k, _, _ in table.columns].index(text_key)
    cell_ = book[table.name].cell(2, column)
    assert cell_.data_type == "s" and cell_.value.startswith("=HYPERLINK")
    assert 'href="javascript:' not in render(hostile, "html").decode()
