"""How a figure is written for people, in one place, so every human surface (the CLI's table, the
dashboard, the weekly report) writes the same number the same way.

Machine outputs (JSON, CSV, the HTTP API, notebooks' DataFrames) carry durations as hours and
rates as shares (0..1), unrounded. Human surfaces format that same value: hours with one decimal
under `DAYS_FROM_HOURS`, days with one decimal from there (80.3 h is written 3.3 d), rates as
percent with one decimal, changes of rates in percentage points (docs/METRICS.md, "Units").
"""

from __future__ import annotations

import math

DAYS_FROM_HOURS = 48.0  # from two days on, a duration is written in days


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def hours(value: float | None, none: str = "—", signed: bool = False) -> str:
    """`37.5 h` under two days, `3.3 d` from there (`+`/`-` first when `signed`); `none` for no
    value (None or NaN)."""
    if _missing(value):
        return none
    assert value is not None
    sign = "+" if signed and value > 0 else ("-" if value < 0 else "")
    size = abs(value)
    return f"{sign}{size:.1f} h" if size < DAYS_FROM_HOURS else f"{sign}{size / 24:.1f} d"


def percent(value: float | None, none: str = "—") -> str:
    """A share (0..1) as `8.4 %`; `none` for no value."""
    return none if _missing(value) else f"{value * 100:.1f} %"  # type: ignore[operator]


def points(value: float | None, none: str = "—") -> str:
    """A change of a share in percentage points, with its sign: `+1.5 pp`."""
    return none if _missing(value) else f"{value * 100:+.1f} pp"  # type: ignore[operator]


__all__ = ["DAYS_FROM_HOURS", "hours", "percent", "points"]
