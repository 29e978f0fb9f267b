"""Selects behind the dashboard's lists and breakdowns, beside the metrics of `analytics.metrics`.

Every function takes a connection (and a `Scope` where the view has a period) and returns plain
rows as dicts, newest or worst first. Filters, joins, grouping and limits run in the database
(SQLAlchemy Core, the same on SQLite and PostgreSQL); only a view that ranks by a time span (SQLite
cannot subtract its timestamps) ranks the scope's rows in Python. Links point into the source
(GitLab commit, merge request, pipeline, deployment and incident pages) when the warehouse has
their web URLs.
"""

from analytics.scope import check_names, filter_options
from analytics.views._common import commit_url, compare_url
from analytics.views.attention import (
    comparison_buckets,
    comparison_weeks,
    services_needing_attention,
)
from analytics.views.branching import branch_strategies
from analytics.views.builds import default_branches, failing_tests
from analytics.views.delivery import (
    failed_changes,
    failure_counts,
    incidents,
    presence,
    slowest_changes,
)
from analytics.views.distributions import deployments_by_service_environment
from analytics.views.environments import (
    drift_matrix,
    environment_state,
    promotion_history,
)
from analytics.views.quality_gates import quality_gates
from analytics.views.sources import (
    rejected_payloads,
    sync_errors,
    sync_overview,
    unmapped_tracker_rows,
)
from analytics.views.violations import new_since, select_violations

__all__ = [
    "branch_strategies",
    "check_names",
    "commit_url",
    "compare_url",
    "comparison_buckets",
    "comparison_weeks",
    "default_branches",
    "deployments_by_service_environment",
    "drift_matrix",
    "environment_state",
    "failed_changes",
    "failing_tests",
    "failure_counts",
    "filter_options",
    "incidents",
    "new_since",
    "presence",
    "promotion_history",
    "quality_gates",
    "rejected_payloads",
    "select_violations",
    "services_needing_attention",
    "slowest_changes",
    "sync_errors",
    "sync_overview",
    "unmapped_tracker_rows",
]
