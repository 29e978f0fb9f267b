"""The typed rows the metrics are computed from: one dataclass per part of a scope's facts
(`analytics.selects.load` selects them), and `ScopeData`, the parts of one scope.

Every row names its service, its team (None: the service has none) and `at`, the moment that
places it in a week, month or period; slicing (`analytics.slices`) needs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime

from analytics import stats
from analytics.scope import Scope


def lead_time_hours(started_at: datetime | None, deployed_at: datetime) -> float | None:
    """A change's lead time in hours: from its start (first commit) to its first deployment to
    the scope's environment; None without a start (docs/METRICS.md#lead-time-for-changes)."""
    return stats.hours(deployed_at - started_at) if started_at else None


@dataclass(slots=True)
class Row:
    """What every row has: its service, team and the moment that places it in time."""

    service: str
    team: str | None
    at: datetime


@dataclass(slots=True)
class DeploymentRow(Row):
    """A production (or the scope's environment's) deployment of a deployment chain, `at` its
    finish, with its change failure when it caused one and whether it is rework."""

    deployment_id: int
    service_id: int
    environment_id: int
    rollback: bool | None
    ref: str | None
    incident: bool | None = None  # the failure's reasons (None: no failure)
    failed_rollback: bool | None = None
    hotfix: bool | None = None
    failed_id: int | None = None  # the change_failure's deployment id (None: not a failure)
    recovered_at: datetime | None = None
    rework: bool = False  # set by the select (`analytics.selects`)

    @property
    def failed(self) -> bool:
        return self.failed_id is not None


@dataclass(slots=True)
class ChangeRow(Row):
    """A commit's first deployment to the scope's environment, `at` its finish."""

    started_at: datetime | None
    environment_id: int | None = None  # of the deployment (its rollup's environment)

    @property
    def lead_time_hours(self) -> float | None:
        return lead_time_hours(self.started_at, self.at)


@dataclass(slots=True)
class MergeRequestRow(Row):
    """A merged MR whose commit first reached the scope's environment at `at`, with its stage
    timestamps."""

    first_commit_at: datetime | None
    created_at: datetime | None
    first_review_at: datetime | None
    merged_at: datetime | None
    environment_id: int | None = None  # of the deployment (its rollup's environment)


@dataclass(slots=True)
class AttemptRow(Row):
    """A finished deployment attempt (success or failed) in any environment."""

    environment: str
    tier: str | None
    status: str
    environment_id: int | None = None


@dataclass(slots=True)
class PipelineRow(Row):
    """A finished pipeline, with whether it ran on the default branch and its failed tests."""

    repo_id: int
    status: str
    duration_s: float | None
    queued_s: float | None
    default_branch: bool | None
    failed_tests: int = 0


@dataclass(slots=True)
class IncidentRow(Row):
    """An incident opened at `at`."""

    resolved_at: datetime | None


@dataclass(slots=True)
class UnreleasedRow(Row):
    """A merged MR (merged at `at`) not in the scope's environment at the scope's start, with
    when it reached it (None: not yet)."""

    released_at: datetime | None


@dataclass(slots=True)
class RequirementRow(Row):
    """A requirement whose first linked change reached production at `at`."""

    created_at: datetime
    started_at: datetime | None


@dataclass(slots=True)
class BugRow(Row):
    """A bug linked to a change, opened at `at`, with when its first change reached production
    (None: not yet)."""

    deployed_at: datetime | None

    @property
    def escaped(self) -> bool:
        """Whether the change was already in production when the bug was opened."""
        return self.deployed_at is not None and self.deployed_at <= self.at


@dataclass
class ScopeData:
    """The scope's rows, selected once; metrics are computed from any subset of them. A part not
    loaded is empty."""

    scope: Scope
    deployments: list[DeploymentRow] = field(default_factory=list)
    changes: list[ChangeRow] = field(default_factory=list)
    merge_requests: list[MergeRequestRow] = field(default_factory=list)
    attempts: list[AttemptRow] = field(default_factory=list)
    pipelines: list[PipelineRow] = field(default_factory=list)
    requirements: list[RequirementRow] = field(default_factory=list)  # from trackers
    bugs: list[BugRow] = field(default_factory=list)  # linked to a change
    incidents: list[IncidentRow] = field(default_factory=list)
    unreleased: list[UnreleasedRow] = field(default_factory=list)  # merged, not yet released

    def parts(self) -> dict[str, list[Row]]:
        """The parts by name, in field order."""
        return {name: getattr(self, name) for name in PARTS}

    def subset(self, keep: Callable[[Row], bool], scope: Scope | None = None) -> ScopeData:
        """The rows `keep` accepts, over `scope` (default: this one's)."""
        kept = {name: [r for r in rows if keep(r)] for name, rows in self.parts().items()}
        return ScopeData(scope or self.scope, **kept)  # type: ignore[arg-type]


# the parts of ScopeData, in its field order
PARTS = tuple(f.name for f in fields(ScopeData) if f.name != "scope")

__all__ = [
    "PARTS",
    "AttemptRow",
    "BugRow",
    "ChangeRow",
    "DeploymentRow",
    "IncidentRow",
    "MergeRequestRow",
    "PipelineRow",
    "RequirementRow",
    "Row",
    "ScopeData",
    "UnreleasedRow",
    "lead_time_hours",
]
