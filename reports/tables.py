"""The report's tables, shared by every renderer (HTML, Markdown, XLSX), and how values read.

A column has a kind: `text`, `count`, `hours`, `ratio` (a share, 0..1), `time` (an aware
datetime), `bool` or `url`. Renderers format by kind; the XLSX keeps numbers as numbers and times
as local times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from analytics import units
from reports.model import WeeklyReport

NONE = "\u2013"  # an en dash: no value
SHOWN_ROWS = 50  # rows a page (HTML, PDF, Markdown) shows per table; the XLSX and JSON have all


@dataclass(frozen=True)
class Table:
    """A titled table: columns as (key, header, kind), rows as dicts, and what to say when empty."""

    name: str
    title: str
    columns: tuple[tuple[str, str, str], ...]
    rows: list[dict[str, Any]]
    empty: str


# beside the headline when `[targets]` sets any
TARGET_COLUMNS = (("target", "Target", "text"), ("target_met", "Met target", "bool"))


def tables(report: WeeklyReport) -> list[Table]:
    """Every table of the report, in the order the report shows them."""
    n = report.notable
    return [
        Table(
            "headline",
            "Headline",
            (
                ("label", "Metric", "text"),
                ("value", "This week", "unit"),
                ("previous", "Last week", "unit"),
                ("change", "Change", "change"),
                ("numerator", "Count", "count"),
                ("denominator", "Of", "count"),
                ("level", "DORA level", "text"),
                *(TARGET_COLUMNS if any(r["target"] for r in report.headline) else ()),
            ),
            report.headline,
            "",
        ),
        Table(
            "trend",
            f"Last {len(report.trend)} weeks",
            (
                ("week", "Week", "text"),
                ("deployments", "Deployments", "count"),
                ("deployment_days", "Deployment days", "count"),
                ("lead_time_median", "Lead time median", "hours"),
                ("change_failure_rate", "Change failure rate", "ratio"),
                ("recovery_median", "Recovery median", "hours"),
                ("pipeline_failure_rate", "Pipeline failure rate", "ratio"),
                ("incidents", "Incidents", "count"),
            ),
            report.trend,
            "",
        ),
        Table(
            "services",
            "Production deployments per service",
            (
                ("service", "Service", "text"),
                ("team", "Team", "text"),
                ("deployments", "Deployments", "count"),
                ("deployment_days", "Days", "count"),
                ("lead_time_median_hours", "Lead time median", "hours"),
                ("failed_changes", "Failed changes", "count"),
                ("change_failure_rate", "Change failure rate", "ratio"),
                ("recovery_median_hours", "Recovery median", "hours"),
                ("pipelines", "Pipelines", "count"),
                ("pipeline_failure_rate", "Pipeline failure rate", "ratio"),
            ),
            report.services,
            "No service had a deployment or a pipeline this week.",
        ),
        Table(
            "environments",
            "Deployment attempts per service and environment",
            (
                ("service", "Service", "text"),
                ("environment", "Environment", "text"),
                ("successful", "Successful", "count"),
                ("failed", "Failed", "count"),
            ),
            report.environments,
            "No deployment finished this week.",
        ),
        Table(
            "lead_time_stages",
            "Lead-time breakdown (merge requests, median hours)",
            (
                ("stage", "Stage", "text"),
                ("median_hours", "This week", "hours"),
                ("previous_median_hours", "Last week", "hours"),
                ("negative_spans_dropped", "Negative spans dropped", "count"),
            ),
            report.stages,
            "",
        ),
        Table(
            "failures",
            "Failed changes and recoveries",
            (
                ("service", "Service", "text"),
                ("finished_at", "Deployed", "time"),
                ("ref", "Ref", "text"),
                ("reasons", "Reasons", "text"),
                ("recovered_at", "Recovered", "time"),
                ("recovery_hours", "Recovery", "hours"),
                ("deployment_url", "Deployment", "url"),
            ),
            report.failures,
            "No failed change this week.",
        ),
        Table(
            "incidents",
            "Incidents opened",
            (
                ("service", "Service", "text"),
                ("title", "Title", "text"),
                ("severity", "Severity", "text"),
                ("opened_at", "Opened", "time"),
                ("resolved_at", "Resolved", "time"),
                ("restore_hours", "Time to restore", "hours"),
                ("resolved_before_opened", "Resolved before opened", "bool"),
                ("url", "Link", "url"),
            ),
            report.incidents,
            "No incident opened this week.",
        ),
        Table(
            "drift",
            "Drift between environments (latest snapshot before the week's end)",
            (
                ("service", "Service", "text"),
                ("upstream", "Upstream", "text"),
                ("downstream", "Downstream", "text"),
                ("commits_behind", "Commits behind", "count"),
                ("drift_age_hours", "Drifting for", "hours"),
                ("downstream_ever_upstream", "Downstream ran upstream", "bool"),
                ("taken_at", "Snapshot", "time"),
            ),
            report.drift,
            "No drift snapshot before the week's end (`cdmetrics sync` or `derive` records one).",
        ),
        Table(
            "violations",
            "Policy violations new this week",
            (
                ("severity", "Severity", "text"),
                ("policy", "Policy", "text"),
                ("service", "Service", "text"),
                ("environment", "Environment", "text"),
                ("message", "What to do", "text"),
                ("occurred_at", "Happened", "time"),
                ("first_seen_at", "First seen", "time"),
                ("url", "Link", "url"),
            ),
            report.violations,
            "No new policy violation this week (`cdmetrics policy scan` records them).",
        ),
        Table(
            "quality_gates",
            "Quality gate of production deployments (SonarQube, before they started)",
            (
                ("service", "Service", "text"),
                ("deployments", "Deployments", "count"),
                ("green", "Green gate", "count"),
                ("red", "Went out red", "count"),
                ("missing", "No analysis", "count"),
                ("share_green", "Share green", "ratio"),
            ),
            report.quality_gates,
            "No production deployment this week.",
        ),
        Table(
            "slowest_merge_requests",
            "Slowest merge requests (lead time of their slowest change)",
            (
                ("service", "Service", "text"),
                ("merge_request", "Merge request", "text"),
                ("title", "Commit", "text"),
                ("lead_time_hours", "Lead time", "hours"),
                ("deployed_at", "Deployed", "time"),
                ("merge_request_url", "Link", "url"),
            ),
            n.get("slowest_merge_requests", []),
            "No change reached production this week.",
        ),
        Table(
            "longest_lived_branches",
            "Longest-lived branches (merge requests open at the week's end)",
            (
                ("service", "Service", "text"),
                ("branch", "Branch", "text"),
                ("title", "Merge request", "text"),
                ("author", "Author", "text"),
                ("created_at", "Opened", "time"),
                ("age_days", "Age (days)", "days"),
                ("web_url", "Link", "url"),
            ),
            n.get("longest_lived_branches", []),
            "No merge request was open at the week's end.",
        ),
        Table(
            "most_failing_pipelines",
            "Most-failing pipelines (per service and ref)",
            (
                ("service", "Service", "text"),
                ("ref", "Ref", "text"),
                ("job_name", "Job", "text"),
                ("failed", "Failed", "count"),
                ("pipelines", "Of", "count"),
                ("failure_rate", "Failure rate", "ratio"),
                ("last_failed_at", "Last failure", "time"),
            ),
            n.get("most_failing_pipelines", []),
            "No pipeline failed this week.",
        ),
    ]


def shown_rows(table: Table) -> tuple[list[dict[str, Any]], str | None]:
    """The rows a page shows, and a note when some are left to the XLSX and JSON."""
    if len(table.rows) <= SHOWN_ROWS:
        return table.rows, None
    return table.rows[:SHOWN_ROWS], (
        f"Showing {SHOWN_ROWS} of {len(table.rows)} rows; the XLSX and JSON formats have all."
    )


def kind_of(column_kind: str, row: dict[str, Any]) -> str:
    """The kind of a cell: `unit` and `change` columns take the headline row's unit."""
    if column_kind in ("unit", "change"):
        return str(row.get("unit", "count"))
    return column_kind


