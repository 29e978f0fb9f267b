"""The four DORA tiles: each metric's value, performance level, sparkline of the last 12 weeks (or
months; whole ones only: a partial current week would read as a drop), whether the period meets
its target, and change from the week (month) before: the last complete ISO week (month) of the
period against the one before it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from analytics.scope import Scope
from config.settings import Target
from dashboard import data, drill, show

SPARKLINE_WEEKS = 12
# the list behind each tile and its filters (what the tile counts)
BEHIND: dict[str, tuple[str, str, dict[str, str]]] = {
    "deployment_frequency": (
        "deployments",
        "The deployments",
        {"status": "success", "kind": "app"},
    ),
    "lead_time": ("changes", "The changes", {}),
    "change_failure_rate": ("deployments", "The failed changes", {"failed": "1"}),
    "recovery_time": ("deployments", "The failed changes", {"failed": "1"}),
}
# the rows the tiles read: no merge requests (the stage breakdown is on the lead time page)
PARTS = ("deployments", "changes", "incidents")
Figures = dict[str, Any]


@dataclass(frozen=True)
class Tile:
    """How one metric of the metrics JSON becomes a tile."""

    label: str
    value: Callable[[Figures], str]
    weekly: Callable[[Figures], float | None]  # the figure a week is drawn and compared by
    change: Callable[[float, float], str | None]  # the change, written (never zero)
    caption: Callable[[Figures], str]
    help: str
    target: tuple[str, Callable[[Figures], float | None]]  # `[targets]` key, the figure judged
    inverse: bool = True  # down is good


DORA: dict[str, Tile] = {
    "deployment_frequency": Tile(
        "Deployment frequency",
        lambda m: show.number(m["median_days_per_week"], "days/week"),
        lambda m: m["deployment_days"],
        lambda now, before: f"{now - before:+g} days",
        lambda m: f"{m['deployments']:,} production deployments on {m['deployment_days']} days",
        "Median over the weeks of the period of the days with a production deployment.",
        ("deployment_days", lambda m: m["median_days_per_week"]),
        inverse=False,
    ),
    "lead_time": Tile(
        "Lead time for changes",
        lambda m: show.hours(m["median_hours"]),
        lambda m: m["median_hours"],
        lambda now, before: show.signed_hours(now - before),
        lambda m: f"p90 {show.hours(m['p90_hours'])} · {m['changes']:,} changes",
        "Median time from a change's first commit to its first production deployment.",
        ("lead_time_median", lambda m: m["median_hours"]),
    ),
    "change_failure_rate": Tile(
        "Change failure rate",
        lambda m: show.percent(m["rate"]),
        lambda m: m["rate"],
        lambda now, before: show.points(now - before),
        lambda m: f"{show.ratio(m['failed'], m['deployments'])} deployments failed",
        "Production deployments followed by an incident, a rollback or a hotfix.",
        ("change_failure_rate", lambda m: m["rate"]),
    ),
    "recovery_time": Tile(
        "Failed deployment recovery time",
        lambda m: show.hours(m["median_hours"]),
        lambda m: m["median_hours"],
        lambda now, before: show.signed_hours(now - before),
        lambda m: (
            f"{m['failures']:,} recovered, {m['unrecovered']:,} not yet · incidents restored "
            f"in {show.hours(m['incident_restore_median_hours'])}"
            + show.resolved_before_opened(m["incidents_resolved_before_opened"])
        ),
        "Median time from a failed change to the next good deployment or the incident's end.",
        ("recovery_median", lambda m: m["median_hours"]),
    ),
}


def change(
    tile: Tile, name: str, pair: tuple[dict[str, Any], dict[str, Any]] | None
) -> str | int | None:
    """The tile's week-over-week change: written with its sign, 0 when there is none (shown
    grey, without an arrow), None when a week has no figure."""
    if pair is None:
        return None
    now, before = (tile.weekly(row[name]) for row in pair)
    if now is None or before is None:
        return None
    return 0 if now == before else tile.change(now, before)


def compared(key: str) -> str:
    """How a tile names a week (`W09`) or a month (`2026-02`) it compares."""
    return key[-3:] if "-W" in key else key


def target_caption(tile: Tile, figures: Figures, targets: dict[str, Target]) -> str:
    """` · target < 2d: met` (or `missed`) for a tile whose metric has a `[targets]` entry."""
    key, figure = tile.target
    target = targets.get(key)
    if target is None:
        return ""
    met = target.met(figure(figures))
    return f" · target {target.text}: " + {True: "met", False: "missed", None: "no figure"}[met]


def dora_tiles(
    metrics: dict[str, Any],
    scope: Scope,
    by: str = "week",
    targets: dict[str, Target] | None = None,
) -> None:
    """The four DORA tiles side by side, from `data.metrics(...)` of the four metrics: the
    change is the last complete week (or month, `by`) of the period against the one before;
    each says whether the period meets its target (`[targets]`, a team's when one is chosen)."""
    pair = data.period_over_period(metrics["trend"], scope, by)
    described = f"{compared(pair[0]['bucket'])} vs {compared(pair[1]['bucket'])}" if pair else None
    for column, (name, tile) in zip(st.columns(len(DORA)), DORA.items(), strict=True):
        figures = metrics["total"][name]
        whole = [row for row in metrics["trend"] if not row["partial"]]  # no false drop
        series = [tile.weekly(row[name]) for row in whole[-SPARKLINE_WEEKS:]]
        with column:
            show.tile(
                tile.label,
                tile.value(figures),
                level_name=figures["level"],
                delta=change(tile, name, pair),
                delta_description=described,
                inverse=tile.inverse,
                series=[v for v in series if v is not None],
                caption=tile.caption(figures) + target_caption(tile, figures, targets or {}),
                help=tile.help,
            )
            target, label, extra = BEHIND[name]
            drill.link(target, label, **extra)
