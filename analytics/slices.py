"""The one way a scope's rows are cut into slices: by local ISO week, month, team or service.

Every surface slices through `slices` (the CLI's and the API's `--by`/`by=`, the dashboard's
trends and team tables, the weekly report's trend weeks, the service's telemetry), bucketing
every row once.

The rule of a time slice: a week or month is computed over its own scope, the bucket cut by the
period (`Scope` from the later of its start and the period's, to the earlier of its end and the
period's), so whatever reaches to the end of a scope (the default-branch red time of the latest
pipeline, the MRs merged and not in production at the end) ends at the slice's end. A team or
service slice keeps the whole scope.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from analytics import stats
from analytics.rollups import Rollup
from analytics.rows import Row, ScopeData, UnreleasedRow
from analytics.scope import Scope

D = TypeVar("D", ScopeData, Rollup)  # rows, or their days (`analytics.rollups`)

SLICES = ("week", "month", "team", "service")
NO_TEAM = "(no team)"  # the slice of the rows of services without a team


@dataclass(frozen=True)
class Slice(Generic[D]):
    """One slice: its key (`2026-W47`, `2026-11`, a team or service name), its rows over its own
    scope, and the ISO weeks its deployment-frequency median runs over."""

    key: str
    data: D
    weeks: list[str]


def slices(data: D, by: str) -> list[Slice[D]]:
    """`data` cut by `by` (week, month, team or service). Every week or month of the period
    appears (an empty one with empty parts); a team or service appears when it owns a row of any
    part but the incidents and the unreleased MRs. The unreleased MRs of a time slice are those
    of the whole scope waiting at the slice's end (`dora.merged_not_in_production`'s rows)."""
    if by not in SLICES:
        raise ValueError(f"cannot slice by {by!r}; use one of {', '.join(SLICES)}")
    scope, zone = data.scope, data.scope.zone
    weeks = stats.weeks_between(scope.since, scope.until, zone)
    key_of: Callable[[Row], str]
    if by in ("week", "month"):
        day_key = stats.week_key if by == "week" else stats.month_key
        known: dict[datetime, str] = {}  # days share their midnight: each key computed once

        def key_of(r: Row) -> str:
            key = known.get(r.at)
            if key is None:
                key = known[r.at] = day_key(stats.local_day(r.at, zone))
            return key

    else:

        def key_of(r: Row) -> str:
            return getattr(r, by) or NO_TEAM

    names = list(data.parts())
    buckets: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {p: [] for p in names})
    for name, rows in data.parts().items():
        if by in ("week", "month") and name == "unreleased":
            continue
        for r in rows:
            buckets[key_of(r)][name].append(r)
    if by in ("week", "month"):
        keys = weeks if by == "week" else stats.months_between(scope.since, scope.until, zone)
        cut = {key: _cut(scope, key) for key in keys}
        waiting = _waiting(data.unreleased, cut)
        return [
            Slice(
                key,
                type(data)(cut[key], **{**buckets[key], "unreleased": waiting[key]}),
                [key] if by == "week" else [w for w in weeks if _week_in_month(w, key)],
            )
            for key in keys
        ]
    owners = [p for p in names if p not in ("incidents", "unreleased")]
    keys = sorted({key for key, parts in buckets.items() if any(parts[p] for p in owners)})
    return [Slice(key, type(data)(scope, **buckets[key]), weeks) for key in keys]


def _cut(scope: Scope, key: str) -> Scope:
    """The scope of the week or month `key`: its bucket cut by the period."""
    start, end = stats.bucket_bounds(key, scope.zone)
    return replace(scope, since=max(start, scope.since), until=min(end, scope.until))


def _waiting(rows: list[UnreleasedRow], cut: dict[str, Scope]) -> dict[str, list[UnreleasedRow]]:
    """The merged MRs waiting at the end of each slice of `cut` (merged before it and not in
    production by it), in one pass: a row waits at the ends from the first after its merge to
    the last not after its release (the ends ascend), mostly none or one, so no slice scans
    every row of the period."""
    keys = list(cut)
    ends = [cut[key].until.astimezone(UTC) for key in keys]  # rows' zone: compared without offsets
    waiting: dict[str, list[UnreleasedRow]] = {key: [] for key in keys}
    for r in rows:
        first = bisect_right(ends, r.at)
        last = len(ends) if r.released_at is None else bisect_right(ends, r.released_at)
        for i in range(first, last):
            waiting[keys[i]].append(r)
    return waiting


def _week_in_month(week: str, month: str) -> bool:
    """Whether the ISO week's Monday lies in the month (each week counts in one month)."""
    year, number = week.split("-W")
    monday = datetime.fromisocalendar(int(year), int(number), 1).date()
    return stats.month_key(monday) == month


__all__ = ["NO_TEAM", "SLICES", "Slice", "slices"]