def show(value: Any, kind: str, zone: ZoneInfo, change: bool = False) -> str:
    """A value as the report prints it: hours with one decimal (days past 48 h), shares as
    percent (changes of shares in percentage points), times in the report's time zone."""
    if value is None:
        return NONE
    sign = "+" if change and value > 0 else ""
    if kind == "count":
        return f"{sign}{value:,}" if isinstance(value, int) else f"{sign}{value:,.1f}"
    if kind == "hours":
        return units.hours(value, NONE, signed=change)
    if kind == "days":
        return f"{value:.1f}"
    if kind == "ratio":
        return units.points(value, NONE) if change else units.percent(value, NONE)
    if kind == "time" and isinstance(value, datetime):
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if kind == "bool":
        return "yes" if value else "no"
    return str(value)


def cell(table: Table, key: str, kind: str, row: dict[str, Any], zone: ZoneInfo) -> str:
    """The text of one cell. A column of hours holds bare hours (its header says "(h)": one unit
    per column); a headline row's figure carries its own unit (h, or d from 48 h)."""
    value = row.get(key)
    if kind == "hours" and value is not None:
        return f"{value:,.1f}"
    return show(value, kind_of(kind, row), zone, change=kind == "change")


SUFFIX = {"hours": " (h)", "days": " (days)"}


def header(title: str, kind: str) -> str:
    """A column's header, with the unit its cells leave out."""
    return title + SUFFIX.get(kind, "")
