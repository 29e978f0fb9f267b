"""Build health of a scope's pipeline days (`analytics.rollups.PipelineDay`): failure rate,
durations, queue time, default-branch red time and failing tests (docs/METRICS.md#build-health)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from analytics import stats
from analytics.rollups import PipelineDay, Rollup


def build_health(data: Rollup) -> dict[str, Any]:
    """Pipeline failure rate (canceled and skipped counted apart), durations, queue time,
    default-branch red time and failing tests. Definition: docs/METRICS.md#build-health"""
    by_status: Counter[str] = Counter()
    for p in data.pipelines:
        for status, n in p.statuses.items():  # Counter.update checks its argument each call
            by_status[status] += n
    durations = sorted(chain.from_iterable(p.durations for p in data.pipelines))
    queued = list(chain.from_iterable(p.queued for p in data.pipelines))
    decided = by_status["success"] + by_status["failed"]
    return {
        "pipelines": sum(p.pipelines for p in data.pipelines),
        "failed": by_status["failed"],
        "failure_rate": stats.ratio(by_status["failed"], decided),
        "canceled": by_status["canceled"],
        "skipped": by_status["skipped"],
        "median_duration_s": stats.percentile(durations, 0.5, ordered=True),
        "p90_duration_s": stats.percentile(durations, 0.9, ordered=True),
        "median_queue_s": stats.percentile(queued, 0.5),
        "default_branch_red_share": _red_share(data),
        "failed_tests": sum(p.failed_tests for p in data.pipelines),
        "pipelines_with_failed_tests": sum(p.with_failed_tests for p in data.pipelines),
    }


def _red_share(data: Rollup) -> float | None:
    """Share of the period the latest finished default-branch pipeline was failed, over repos
    (time before a repository's first finished pipeline in the period is not counted; the time
    after the last one runs to the scope's end). Each day holds the spans between its own
    pipelines; the spans from a day's last pipeline to the next day's first are added here. A
    repository seen through two services counts once. Definition: docs/METRICS.md#build-health"""
    by_repo: dict[int, dict[datetime, PipelineDay]] = defaultdict(dict)
    for p in data.pipelines:
        if p.default_branch and p.first_at is not None:
            by_repo[p.repo_id].setdefault(p.at, p)
    # Spans add up as timedeltas (exact integers), so the share does not depend on the order the
    # database returned rows in.
    red = total = timedelta(0)
    for days in by_repo.values():
        ordered = [days[at] for at in sorted(days)]
        for current, following in zip(ordered, [*ordered[1:], None], strict=True):
            within = timedelta(microseconds=current.span_us)
            total += within
            red += timedelta(microseconds=current.red_us)
            end = following.first_at if following else data.scope.until
            span = end - current.last_at  # type: ignore[operator]
            total += span
            if current.last_failed:
                red += span
    return red / total if total else None


__all__ = ["build_health"]
