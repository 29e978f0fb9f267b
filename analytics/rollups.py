"""Rollups: the metrics' facts per (service, environment, local day) and per (repository,
default-branch flag, local day), in `[sync] timezone` (DESIGN.md section 9).

Derive maintains them (`refresh`, the days new data touched); metrics, the dashboard and the
weekly report read them (`load`), so their cost grows with days x services in scope, not with
rows. A day keeps counts and, for the medians and p90s, its *sorted value list* (lead times, MR
stages, recovery times, pipeline durations and queue times): the quantiles of any set of days are
computed from the union of their lists, the very values the rows give, so every figure is exactly
the row-based one (docs/ARCHITECTURE.md#rollups).

One aggregation, `of_rows`, turns rows (`analytics.selects`) into days: derive stores what it
returns, and `load` uses it for what rollups cannot answer (a period's partial first and last day,
a named environment, another time zone or other failure rules than derive's), so there is one
definition of every figure (`analytics.dora`, `analytics.build_health` read days only).
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import (
    Connection,
    Text,
    and_,
    cast,
    delete,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
)

from analytics import stats
from analytics.rows import (
    BugRow,
    IncidentRow,
    MergeRequestRow,
    RequirementRow,
    Row,
    ScopeData,
    UnreleasedRow,
)
from analytics.rules import TEST_RUN_PIPELINE
from analytics.scope import EARLIEST, LATEST, Scope
from warehouse.schema import (
    Environment,
    Pipeline,
    RollupDay,
    RollupPipelineDay,
    RollupState,
    RollupSuiteDay,
    Service,
    Team,
    TestRun,
    table_of,
)
from warehouse.upsert import upsert

STAGES = ("coding", "pickup", "review", "deploy", "cycle")  # of an MR's lead time
ROLLED = ("deployments", "changes", "merge_requests", "attempts")  # parts rolled up per day
ROWS = ("requirements", "bugs", "incidents", "unreleased")  # parts always read as rows
STATE = "rollup"
SCALARS = ("scope", "stored")  # Rollup's fields that are not parts
BATCH = 500  # ids per IN list


def midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


# a day without merge requests: no stage spans, none dropped (shared, read only)
NO_STAGES: Mapping[str, Sequence[float]] = MappingProxyType({name: () for name in STAGES})
NO_DROPS: Mapping[str, int] = MappingProxyType(dict.fromkeys(STAGES, 0))


@dataclass(slots=True)
class Day(Row):
    """One (service, environment, local day): `at` is the day's local midnight. Deployments,
    changes and MRs are the scope's environment's (production tier in the stored rollups);
    attempts are every environment's."""

    environment_id: int | None
    environment: str | None = None  # name and tier: known where the day has attempts
    tier: str | None = None
    deployments: int = 0
    failed: int = 0
    incident: int = 0
    failed_rollback: int = 0
    hotfix: int = 0
    rework: int = 0
    recovery_hours: list[float] = field(default_factory=list)
    changes: int = 0
    lead_hours: list[float] = field(default_factory=list)
    merge_requests: int = 0
    stages: Mapping[str, Sequence[float]] = field(default_factory=lambda: NO_STAGES)
    dropped: Mapping[str, int] = field(default_factory=lambda: NO_DROPS)
    attempts_success: int = 0
    attempts_failed: int = 0


@dataclass(slots=True)
class PipelineDay(Row):
    """One (repository, default-branch flag, local day) of pipelines, seen from a service."""

    repo_id: int
    default_branch: bool
    pipelines: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    queued: list[float] = field(default_factory=list)
    failed_tests: int = 0
    with_failed_tests: int = 0
    # the decided (success, failed) default-branch pipelines: the day's first and last, and the
    # red and total time between consecutive ones within the day, in microseconds
    first_at: datetime | None = None
    first_failed: bool | None = None
    last_at: datetime | None = None
    last_failed: bool | None = None
    red_us: int = 0
    span_us: int = 0


@dataclass
class Rollup:
    """A scope's days, and the parts that stay rows; sliced like `ScopeData` (same part names
    for the rows)."""

    scope: Scope
    days: list[Day] = field(default_factory=list)
    pipelines: list[PipelineDay] = field(default_factory=list)
    requirements: list[RequirementRow] = field(default_factory=list)
    bugs: list[BugRow] = field(default_factory=list)
    incidents: list[IncidentRow] = field(default_factory=list)
    unreleased: list[UnreleasedRow] = field(default_factory=list)
    stored: int = field(default=0, init=False)  # days read from the rollup tables

    def parts(self) -> dict[str, list[Any]]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SCALARS}


