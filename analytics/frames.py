"""The notebook API: pandas DataFrames of the same numbers the dashboard and reports show.

Every function takes an engine and a `Scope` and returns a DataFrame (empty, with its columns, when
there is nothing in scope). Analysts: `from analytics.frames import *`. `default_scope()` is the
period every surface opens on (12 whole ISO weeks plus the current partial week, in the settings'
time zone) and `headline()` the figures they lead with, so a notebook shows the dashboard's number.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Engine

from analytics import branching, rollups
from analytics.metrics import HEADLINE, compute
from analytics.metrics import headline as headline_of
from analytics.metrics import sliced as sliced_metrics
from analytics.rows import ScopeData
from analytics.rules import FailureRules
from analytics.scope import Scope
from analytics.selects import load


def default_scope(
    timezone: str = "UTC", teams: tuple[str, ...] = (), services: tuple[str, ...] = ()
) -> Scope:
    """The default period of every surface (`Scope.default`) for the teams or services given."""
    return Scope.default(timezone, teams, services)


def headline(engine: Engine, scope: Scope, rules: FailureRules | None = None) -> pd.DataFrame:
    """One row: the headline figures (`analytics.metrics.headline`: deployments, deploy days per week, change
    failure rate, lead time and recovery p50 hours) of the scope, as every surface shows them."""
    with engine.connect() as conn:
        figures = compute(rollups.load(conn, scope, rules))
    return pd.DataFrame([headline_of(figures)], columns=list(HEADLINE))


def _data(engine: Engine, scope: Scope, rules: FailureRules | None = None) -> ScopeData:
    with engine.connect() as conn:
        return load(conn, scope, rules)


def _frame(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(records, columns=columns)


def deployments(engine: Engine, scope: Scope, rules: FailureRules | None = None) -> pd.DataFrame:
    """Production deployments in scope: service, team, finished_at, rollback, rework, failed,
    failure reasons and recovery."""
    rows = _data(engine, scope, rules).deployments
    return _frame(
        [
            {
                "service": r.service,
                "team": r.team,
                "finished_at": r.at,
                "deployment_id": r.deployment_id,
                "ref": r.ref,
                "rollback": bool(r.rollback),
                "rework": r.rework,
                "failed": r.failed,
                "incident": bool(r.incident),
                "rolled_back": bool(r.failed_rollback),
                "hotfix": bool(r.hotfix),
                "recovered_at": r.recovered_at,
            }
            for r in rows
        ],
        [
            "service",
            "team",
            "finished_at",
            "deployment_id",
            "ref",
            "rollback",
            "rework",
            "failed",
            "incident",
            "rolled_back",
            "hotfix",
            "recovered_at",
        ],
    )


def lead_times(engine: Engine, scope: Scope) -> pd.DataFrame:
    """One row per change counted in lead time: service, team, started_at, deployed_at, hours."""
    rows = _data(engine, scope).changes
    return _frame(
        [
            {
                "service": r.service,
                "team": r.team,
                "started_at": r.started_at,
                "deployed_at": r.at,
                "hours": r.lead_time_hours,
            }
            for r in rows
        ],
        ["service", "team", "started_at", "deployed_at", "hours"],
    )


def failures(engine: Engine, scope: Scope, rules: FailureRules | None = None) -> pd.DataFrame:
    """Failed changes in scope with their reasons and recovery hours (NaN: unrecovered)."""
    frame = deployments(engine, scope, rules)
    frame = frame[frame["failed"]].copy()
    frame["recovery_hours"] = (
        frame["recovered_at"] - frame["finished_at"]
    ).dt.total_seconds() / 3600
    return frame.reset_index(drop=True)


def build_health(engine: Engine, scope: Scope) -> pd.DataFrame:
    """Finished pipelines in scope: service, team, finished_at, status, duration, queue, default
    branch, failed tests."""
    rows = _data(engine, scope).pipelines
    return _frame(
        [
            {
                "service": r.service,
                "team": r.team,
                "finished_at": r.at,
                "status": r.status,
                "duration_s": r.duration_s,
                "queued_s": r.queued_s,
                "default_branch": bool(r.default_branch),
                "failed_tests": int(r.failed_tests or 0),
            }
            for r in rows
        ],
        [
            "service",
            "team",
            "finished_at",
            "status",
            "duration_s",
            "queued_s",
            "default_branch",
            "failed_tests",
        ],
    )


def branch_strategies(engine: Engine, scope: Scope) -> pd.DataFrame:
    """One row per service: its repository's branch strategy (trunk-based, github-flow,
    gitlab-flow, git-flow, unknown), the signals that decided it in words, and each signal
    (`analytics.branching`)."""
    with engine.connect() as conn:
        rows = branching.classify(conn, scope)
    columns = list(branching.BranchStrategy.__dataclass_fields__)
    return _frame([r.as_json() for r in rows], columns)


def scorecard(
    engine: Engine, scope: Scope, by: str = "team", rules: FailureRules | None = None
) -> pd.DataFrame:
    """The DORA scorecard: one row per team (or service, week, month) with each key figure and its
    performance level."""
    with engine.connect() as conn:
        data = rollups.load(conn, scope, rules)
    records = []
    for key, m in sliced_metrics(data, by):
        records.append(
            {
                by: key,
                "deployments": m["deployment_frequency"]["deployments"],
                "deploy_days_per_week": m["deployment_frequency"]["median_days_per_week"],
                "deployment_frequency_level": m["deployment_frequency"]["level"],
                "lead_time_hours": m["lead_time"]["median_hours"],
                "lead_time_level": m["lead_time"]["level"],
                "change_failure_rate": m["change_failure_rate"]["rate"],
                "change_failure_level": m["change_failure_rate"]["level"],
                "recovery_hours": m["recovery_time"]["median_hours"],
                "recovery_level": m["recovery_time"]["level"],
            }
        )
    return pd.DataFrame.from_records(
        records,
        columns=[
            by,
            "deployments",
            "deploy_days_per_week",
            "deployment_frequency_level",
            "lead_time_hours",
            "lead_time_level",
            "change_failure_rate",
            "change_failure_level",
            "recovery_hours",
            "recovery_level",
        ],
    )
