"""`GET /metrics`: the service's counters and the DORA figures in the Prometheus text format.

DORA figures are gauges over a rolling window ending now (default 30 days; `cdmetrics_window_seconds`
says which), per service (labels `service`, `team`) and per team (`cdmetrics_team_*`, label
`team`), computed by the same analytics as `/api/v1/metrics`. A figure that is undefined (no
production deployment, no change) is left out rather than exported as NaN. The figures are cached
until the next derive or for `cache_seconds`, so a scrape every few seconds costs nothing.
Counters (`*_total`) count since the process started.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Engine

from analytics.metrics import sliced
from analytics.rollups import load
from analytics.rules import FailureRules
from analytics.scope import Scope

Labels = tuple[tuple[str, str], ...]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape(value: str) -> str:
    """A label value escaped for the text format."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Family:
    """One metric family: name, help, type and its samples."""

    name: str
    help: str
    kind: str = "gauge"
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{_labels(lb)} {_number(v)}" for lb, v in self.samples]
        return "\n".join(lines)


class Counters:
    """Thread-safe counters, labelled by endpoint."""

    HELP: ClassVar[dict[str, str]] = {
        "cdmetrics_events_received_total": "Events received, by endpoint.",
        "cdmetrics_events_stored_total": "Events stored (new or changed raw payloads).",
        "cdmetrics_events_duplicate_total": "Events received again (replays stored once).",
        "cdmetrics_events_rejected_total": "Malformed events refused with 422 (not stored).",
        "cdmetrics_requests_refused_total": "Requests refused (401, 403, 413), by reason.",
        "cdmetrics_requests_cancelled_total": "Reads stopped because their client disconnected.",
    }

    def __init__(self) -> None:
        self._values: dict[tuple[str, Labels], float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def families(self) -> list[Family]:
        with self._lock:
            items = sorted(self._values.items())
        families = {name: Family(name, text, "counter") for name, text in self.HELP.items()}
        for (name, labels), value in items:
            families[name].samples.append((labels, value))
        return list(families.values())


# (family suffix, help, metric object, field, extra labels)
_FIGURES: tuple[tuple[str, str, str, str, Labels], ...] = (
    (
        "deployments",
        "Production deployments in the window.",
        "deployment_frequency",
        "deployments",
        (),
    ),
    (
        "deployment_days_per_week",
        "Median deployment days per ISO week.",
        "deployment_frequency",
        "median_days_per_week",
        (),
    ),
    (
        "lead_time_hours",
        "Lead time for changes, hours.",
        "lead_time",
        "median_hours",
        (("quantile", "0.5"),),
    ),
    (
        "lead_time_hours",
        "Lead time for changes, hours.",
        "lead_time",
        "p90_hours",
        (("quantile", "0.9"),),
    ),
    ("changes", "Changes deployed to production in the window.", "lead_time", "changes", ()),
    (
        "change_failure_rate",
        "Failed changes / production deployments.",
        "change_failure_rate",
        "rate",
        (),
    ),
    (
        "failed_changes",
        "Production deployments that were failed changes.",
        "change_failure_rate",
        "failed",
        (),
    ),
    (
        "recovery_time_hours",
        "Failed deployment recovery time, hours.",
        "recovery_time",
        "median_hours",
        (("quantile", "0.5"),),
    ),
    (
        "recovery_time_hours",
        "Failed deployment recovery time, hours.",
        "recovery_time",
        "p90_hours",
        (("quantile", "0.9"),),
    ),
    (
        "unrecovered_failures",
        "Failed changes not recovered yet.",
        "recovery_time",
        "unrecovered",
        (),
    ),
    ("rework_rate", "Share of production deployments that are rework.", "rework_rate", "rate", ()),
    (
        "deployment_failure_rate",
        "Failed deployment attempts / finished attempts.",
        "deployment_failure_rate",
        "rate",
        (),
    ),
    (
        "pipeline_failure_rate",
        "Failed pipelines / (success + failed).",
        "build",
        "failure_rate",
        (),
    ),
)
_LEVELS = ("deployment_frequency", "lead_time", "change_failure_rate", "recovery_time")


def dora_families(rows: Iterable[tuple[Labels, dict[str, Any]]], prefix: str) -> list[Family]:
    """Gauge families of the DORA figures, one sample per slice (labels) and figure."""
    families: dict[str, Family] = {}
    level = Family(f"{prefix}dora_level", "1 for the DORA 2023 performance level of a metric.")
    for labels, values in rows:
        for suffix, text, metric, name, extra in _FIGURES:
            value = values.get(metric, {}).get(name)
            if value is None:
                continue
            family = families.setdefault(suffix, Family(f"{prefix}{suffix}", text))
            family.samples.append((labels + extra, float(value)))
        for metric in _LEVELS:
            if values.get(metric, {}).get("level"):
                extra = (("metric", metric), ("level", values[metric]["level"]))
                level.samples.append((labels + extra, 1.0))
    return [*families.values(), level]


class DoraExport:
    """The DORA gauges over a rolling window, cached per derive generation."""

    def __init__(
        self,
        engine: Engine,
        rules: FailureRules,
        *,
        window: timedelta,
        timezone: str,
        generation: Callable[[], int],
        cache_seconds: float = 15.0,
    ) -> None:
        self.engine, self.rules, self.window, self.timezone = engine, rules, window, timezone
        self.generation, self.cache_seconds = generation, cache_seconds
        self._cached: tuple[int, float, list[Family]] | None = None
        self._lock = threading.Lock()

    def families(self) -> list[Family]:
        with self._lock:
            now = time.monotonic()
            cached = self._cached
            if cached and cached[0] == self.generation() and now - cached[1] < self.cache_seconds:
                return cached[2]
            families = self._compute()
            self._cached = (self.generation(), now, families)
            return families

    def _compute(self) -> list[Family]:
        until = datetime.now(UTC)
        scope = Scope(until - self.window, until, timezone=self.timezone)
        with self.engine.connect() as conn:
            data = load(conn, scope, self.rules)
        teams = {r.service: r.team for rows in (data.days, data.pipelines) for r in rows}
        by_service = [
            ((("service", name), ("team", teams.get(name) or "")), values)
            for name, values in sliced(data, "service")
        ]
        by_team = [((("team", name),), values) for name, values in sliced(data, "team")]
        window = Family("cdmetrics_window_seconds", "The window the DORA gauges cover.")
        window.samples.append(((), self.window.total_seconds()))
        return [
            window,
            *dora_families(by_service, "cdmetrics_"),
            *dora_families(by_team, "cdmetrics_team_"),
        ]


def exposition(families: Iterable[Family]) -> str:
    """The Prometheus text format of `families` (families without samples are left out)."""
    return "\n".join(f.render() for f in families if f.samples) + "\n"


__all__ = ["CONTENT_TYPE", "Counters", "DoraExport", "Family", "dora_families", "exposition"]