def _us(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def stage_spans(rows: Iterable[MergeRequestRow]) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Each MR's stage spans in hours (coding, pickup, review, deploy, cycle), sorted, and per
    stage the negative spans dropped."""
    spans: dict[str, list[float]] = {name: [] for name in STAGES}
    dropped: dict[str, int] = dict.fromkeys(STAGES, 0)
    for r in rows:
        points = {
            "coding": (r.first_commit_at, r.created_at),
            "pickup": (r.created_at, r.first_review_at),
            "review": (r.first_review_at, r.merged_at),
            "deploy": (r.merged_at, r.at),
            "cycle": (r.first_commit_at, r.at),
        }
        for name, (start, end) in points.items():
            if start is None or end is None:
                continue
            span = stats.hours(end - start)
            if span < 0:
                dropped[name] += 1
            else:
                spans[name].append(span)
    for values in spans.values():
        values.sort()
    return spans, dropped


def of_rows(data: ScopeData) -> Rollup:
    """The days of a scope's rows (the one aggregation: derive stores it, `load` completes
    stored days with it)."""
    zone = data.scope.zone
    days: dict[tuple[str, str | None, int | None, date], Day] = {}

    def day_of(r: Row, environment_id: int | None) -> Day:
        local = stats.local_day(r.at, zone)
        key = (r.service, r.team, environment_id, local)
        found = days.get(key)
        if found is None:
            found = days[key] = Day(r.service, r.team, midnight(local, zone), environment_id)
        return found

    for d in data.deployments:
        day = day_of(d, d.environment_id)
        day.deployments += 1
        day.rework += bool(d.rework)
        if d.failed:
            day.failed += 1
            day.incident += bool(d.incident)
            day.failed_rollback += bool(d.failed_rollback)
            day.hotfix += bool(d.hotfix)
            if d.recovered_at:
                day.recovery_hours.append(stats.hours(d.recovered_at - d.at))
    for c in data.changes:
        day = day_of(c, c.environment_id)
        day.changes += 1
        if (hours := c.lead_time_hours) is not None:
            day.lead_hours.append(hours)
    merge_requests: dict[int, list[MergeRequestRow]] = defaultdict(list)
    for m in data.merge_requests:
        day = day_of(m, m.environment_id)
        day.merge_requests += 1
        merge_requests[id(day)].append(m)
    for a in data.attempts:
        day = day_of(a, a.environment_id)
        day.environment, day.tier = a.environment, a.tier
        if a.status == "failed":
            day.attempts_failed += 1
        elif a.status == "success":
            day.attempts_success += 1
    for day in days.values():
        if id(day) in merge_requests:
            day.stages, day.dropped = stage_spans(merge_requests[id(day)])
        day.recovery_hours.sort()
        day.lead_hours.sort()
    return Rollup(
        data.scope,
        days=list(days.values()),
        pipelines=_pipeline_days(data),
        requirements=data.requirements,
        bugs=data.bugs,
        incidents=data.incidents,
        unreleased=data.unreleased,
    )


def _pipeline_days(data: ScopeData) -> list[PipelineDay]:
    zone = data.scope.zone
    days: dict[tuple[str, str | None, int, bool, date], PipelineDay] = {}
    decided: dict[int, list[Any]] = defaultdict(list)
    for p in data.pipelines:
        local = stats.local_day(p.at, zone)
        flag = bool(p.default_branch)
        key = (p.service, p.team, p.repo_id, flag, local)
        day = days.get(key)
        if day is None:
            day = days[key] = PipelineDay(p.service, p.team, midnight(local, zone), p.repo_id, flag)
        day.pipelines += 1
        day.statuses[p.status] = day.statuses.get(p.status, 0) + 1
        if p.duration_s is not None:
            day.durations.append(p.duration_s)
        if p.queued_s is not None:
            day.queued.append(p.queued_s)
        day.failed_tests += int(p.failed_tests or 0)
        day.with_failed_tests += bool(p.failed_tests)
        if flag and p.status in ("success", "failed"):
            decided[id(day)].append(p)
    for day in days.values():
        day.durations.sort()
        day.queued.sort()
        rows = decided.get(id(day))
        if not rows:
            continue
        # of pipelines finishing at the same moment the failed one counts as the latest
        rows.sort(key=lambda r: (r.at, r.status == "failed"))
        for current, following in pairwise(rows):
            span = _us(following.at - current.at)
            day.span_us += span
            day.red_us += span if current.status == "failed" else 0
        day.first_at, day.first_failed = rows[0].at, rows[0].status == "failed"
        day.last_at, day.last_failed = rows[-1].at, rows[-1].status == "failed"
    return list(days.values())


# --- reading ----------------------------------------------------------------------------------


def fingerprint(rules: Any) -> str:
    """The failure rules' identity stored beside the rollups (their rework depends on them)."""
    return repr(rules)


