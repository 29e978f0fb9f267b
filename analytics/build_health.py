"""Build health of a scope's pipelines (`analytics.rows.PipelineRow`): failure rate, durations,
queue time, default-branch red time and failing tests (docs/METRICS.md#build-health)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from analytics import stats
from analytics.rows import PipelineRow, ScopeData


def build_health(data: ScopeData) -> dict[str, Any]:
    """Pipeline failure rate (canceled and skipped counted apart), durations, queue time,
    default-branch red time and failing tests. Definition: docs/METRICS.md#build-health"""
    by_status = Counter(r.status for r in data.pipelines)
    durations = [r.duration_s for r in data.pipelines if r.duration_s is not None]
    queued = [r.queued_s for r in data.pipelines if r.queued_s is not None]
    decided = by_status["success"] + by_status["failed"]
    return {
        "pipelines": len(data.pipelines),
        "failed": by_status["failed"],
        "failure_rate": stats.ratio(by_status["failed"], decided),
        "canceled": by_status["canceled"],
        "skipped": by_status["skipped"],
        "median_duration_s": stats.percentile(durations, 0.5),
        "p90_duration_s": stats.percentile(durations, 0.9),
        "median_queue_s": stats.percentile(queued, 0.5),
        "default_branch_red_share": _red_share(data),
        "failed_tests": sum(int(r.failed_tests or 0) for r in data.pipelines),
        "pipelines_with_failed_tests": sum(1 for r in data.pipelines if r.failed_tests),
    }


def _red_share(data: ScopeData) -> float | None:
    """Share of the period the latest finished default-branch pipeline was failed, over repos
    (time before a repository's first finished pipeline in the period is not counted; the time
    after the last one runs to the scope's end). Definition: docs/METRICS.md#build-health"""
    by_repo: dict[int, list[PipelineRow]] = defaultdict(list)
    for r in data.pipelines:
        if r.default_branch and r.status in ("success", "failed"):
            by_repo[r.repo_id].append(r)
    # Spans add up as timedeltas (exact integers), so the share does not depend on the order the
    # database returned rows in; of pipelines finishing at the same moment the failed one counts
    # as the latest.
    red = total = timedelta(0)
    for rows in by_repo.values():
        rows.sort(key=lambda r: (r.at, r.status == "failed"))
        for current, following in zip(rows, [*rows[1:], None], strict=True):
            end: datetime = following.at if following else data.scope.until
            span = end - current.at
            total += span
            if current.status == "failed":
                red += span
    return red / total if total else None


__all__ = ["build_health"]
