"""What runs where: the grid of services and environments at the end of the period, and the
adjacent pairs of a service's promotion path with the commits the downstream lacks."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import Connection

from analytics.scope import Scope
from analytics.views._common import compare_url
from analytics.views.environments import drift_matrix, environment_state


def whats_running(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Services down, environments across (in promotion order): per service a row with its
    `service` and, per environment, the commit it runs at the end of the period and how long
    ago it was deployed (`"1a2b3c4d · 3 d ago"`, from recorded deployments; "" where none ran).
    The environments are the keys after `service`, in order, of every row."""
    state = environment_state(conn, scope)
    by_position = sorted(state, key=lambda r: (r["position"] is None, r["position"] or 0))
    order = list(dict.fromkeys(r["environment"] for r in by_position))
    grid: dict[str, dict[str, Any]] = {}
    for r in state:
        row = grid.setdefault(r["service"], {"service": r["service"], **dict.fromkeys(order, "")})
        if r["sha"] is None:
            continue
        finished = r["finished_at"]
        age = (scope.until - finished).total_seconds() / 86400 if finished else float("nan")
        row[r["environment"]] = f"{r['sha'][:8]} · {age:.0f} d ago"
    return [grid[service] for service in sorted(grid)]


def promotion_pairs(
    conn: Connection, scope: Scope, service: str, promotion_path: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Each adjacent pair of the promotion path where `service` runs in both environments: the
    commit of each, whether they are the same, the commits the downstream is behind (from the
    latest drift snapshot, None without one) and a GitLab compare link of the commits it lacks."""
    by_env = {
        r["environment"]: r for r in environment_state(conn, scope) if r["service"] == service
    }
    behind = {
        (r["upstream"], r["downstream"]): r["commits_behind"]
        for r in drift_matrix(conn, scope)
        if r["service"] == service
    }
    pairs = []
    for upstream, downstream in itertools.pairwise(promotion_path):
        up, down = by_env.get(upstream), by_env.get(downstream)
        if up is None or down is None:
            continue
        pairs.append(
            {
                "upstream": upstream,
                "downstream": downstream,
                "upstream commit": (up["sha"] or "")[:10],
                "downstream commit": (down["sha"] or "")[:10],
                "same commit": up["sha"] == down["sha"],
                "commits behind": behind.get((upstream, downstream)),
                "compare_url": None
                if up["sha"] == down["sha"]
                else compare_url(up["repo_url"], down["sha"], up["sha"]),
            }
        )
    return pairs


__all__ = ["promotion_pairs", "whats_running"]