def stored_rules(conn: Connection) -> str | None:
    """The failure rules' fingerprint the stored rollups (and change failures) were derived with
    (None: no derive yet)."""
    return conn.execute(select(RollupState.rules).where(RollupState.name == STATE)).scalar()


def _whole_days(scope: Scope) -> tuple[date, date]:
    """[first, after): the local days wholly inside the scope's period."""
    zone = scope.zone
    first = stats.local_day(scope.since, zone)
    if midnight(first, zone) < scope.since:
        first += timedelta(days=1)
    after = stats.local_day(scope.until, zone)
    return first, after


def load(
    conn: Connection,
    scope: Scope,
    rules: Any = None,
    rows: Iterable[str] = ROWS,
    rolled: Iterable[str] = (*ROLLED, "pipelines"),
) -> Rollup:
    """The scope's days: the stored rollups for the local days wholly inside the period, the rows
    of its partial first and last day rolled up here; every day from rows when the rollups cannot
    answer the scope (a named environment, another time zone or other failure rules than the
    last derive's, or no derive yet). Of the parts kept as rows, `rows` are read (default: all;
    the others empty); of the rolled-up parts, `rolled` (`ROLLED`'s parts of the days, and
    `pipelines`; default all): the days of some of `ROLLED` are those carrying them, with only
    their figures (`_stored_days`)."""
    with collector_paused():
        return _load(conn, scope, rules, rows, rolled)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a read builds its days: they are tens of
    thousands of objects holding lists, none in a cycle (reference counting frees them), and each
    collection pass over the growing heap cost a quarter of the read (0.6-0.8 s of the 90 days'
    metrics on the large organisation). Re-enabled after, if it was enabled before.
    A surface that reads days and then computes over them (`metrics.metrics`, the weekly report)
    keeps it paused until it is done: the objects allocated while it was paused wait in the
    youngest generation, and the first passes after it resumes walk every one of them (0.2 s of
    the whole organisation's weekly report) while they are still alive."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load(
    conn: Connection, scope: Scope, rules: Any, rows: Iterable[str], rolled: Iterable[str]
) -> Rollup:
    from analytics.rules import FailureRules
    from analytics.selects import load as load_rows

    rules = rules or FailureRules()
    unknown = set(rolled) - {*ROLLED, "pipelines"}
    if unknown:
        raise ValueError(f"no rolled-up part {sorted(unknown)}; use {(*ROLLED, 'pipelines')}")
    parts = tuple(p for p in (*ROLLED, "pipelines") if p in rolled)
    day_parts = tuple(p for p in ROLLED if p in parts)
    state = conn.execute(
        select(RollupState.timezone, RollupState.rules).where(RollupState.name == STATE)
    ).first()
    first, after = _whole_days(scope)
    if (
        state is None
        or scope.environment is not None
        or state.timezone != scope.timezone
        or state.rules != fingerprint(rules)
        or first >= after
    ):
        return of_rows(load_rows(conn, scope, rules, (*parts, *rows)))
    kept = load_rows(conn, scope, rules, rows)
    found = Rollup(
        scope,
        requirements=kept.requirements,
        bugs=kept.bugs,
        incidents=kept.incidents,
        unreleased=kept.unreleased,
    )
    for part in edges(scope, first, after) if parts else []:
        edge = of_rows(load_rows(conn, part, rules, parts))
        found.days.extend(edge.days)
        found.pipelines.extend(edge.pipelines)
    days = _stored_days(conn, scope, first, after, day_parts) if day_parts else []
    pipelines = _stored_pipeline_days(conn, scope, first, after) if "pipelines" in parts else []
    found.days.extend(days)
    found.pipelines.extend(pipelines)
    found.stored = len(days) + len(pipelines)
    return found


