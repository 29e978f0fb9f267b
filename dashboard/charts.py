"""Plotly figures of small, already aggregated DataFrames (one function per kind of chart).

Figures receive aggregates, never raw rows: a chart of a large organisation's quarter stays a
few kilobytes in the browser.

Charts that do not mislead (issue #16): count and rate axes start at zero; a week the period or
the clock cuts (a `partial` column, `analytics.scope.Scope.partial`) is hatched with an open
marker and labelled "partial", so the current week never reads as a drop; severities are coloured
error red, warn amber, info grey (`SEVERITY_COLOURS`, the one map); count heatmaps use a neutral
scale (`NEUTRAL_SCALE`), the warm one is for what is worse when larger (drift age, violations).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

HEIGHT = 320
LEVEL_SCALE = "YlOrRd"  # larger is worse: drift age, violations
NEUTRAL_SCALE = "Blues"  # counts that are neither good nor bad: deployments
SEVERITY_COLOURS = {"error": "#d62728", "warn": "#f0a202", "info": "#9aa5b1"}
COLOUR_MAPS = {"severity": SEVERITY_COLOURS}
PALETTE = px.colors.qualitative.Plotly  # the other series, as Plotly Express colours them
PARTIAL = "partial"  # the column flagging a week the period or the clock cuts
FROM_ZERO = {"rangemode": "tozero"}


def _layout(figure: go.Figure, height: int = HEIGHT, **kwargs: object) -> go.Figure:
    figure.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend_title_text="", **kwargs
    )
    return figure


CATEGORIES = {"type": "category", "title": ""}  # weeks and months as named, never as dates


def _cut(frame: pd.DataFrame, x: str) -> set[Any]:
    """The partial x values of `frame` (none without a `partial` column)."""
    if PARTIAL not in frame.columns:
        return set()
    return set(frame.loc[frame[PARTIAL].astype(bool), x])


def _partial_marks(figure: go.Figure, frame: pd.DataFrame, x: str) -> go.Figure:
    """Hatch the bars and open the markers of the partial x values, and label them."""
    cut = _cut(frame, x)
    if not cut:
        return figure
    for trace in figure.data:
        flags = [value in cut for value in trace.x]
        if isinstance(trace, go.Bar):
            trace.marker.pattern.shape = _hatches(flags)
        elif isinstance(trace, go.Scatter):
            trace.marker.symbol = ["circle-open" if f else "circle" for f in flags]
    return _label_partial(figure, cut)


def _hatches(flags: list[bool]) -> list[str]:
    return ["/" if f else "" for f in flags]


def _label_partial(figure: go.Figure, cut: set[Any]) -> go.Figure:
    for value in sorted(cut):
        figure.add_annotation(
            x=value, y=1, yref="paper", text=PARTIAL, showarrow=False, font={"color": "#777"}
        )
    return figure


def bars(
    frame: pd.DataFrame, x: str, y: str, color: str | None = None, title: str = ""
) -> go.Figure:
    """Bars of `y` over `x` (categories: a month `2026-02` stays a month) from zero, stacked by
    `color` (severities in their colours, known ones first in their order; others in the order
    they come, in Plotly's palette), partial x values hatched.
    Built as plain traces, each hatched as it is made: Plotly Express took five times as long
    for the forty teams of a large organisation's weeks, on every render of the page."""
    colours = COLOUR_MAPS.get(color or "", {})
    groups: list[tuple[str, pd.DataFrame]]
    if color is None:
        groups = [(y, frame)]
    else:
        present = list(dict.fromkeys(frame[color]))
        keys = [k for k in colours if k in present] + [k for k in present if k not in colours]
        by_key = dict(tuple(frame.groupby(color, sort=False)))
        groups = [(str(k), by_key[k]) for k in keys]
    cut = _cut(frame, x)
    hover = f"{x}=%{{x}}<br>{y}=%{{y}}<extra>%{{fullData.name}}</extra>"
    figure = go.Figure(
        [
            go.Bar(
                x=rows[x].tolist(),
                y=rows[y].tolist(),
                name=name,
                showlegend=color is not None,
                hovertemplate=hover,
                marker={
                    "color": colours.get(name, PALETTE[i % len(PALETTE)]),
                    **(
                        {"pattern": {"shape": _hatches([v in cut for v in rows[x]])}} if cut else {}
                    ),
                },
            )
            for i, (name, rows) in enumerate(groups)
        ]
    )
    _label_partial(figure, cut)
    return _layout(
        figure,
        title=title,
        barmode="stack",
        xaxis=CATEGORIES,
        yaxis={"title": y.replace("_", " "), **FROM_ZERO},
    )


def lines(frame: pd.DataFrame, x: str, ys: dict[str, str], unit: str, title: str = "") -> go.Figure:
    """One line per column of `ys` (column -> legend label) over the categories `x`, from zero."""
    figure = go.Figure()
    for column, label in ys.items():
        figure.add_trace(go.Scatter(x=frame[x], y=frame[column], name=label, mode="lines+markers"))
    _partial_marks(figure, frame, x)
    return _layout(
        figure,
        title=title,
        xaxis=CATEGORIES,
        yaxis={"title": unit, **FROM_ZERO},
        hovermode="x unified",
    )


def bars_and_rate(
    frame: pd.DataFrame, x: str, count: str, rate: str, count_label: str, rate_label: str
) -> go.Figure:
    """Counts as bars and a rate (0..1) as a line on a second axis, over the categories `x`; both
    from zero."""
    figure = go.Figure()
    figure.add_trace(go.Bar(x=frame[x], y=frame[count], name=count_label, opacity=0.6))
    figure.add_trace(
        go.Scatter(x=frame[x], y=frame[rate], name=rate_label, mode="lines+markers", yaxis="y2")
    )
    _partial_marks(figure, frame, x)
    return _layout(
        figure,
        xaxis=CATEGORIES,
        yaxis={"title": count_label, **FROM_ZERO},
        yaxis2={
            "title": rate_label,
            "overlaying": "y",
            "side": "right",
            "tickformat": ".0%",
            **FROM_ZERO,
        },
        hovermode="x unified",
    )


def stages(frame: pd.DataFrame) -> go.Figure:
    """The merge-request stages' median hours as one horizontal stacked bar per row `label`."""
    figure = px.bar(frame, x="hours", y="label", color="stage", orientation="h", text_auto=".1f")
    return _layout(figure, height=200, barmode="stack", xaxis_title="median hours", yaxis_title="")


def calendar(frame: pd.DataFrame, value: str = "deployments") -> go.Figure:
    """A calendar heatmap: ISO weeks across, weekdays down, one cell per day."""
    weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    grid = frame.pivot_table(index="weekday", columns="week", values=value, aggfunc="sum")
    grid = grid.reindex(weekdays)
    days = frame.pivot_table(index="weekday", columns="week", values="day", aggfunc="first")
    days = days.reindex(weekdays).reindex(columns=grid.columns)
    figure = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=list(grid.columns),
            y=weekdays,
            customdata=days.values,
            colorscale=NEUTRAL_SCALE,
            hovertemplate="%{customdata}: %{z} " + value + "<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    return _layout(figure, height=260, yaxis={"autorange": "reversed"})


def matrix(
    frame: pd.DataFrame,
    rows: str,
    columns: str,
    value: str,
    text: str | None = None,
    scale: str = NEUTRAL_SCALE,
) -> go.Figure:
    """A heatmap of `value` per `rows` x `columns` (e.g. service x environment), cells labelled
    with `text` (default: the value); `scale` LEVEL_SCALE for what is worse when larger."""
    grid = frame.pivot_table(index=rows, columns=columns, values=value, aggfunc="sum", sort=False)
    labels = (
        frame.pivot_table(index=rows, columns=columns, values=text, aggfunc="first", sort=False)
        .reindex(index=grid.index, columns=grid.columns)
        .fillna("")
        .values
        if text
        else grid.fillna(0).values
    )
    figure = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=list(grid.columns),
            y=list(grid.index),
            text=labels,
            texttemplate="%{text}",
            colorscale=scale,
            hovertemplate="%{y} · %{x}: %{z}<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    figure.update_yaxes(autorange="reversed")  # first row on top, as in the tables
    return _layout(figure, height=max(180, 26 * len(grid.index) + 90))


def histogram(frame: pd.DataFrame, x_title: str, y_title: str) -> go.Figure:
    """Pre-binned counts (`bucket`, `count`) as bars."""
    figure = px.bar(frame, x="bucket", y="count")
    return _layout(figure, xaxis_title=x_title, yaxis={"title": y_title, **FROM_ZERO})


def scatter(
    frame: pd.DataFrame, x: str, y: str, color: str, hover: list[str], y_title: str, log: bool
) -> go.Figure:
    """Points of `y` over time `x`, coloured by `color`."""
    figure = px.scatter(frame, x=x, y=y, color=color, hover_data=hover, log_y=log)
    return _layout(figure, xaxis_title="", yaxis_title=y_title)


def timeline(frame: pd.DataFrame, order: list[str]) -> go.Figure:
    """A service's deployments: time across, environments down (promotion path order), one
    marker per deployment labelled with its commit."""
    figure = px.scatter(
        frame,
        x="finished_at",
        y="environment",
        color="environment",
        symbol="rollback",
        hover_data=["commit", "ref", "image_digest"],
        category_orders={"environment": order},
    )
    figure.update_traces(marker={"size": 10})
    return _layout(figure, xaxis_title="", yaxis_title="", showlegend=False)
