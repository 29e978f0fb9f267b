"""Small statistics shared by the metrics: percentiles as PostgreSQL's percentile_cont computes them
(linear interpolation between closest ranks, pandas' default), DORA performance levels, and time
buckets (days, ISO weeks, months) in the configured time zone."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

BUCKET = re.compile(r"(?P<year>\d{4})-(?:W(?P<week>\d{2})|(?P<month>\d{2}))")


def percentile(values: Sequence[float], q: float, ordered: bool = False) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks; None when empty.
    `ordered`: the values are sorted already (several quantiles of one list sort it once)."""
    if not values:
        return None
    ranked = values if ordered else sorted(values)
    position = (len(ranked) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ranked[low] + (ranked[high] - ranked[low]) * (position - low)


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar day of `moment` in `zone`."""
    return moment.astimezone(zone).date()


def week_key(day: date) -> str:
    """ISO week of a day, as `2026-W47`."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def month_key(day: date) -> str:
    return f"{day.year}-{day.month:02d}"


def weeks_between(since: datetime, until: datetime, zone: ZoneInfo) -> list[str]:
    """Every ISO week (local) that intersects [since, until)."""
    first = local_day(since, zone)
    last = local_day(until - timedelta(microseconds=1), zone)
    day = first - timedelta(days=first.weekday())
    keys = []
    while day <= last:
        keys.append(week_key(day))
        day += timedelta(days=7)
    return keys


def months_between(since: datetime, until: datetime, zone: ZoneInfo) -> list[str]:
    first = local_day(since, zone)
    last = local_day(until - timedelta(microseconds=1), zone)
    keys, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        keys.append(f"{year}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return keys


def bucket_end(key: str, zone: ZoneInfo) -> datetime:
    """The local midnight ending a week (`2026-W47`) or month (`2026-11`) key."""
    return bucket_bounds(key, zone)[1]


def bucket_bounds(key: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The local midnights starting and ending a week (`2026-W47`) or month (`2026-11`) key;
    ValueError naming the key when it is neither."""
    found = BUCKET.fullmatch(key)
    try:
        if found is None:
            raise ValueError("expected YYYY-Www or YYYY-MM")
        year, week, month = found.group("year", "week", "month")
        if week:
            first = date.fromisocalendar(int(year), int(week), 1)
            after = first + timedelta(days=7)
        else:
            first = date(int(year), int(month), 1)
            after = date(int(year) + int(month) // 12, int(month) % 12 + 1, 1)
    except ValueError as exc:
        raise ValueError(
            f"{key!r} is neither an ISO week (2026-W05) nor a month (2026-02): {exc}"
        ) from None
    return tuple(datetime.combine(d, time(0), tzinfo=zone) for d in (first, after))  # type: ignore[return-value]


def lead_time_level(median_hours: float | None) -> str | None:
    """DORA 2023: under a day elite, a week high, a month medium, else low."""
    if median_hours is None:
        return None
    return (
        "elite"
        if median_hours < 24
        else "high"
        if median_hours < 168
        else "medium"
        if median_hours < 720
        else "low"
    )


def lead_time_figures(hours: list[float], stages: dict[str, list[float]]) -> dict[str, Any]:
    """{median_hours, p90_hours, level, stages}: a lead time's figures, each stage its median (the
    lead time for changes and the requirement lead time)."""
    hours = sorted(hours)
    median = percentile(hours, 0.5, ordered=True)
    return {
        "median_hours": median,
        "p90_hours": percentile(hours, 0.9, ordered=True),
        "level": lead_time_level(median),
        "stages": {name: percentile(values, 0.5) for name, values in stages.items()},
    }


def frequency_level(
    median_days_per_week: float | None, days: int, period_days: float
) -> str | None:
    """Median deployment days per week >= 5 elite, >= 1 high; else at least one a month medium."""
    if median_days_per_week is None:
        return None
    if median_days_per_week >= 5:
        return "elite"
    if median_days_per_week >= 1:
        return "high"
    months = max(period_days / 30.4375, 1.0)
    return "medium" if days / months >= 1 else "low"


def failure_level(rate: float | None) -> str | None:
    """Change failure rate <= 5 % elite, <= 10 % high, <= 15 % medium, else low."""
    if rate is None:
        return None
    return (
        "elite" if rate <= 0.05 else "high" if rate <= 0.10 else "medium" if rate <= 0.15 else "low"
    )


def recovery_level(median_hours: float | None) -> str | None:
    """Recovery under an hour elite, a day high, a week medium, else low."""
    if median_hours is None:
        return None
    return (
        "elite"
        if median_hours < 1
        else "high"
        if median_hours < 24
        else "medium"
        if median_hours < 168
        else "low"
    )


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600