def _json_array(model: Any, lists: tuple[str, ...], read: Iterable[str] | None = None) -> Any:
    """The JSON columns `lists` of a rollup row as the text of one JSON array, labelled
    `lists`: one `orjson.loads` per row instead of one per column (the decoding of the value lists
    is most of a read; their text is the stored JSON on SQLite, jsonb's on PostgreSQL, whose
    numbers keep their digits). Of `lists`, only those `read` (default: all), the others null."""
    columns = table_of(model).columns
    read = set(lists if read is None else read)
    text: Any = literal("[")
    for i, name in enumerate(lists):
        if i:
            text = text + ","
        text = text + (cast(columns[name], Text) if name in read else literal("null"))
    return (text + "]").label("lists")


# each part rolled up per day: its rollup_day counts (a day carries the part when one of them is
# above zero) and its value lists
DAY_PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "deployments": (
        ("deployments", "failed", "incident", "failed_rollback", "hotfix", "rework"),
        ("recovery_hours",),
    ),
    "changes": (("changes",), ("lead_hours",)),
    "merge_requests": (("merge_requests",), ("stages", "dropped")),
    "attempts": (("attempts_success", "attempts_failed"), ()),
}
# rollup_day's counts and value lists: in Day's order, as DAY_PARTS lists them
COUNTS = tuple(c for counts, _ in DAY_PARTS.values() for c in counts)
DAY_LISTS = tuple(name for _, lists in DAY_PARTS.values() for name in lists)
PIPELINE_LISTS = ("statuses", "durations", "queued")


def _midnights(zone: ZoneInfo) -> Any:
    """`midnight(day, zone)`, each day computed once."""
    found: dict[date, datetime] = {}

    def at(day: date) -> datetime:
        value = found.get(day)
        if value is None:
            value = found[day] = midnight(day, zone)
        return value

    return at


def _stored_days(
    conn: Connection, scope: Scope, first: date, after: date, parts: tuple[str, ...] = ROLLED
) -> list[Day]:
    """The stored days of the rolled-up `parts` (of `ROLLED`): of some parts, only the days
    carrying one of them, with only their counts and lists (the others zero and empty), as
    `of_rows` rolls up only those parts' rows. Every column and row of a day is the union of its
    parts', so the days of several parts read apart add up to the days read together; a surface
    reading parts apart (the dashboard: each once, whichever page needs it) pays for no other
    part's rows, nor for decoding its lists."""
    at = _midnights(scope.zone)
    table = table_of(RollupDay)
    counts = {c for p in parts for c in DAY_PARTS[p][0]}
    lists = [name for p in parts for name in DAY_PARTS[p][1]]
    attempts = "attempts" in parts  # the only part naming its environment (as `of_rows`)
    query = select(
        Service.name.label("service"),
        Team.name.label("team"),
        RollupDay.day,
        RollupDay.environment_id,
        *((Environment.name, Environment.tier) if attempts else (null(), null())),
        *(table.c[c] if c in counts else literal_column("0") for c in COUNTS),
        _json_array(RollupDay, DAY_LISTS, lists) if lists else null(),
    ).select_from(RollupDay)
    if attempts:
        query = query.join(Environment, Environment.id == RollupDay.environment_id)
    query = scope.owned(query, RollupDay.service_id).where(
        RollupDay.day >= first, RollupDay.day < after
    )
    if set(parts) != set(ROLLED):  # every stored day carries some part
        query = query.where(or_(*(table.c[c] > 0 for c in counts)))
    loads = orjson.loads
    unread = (None,) * len(DAY_LISTS)
    days = []
    # positional, with no default built per day: tens of thousands of days per page
    for (
        service,
        team,
        day,
        environment_id,
        environment,
        tier,
        deployments,
        failed,
        incident,
        failed_rollback,
        hotfix,
        rework,
        changes,
        merge_requests,
        attempts_success,
        attempts_failed,
        values,
    ) in conn.execute(query):
        recovery_hours, lead_hours, stages, dropped = loads(values) if values else unread
        days.append(
            Day(
                service,
                team,
                at(day),
                environment_id,
                environment,
                tier,
                deployments,
                failed,
                incident,
                failed_rollback,
                hotfix,
                rework,
                recovery_hours or [],
                changes,
                lead_hours or [],
                merge_requests,
                NO_STAGES if stages is None else _every_stage(stages),
                NO_DROPS if dropped is None else {**NO_DROPS, **dropped},
                attempts_success,
                attempts_failed,
            )
        )
    return days


def _every_stage(stages: dict[str, list[float]]) -> Mapping[str, Sequence[float]]:
    """Every stage, in STAGES' order (jsonb orders keys its own way)."""
    if tuple(stages) == STAGES:
        return stages
    return {name: stages.get(name, []) for name in STAGES}


