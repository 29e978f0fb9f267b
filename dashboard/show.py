"""How figures are written and laid out: hours, rates and durations in words a lead reads at a
glance, DORA levels as coloured badges, metric tiles, tables with links, charts, notices.

The formatting functions are plain (no Streamlit), so tests compare what a page shows with the
analytics API's numbers written the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st
from plotly.graph_objects import Figure

from analytics import units

LEVEL_COLOURS = {"elite": "green", "high": "blue", "medium": "orange", "low": "red"}
DASH = "—"


def hours(value: float | None) -> str:
    """`37.5 h` under two days, `3.2 d` beyond; a dash for no value (`analytics.units`)."""
    return units.hours(value, DASH)


def in_hours(value: float | None) -> float | None:
    """Hours to a tenth, for a table column headed "(h)": one unit for the whole column (a
    column of `37.5 h` and `3.2 d` reads wrong when sorted or compared); None stays None."""
    return None if value is None or pd.isna(value) else round(float(value), 1)


def resolved_before_opened(count: int) -> str:
    """` · N resolved before opened` (left out of time to restore); empty when there are none."""
    return f" · {count:,} resolved before opened" if count else ""


def signed_hours(value: float | None) -> str | None:
    """A change in hours with its sign (None: no change to show)."""
    return None if value is None else units.hours(value, signed=True)


def percent(value: float | None) -> str:
    """`12.5 %`; a dash for no value."""
    return units.percent(value, DASH)


def points(value: float | None) -> str | None:
    """A change of a rate in percentage points, with its sign."""
    return None if value is None else units.points(value)


def seconds(value: float | None) -> str:
    """`45 s` under two minutes, `8.3 min` beyond; a dash for no value."""
    if value is None:
        return DASH
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def number(value: float | None, unit: str = "") -> str:
    """A count or a median count (`4`, `2.5`), with an optional unit; a dash for no value."""
    if value is None:
        return DASH
    text = f"{value:g}" if isinstance(value, float) else f"{value:,}"
    return f"{text} {unit}".strip()


def ratio(numerator: int, denominator: int) -> str:
    """`9 of 83`: the numerator and denominator behind a rate."""
    return f"{numerator:,} of {denominator:,}"


def level(name: str | None) -> None:
    """A DORA performance level as a coloured badge ("no data" in grey)."""
    if name is None:
        st.badge("no data", color="gray")
    else:
        st.badge(name, color=LEVEL_COLOURS.get(name, "gray"))  # type: ignore[arg-type]


def tile(
    label: str,
    value: str,
    *,
    level_name: str | bool | None = False,
    delta: str | int | None = None,
    delta_description: str | None = None,
    inverse: bool = False,
    series: Sequence[float] | None = None,
    caption: str | None = None,
    help: str | None = None,
) -> None:
    """A bordered metric: its value, the change (`delta`; `inverse` when down is good), a
    sparkline of `series`, its DORA level (when `level_name` is not False) and a caption."""
    with st.container(border=True):
        st.metric(
            label,
            value,
            delta=delta,
            delta_color="inverse" if inverse else "normal",
            delta_description=delta_description if delta is not None else None,
            chart_data=list(series) if series else None,
            help=help,
        )
        if level_name is not False:
            level(level_name if isinstance(level_name, str) else None)
        if caption:
            st.caption(caption)


def table(
    frame: pd.DataFrame,
    links: dict[str, str] | None = None,
    columns: dict[str, str] | None = None,
    height: int | None = None,
    key: str | None = None,
    helps: dict[str, str] | None = None,
    link_texts: dict[str, str] | None = None,
) -> None:
    """A table; `links` maps URL columns to their heading (shown as links), `columns` renames
    and orders the other columns shown (None: all, as they are), `helps` explains columns in
    their header's tooltip, `link_texts` says what a link column's links read (default "open")."""
    links = links or {}
    texts = link_texts or {}
    shown = list(columns) if columns else [c for c in frame.columns if c not in links]
    shown += [c for c in links if c in frame.columns]
    config: dict[str, Any] = {
        name: st.column_config.LinkColumn(
            heading, display_text=texts.get(name, "open"), help=(helps or {}).get(name)
        )
        for name, heading in links.items()
    }
    for name, heading in (columns or {}).items():
        explained = (helps or {}).get(name)
        config.setdefault(
            name, st.column_config.Column(heading, help=explained) if explained else heading
        )
    with st.container(key=key):  # the key names the table (tests find it by the key)
        st.dataframe(
            frame[[c for c in shown if c in frame.columns]],
            hide_index=True,
            column_config=config,
            height=height if height is not None else "auto",
        )


def chart(figure: Figure, key: str | None = None, select: bool = False) -> Any:
    """A Plotly chart across the column's width; with `select`, clicking a bar or point reruns
    the page and this returns the selection event (for a drill-down link)."""
    config = {"displaylogo": False}
    if select:
        return st.plotly_chart(
            figure, key=key, config=config, on_select="rerun", selection_mode="points"
        )
    st.plotly_chart(figure, key=key, config=config)
    return None


def trend(metrics: dict[str, Any], by: str, **columns: tuple[str, str]) -> pd.DataFrame:
    """The trend rows of `data.metrics` as a frame: the week or month (column `by`), `partial`,
    and each of `columns` as name=(metric, figure)."""
    rows = metrics["trend"]
    return pd.DataFrame(
        {
            by: [w["bucket"] for w in rows],
            "partial": [w["partial"] for w in rows],
            **{name: [w[m][f] for w in rows] for name, (m, f) in columns.items()},
        }
    )


def nothing(what: str) -> None:
    """The note a section shows when its scope holds nothing."""
    st.caption(f"No {what} in this scope.")
