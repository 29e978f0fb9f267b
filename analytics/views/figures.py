"""The metrics of `analytics.dora` as the dashboard needs them: the scope's rows loaded one part at
a time (a page showing lead time does not read every pipeline), and sliced by week, team or
service in one pass over the rows.

`sliced` returns exactly what `dora.sliced` returns (tests hold them equal); `dora.sliced` re-reads
every row for every slice, which on a large organisation takes seconds per page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from analytics import dora, metrics, stats
from analytics.derive import FailureRules
from analytics.metrics import Row, ScopeData
from analytics.scope import Scope

# the parts of ScopeData, in its field order
PARTS = (
    "deployments",
    "changes",
    "merge_requests",
    "attempts",
    "pipelines",
    "incidents",
    "unreleased",
)
# the parts each metric of the JSON contract reads
NEEDS = {
    "deployment_frequency": ("deployments",),
    "lead_time": ("changes", "merge_requests", "unreleased"),
    "change_failure_rate": ("deployments",),
    "recovery_time": ("deployments", "incidents"),
    "rework_rate": ("deployments",),
    "deployment_failure_rate": ("attempts",),
    "build": ("pipelines",),
}


def load_part(
    conn: Connection, scope: Scope, part: str, rules: FailureRules | None = None
) -> list[Row]:
    """The scope's rows of one part of `ScopeData` (the select `metrics.load` runs for it)."""
    if part == "deployments":
        return metrics._deployments(conn, scope, rules or FailureRules())
    selects: dict[str, Callable[[Connection, Scope], list[Row]]] = {
        "changes": metrics._changes,
        "merge_requests": metrics._merge_requests,
        "attempts": metrics._attempts,
        "pipelines": metrics._pipelines,
        "incidents": metrics._incidents,
        "unreleased": metrics.unreleased,
    }
    if part not in selects:
        raise ValueError(f"no part {part!r} of the scope's rows; use one of {', '.join(PARTS)}")
    return selects[part](conn, scope)


def assemble(scope: Scope, parts: dict[str, list[Row]]) -> ScopeData:
    """ScopeData from the parts loaded (a part not loaded is empty)."""
    return ScopeData(scope, *(parts.get(name, []) for name in PARTS))


def _parts_of(data: ScopeData) -> list[list[Row]]:
    return [getattr(data, name) for name in PARTS]


def sliced(data: ScopeData, by: str) -> list[tuple[str, dict[str, Any]]]:
    """The metrics per week, team or service (as `dora.sliced`), bucketing every row once."""
    if by not in ("week", "team", "service"):
        return dora.sliced(data, by)
    scope, zone = data.scope, data.scope.zone
    key_of: Callable[[Row], str]
    if by == "week":

        def key_of(r: Row) -> str:
            return stats.week_key(stats.local_day(r.at, zone))

    else:

        def key_of(r: Row) -> str:
            return getattr(r, by) or "(no team)"

    buckets: dict[str, list[list[Row]]] = defaultdict(lambda: [[] for _ in PARTS])
    for index, rows in enumerate(_parts_of(data)):
        for r in rows:
            buckets[key_of(r)][index].append(r)
    if by == "week":
        keys = stats.weeks_between(scope.since, scope.until, zone)
    else:  # as dora.sliced: the names owning anything but an incident
        keys = sorted(
            {key_of(r) for rows in _parts_of(data)[: PARTS.index("incidents")] for r in rows}
        )
    out = []
    for key in keys:
        part = ScopeData(scope, *buckets[key])
        values = dora.compute(part)
        if by == "week":
            values["deployment_frequency"] = dora.deployment_frequency(part, [key])
            values["lead_time"]["merged_not_in_production"] = dora.waiting_at_end(data, key)
        out.append((key, values))
    return out