def _stored_pipeline_days(
    conn: Connection, scope: Scope, first: date, after: date
) -> list[PipelineDay]:
    at = _midnights(scope.zone)
    p = RollupPipelineDay
    query = scope.owned(
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            p.day,
            p.repo_id,
            p.default_branch,
            p.pipelines,
            _json_array(p, PIPELINE_LISTS),
            p.failed_tests,
            p.with_failed_tests,
            p.first_at,
            p.first_failed,
            p.last_at,
            p.last_failed,
            p.red_us,
            p.span_us,
        ),
        on=Service.repo_id == p.repo_id,
    ).where(p.day >= first, p.day < after)
    loads = orjson.loads
    # positional, in PipelineDay's order: tens of thousands of days per page
    return [
        PipelineDay(
            service, team, at(day), repo_id, default_branch, pipelines, *loads(lists), *rest
        )
        for service, team, day, repo_id, default_branch, pipelines, lists, *rest in conn.execute(
            query
        )
    ]


# --- maintenance (derive) -----------------------------------------------------------------------


def refresh(
    conn: Connection,
    timezone: str,
    rules: Any,
    services: dict[int, datetime] | None,
    repos: dict[int, datetime] | None,
) -> int:
    """Re-roll up the days new data touched: each service in `services` from the local day of
    its moment on, each repository in `repos` likewise; everything when both are None, or when
    the stored rollups were built in another time zone or with other rules. Returns the days
    written."""
    from analytics.selects import load as load_rows
    from analytics.selects import repo_pipelines

    zone = ZoneInfo(timezone)
    state = conn.execute(
        select(RollupState.timezone, RollupState.rules).where(RollupState.name == STATE)
    ).first()
    if (
        services is None
        or repos is None
        or state is None
        or (state.timezone, state.rules) != (timezone, fingerprint(rules))
    ):
        conn.execute(delete(RollupDay))
        conn.execute(delete(RollupPipelineDay))
        conn.execute(delete(RollupSuiteDay))
        services = {sid: EARLIEST for sid in conn.execute(select(Service.id)).scalars()}
        repos = None
    written = 0
    ids = dict(conn.execute(select(Service.name, Service.id)).all())
    by_day: dict[date, list[int]] = defaultdict(list)
    for service_id, moment in services.items():
        by_day[stats.local_day(max(moment, EARLIEST), zone)].append(service_id)
    names = {v: k for k, v in ids.items()}
    for day, service_ids in sorted(by_day.items()):
        for start in range(0, len(service_ids), BATCH):
            chunk = service_ids[start : start + BATCH]
            conn.execute(
                delete(RollupDay).where(RollupDay.service_id.in_(chunk), RollupDay.day >= day)
            )
            scope = Scope(
                midnight(day, zone),
                LATEST,
                services=tuple(names[s] for s in chunk),
                timezone=timezone,
            )
            rolled = of_rows(load_rows(conn, scope, rules, ROLLED))
            written += _write_days(conn, rolled.days, ids)
    written += _refresh_pipelines(conn, zone, repos, repo_pipelines)
    upsert(
        conn,
        RollupState,
        [{"name": STATE, "timezone": timezone, "rules": fingerprint(rules), "built_at": None}],
    )
    return written


def _write_days(conn: Connection, days: list[Day], ids: dict[str, int]) -> int:
    rows = [
        {
            "service_id": ids[d.service],
            "environment_id": d.environment_id,
            "day": d.at.date(),  # the local midnight's date
            "deployments": d.deployments,
            "failed": d.failed,
            "incident": d.incident,
            "failed_rollback": d.failed_rollback,
            "hotfix": d.hotfix,
            "rework": d.rework,
            "recovery_hours": d.recovery_hours,
            "changes": d.changes,
            "lead_hours": d.lead_hours,
            "merge_requests": d.merge_requests,
            "stages": dict(d.stages),
            "dropped": dict(d.dropped),
            "attempts_success": d.attempts_success,
            "attempts_failed": d.attempts_failed,
        }
        for d in days
        if d.environment_id is not None
    ]
    for start in range(0, len(rows), BATCH):
        conn.execute(insert(RollupDay), rows[start : start + BATCH])
    return len(rows)


def _refresh_pipelines(
    conn: Connection, zone: ZoneInfo, repos: dict[int, datetime] | None, select_rows: Any
) -> int:
    if repos is None:  # everything (the caller emptied the table)
        starts: dict[date, list[int] | None] = {stats.local_day(EARLIEST, zone): None}
    else:
        starts = defaultdict(list)
        for repo_id, moment in repos.items():
            starts[stats.local_day(max(moment, EARLIEST), zone)].append(repo_id)  # type: ignore[union-attr]
    written = 0
    for day, repo_ids in sorted(starts.items(), key=lambda kv: kv[0]):
        if repo_ids is not None:
            conn.execute(
                delete(RollupPipelineDay).where(
                    and_(RollupPipelineDay.repo_id.in_(repo_ids), RollupPipelineDay.day >= day)
                )
            )
        scope = Scope(midnight(day, zone), LATEST, timezone=str(zone))
        rows = select_rows(conn, scope.since, repo_ids)
        days = _pipeline_days(ScopeData(scope, pipelines=rows))
        values = [
            {
                "repo_id": p.repo_id,
                "default_branch": p.default_branch,
                "day": p.at.date(),
                **{
                    f.name: getattr(p, f.name)
                    for f in fields(PipelineDay)
                    if f.name not in ("service", "team", "at", "repo_id", "default_branch")
                },
            }
            for p in days
        ]
        for start in range(0, len(values), BATCH):
            conn.execute(insert(RollupPipelineDay), values[start : start + BATCH])
        written += len(values)
        written += _refresh_suites(conn, zone, day, repo_ids)
    return written


def _refresh_suites(conn: Connection, zone: ZoneInfo, day: date, repo_ids: list[int] | None) -> int:
    """Roll the test suites' days up again from local `day` on, of `repo_ids` (None: every
    repository, the table emptied by the caller): per (repository, suite, local day of the
    pipeline's finish) the suite's runs, runs with failed tests, failed tests and the last
    failing run's finish, as `analytics.views.builds.failing_tests` sums rows."""
    if repo_ids is not None:
        conn.execute(
            delete(RollupSuiteDay).where(
                and_(RollupSuiteDay.repo_id.in_(repo_ids), RollupSuiteDay.day >= day)
            )
        )
    period = and_(Pipeline.finished_at >= midnight(day, zone), Pipeline.repo_id.is_not(None))
    if repo_ids is not None:
        period = and_(period, Pipeline.repo_id.in_(repo_ids))
    rows = conn.execute(
        select(Pipeline.repo_id, TestRun.suite, Pipeline.finished_at, TestRun.failed)
        .select_from(TestRun)
        .join(Pipeline, TEST_RUN_PIPELINE)
        .where(period)
    )
    days: dict[tuple[Any, str, date], dict[str, Any]] = {}
    for repo_id, suite, at, failed in rows:  # repository and finish: not null by `period`
        key = (repo_id, suite, stats.local_day(at, zone))  # type: ignore[arg-type]
        found = days.get(key)
        if found is None:
            found = days[key] = {
                "repo_id": repo_id,
                "suite": suite,
                "day": key[2],
                "runs": 0,
                "failing_runs": 0,
                "failed_tests": 0,
                "last_failed_at": None,
            }
        found["runs"] += 1
        if failed > 0:
            found["failing_runs"] += 1
            found["failed_tests"] += failed
            last = found["last_failed_at"]
            found["last_failed_at"] = at if last is None else max(last, at)
    values = list(days.values())
    for start in range(0, len(values), BATCH):
        conn.execute(insert(RollupSuiteDay), values[start : start + BATCH])
    return len(values)


def edges(scope: Scope, first: date, after: date) -> list[Scope]:
    """The scope cut to its partial first and last local day (before `first`'s midnight, from
    `after`'s): what the rows answer beside the stored days [first, after)."""
    zone = scope.zone
    return [
        replace(scope, since=since, until=until)
        for since, until in (
            (scope.since, midnight(first, zone)),
            (midnight(after, zone), scope.until),
        )
        if since < until
    ]


def stored_span(conn: Connection, scope: Scope) -> tuple[date, date] | None:
    """[first, after): the local days wholly inside the scope's period that the stored rollups
    answer for a part no environment or failure rule affects (the test suites' days); None when
    they cannot: no derive yet, another time zone, or no whole day."""
    zone = conn.execute(select(RollupState.timezone).where(RollupState.name == STATE)).scalar()
    first, after = _whole_days(scope)
    if zone != scope.timezone or first >= after:
        return None
    return first, after


__all__ = [
    "ROLLED",
    "ROWS",
    "STAGES",
    "Day",
    "PipelineDay",
    "Rollup",
    "collector_paused",
    "edges",
    "fingerprint",
    "load",
    "midnight",
    "of_rows",
    "refresh",
    "stage_spans",
    "stored_span",
]
