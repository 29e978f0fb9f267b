"""Branch strategy per repository (DESIGN.md section 5, docs/POLICIES.md "Branch strategy"):
trunk-based, GitHub flow, GitLab flow or git-flow, with the signals that decided it.

The signals, over the merge requests merged in the scope's period:

- *long-lived branches*: the default branch and every branch that merge requests target; a merge
  request from any other branch is *feature work* (feature, release and hotfix branches);
- *integration branch*: the branch most feature work targets, and its share of the feature work;
- *environment branches*: long-lived branches other than the default one that receive merge
  requests from the default branch, or from another environment branch;
- *median branch life*: hours from a feature merge request's first commit (authored; derive
  stores it, `analytics.first_commits`) to its merge;
- *merges per working day* of feature work into the default branch (Monday to Friday in the
  scope's time zone);
- *active branches*: branches other than the long-lived ones, with a commit in the last
  `ACTIVE_DAYS` of the period, that no merge request has merged or closed; and the authors of
  the feature work, so the count reads against the team's size;
- *release and hotfix branches* with a commit in the period (`release/*`, `hotfix/*`).

Decision, in order: no merged merge request: `unknown`; feature work lands mostly
(`GIT_FLOW_MIN_INTEGRATION_SHARE`) on a branch other than the default one: `git-flow`; an
environment branch received at least `GITLAB_FLOW_MIN_ENVIRONMENT_MERGES`: `gitlab-flow`; short
branches, daily merges and few active branches (`TRUNK_*`): `trunk-based`; otherwise `github-flow`
(feature branches into the default branch, but longer-lived or less often merged).

Aggregation runs in SQL, per repository and target branch; only the feature merge requests of the
period come back one row each (their first-commit time), for the median.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, exists, false, func, or_, select, tuple_

from analytics import stats
from analytics.rules import merged
from analytics.scope import Scope
from warehouse.schema import Branch, MergeRequest, Repo, Service, Team

TRUNK_BASED, GITHUB_FLOW, GITLAB_FLOW, GIT_FLOW = (
    "trunk-based",
    "github-flow",
    "gitlab-flow",
    "git-flow",
)
UNKNOWN = "unknown"
ACTIVE_DAYS = 14  # a branch with a commit in the period's last two weeks is active
TRUNK_MAX_BRANCH_LIFE_HOURS = 48.0  # "median branch life under about two days"
TRUNK_MIN_MERGES_PER_DAY = 1.0  # "daily merges to the default branch"
TRUNK_MAX_ACTIVE_PER_AUTHOR = 2.0  # "few active branches": at most two per author of feature work
GIT_FLOW_MIN_INTEGRATION_SHARE = 0.5  # most feature work lands on develop, not the default branch
GITLAB_FLOW_MIN_ENVIRONMENT_MERGES = 2  # merges from the default branch into an environment branch
RELEASE_PREFIX, HOTFIX_PREFIX = "release/", "hotfix/"


@dataclass
class BranchStrategy:
    """A repository's branch strategy and the signals that decided it."""

    service: str
    team: str | None
    default_branch: str
    strategy: str
    decided_by: str  # the signals that decided it, in words
    merged: int = 0  # merge requests merged in the period
    feature_merges: int = 0  # of them, from branches other than the long-lived ones
    integration_branch: str | None = None
    integration_share: float | None = None  # share of feature work into the integration branch
    default_share: float | None = None  # share of feature work into the default branch
    median_branch_life_hours: float | None = None
    merges_per_day: float | None = None  # feature merges into the default branch per working day
    active_branches: int = 0
    authors: int = 0
    environment_branches: list[str] = field(default_factory=list)
    release_branches: int = 0
    hotfix_branches: int = 0

    def as_json(self) -> dict[str, Any]:
        """The row as plain JSON values."""
        return asdict(self)


def _working_days(scope: Scope) -> int:
    first = stats.local_day(scope.since, scope.zone)
    last = stats.local_day(scope.until - timedelta(microseconds=1), scope.zone)
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return sum(1 for day in days if day.weekday() < 5)


def _merged_in(scope: Scope, mr: Any) -> Any:
    return and_(merged(mr), mr.merged_at >= scope.since, mr.merged_at < scope.until)


def _targets(conn: Connection, scope: Scope, repos: list[int]) -> list[tuple[int, str]]:
    """The (repo, branch) pairs that merge requests merged in the period target: with the
    default branch, the long-lived ones. Read once and passed as values: no index leads with the
    target branch, so a correlated subquery scanned a repository's merged merge requests once
    per merge request or branch it asked about (3.1 s on the large organisation)."""
    query = (
        select(MergeRequest.repo_id, MergeRequest.target_branch)
        .where(MergeRequest.repo_id.in_(repos), _merged_in(scope, MergeRequest))
        .distinct()
    )
    return [(repo, branch) for repo, branch in conn.execute(query) if branch is not None]


def _among(targets: list[tuple[int, str]], repo_id: Any, branch: Any) -> Any:
    """Whether (repo_id, branch) is one of `targets` (false when there are none)."""
    return tuple_(repo_id, branch).in_(targets) if targets else false()


def _from_long_lived(targets: list[tuple[int, str]]) -> Any:
    """Whether a merge request's source is long-lived: the default branch, or a branch other
    merge requests of the period target."""
    return or_(
        MergeRequest.source_branch == Repo.default_branch,
        _among(targets, MergeRequest.repo_id, MergeRequest.source_branch),
    )


def _repos(conn: Connection, scope: Scope) -> list[Any]:
    query = select(
        Repo.id, Repo.default_branch, Service.name.label("service"), Team.name.label("team")
    ).select_from(Repo)
    return list(conn.execute(scope.owned(query, on=Service.repo_id == Repo.id)))


def _merges(
    conn: Connection, scope: Scope, repos: list[int], targets: list[tuple[int, str]]
) -> list[Any]:
    """(repo, source if long-lived else None, target, merges) for the period."""
    source = case((_from_long_lived(targets), MergeRequest.source_branch), else_=None)
    merged = (
        select(MergeRequest.repo_id, source.label("source"), MergeRequest.target_branch)
        .join(Repo, Repo.id == MergeRequest.repo_id)
        .where(MergeRequest.repo_id.in_(repos), _merged_in(scope, MergeRequest))
        .subquery()
    )
    query = select(
        merged.c.repo_id, merged.c.source, merged.c.target_branch, func.count()
    ).group_by(merged.c.repo_id, merged.c.source, merged.c.target_branch)
    return list(conn.execute(query))


def _feature_lives(
    conn: Connection, scope: Scope, repos: list[int], targets: list[tuple[int, str]]
) -> list[Any]:
    """(repo, author, merged_at, first commit authored) per feature merge request of the period:
    one from a branch known and not long-lived (`_from_long_lived`, told apart here: as a
    condition, its list of (repo, branch) values was read again for each merge request, 0.2 s of
    0.45 on the large organisation)."""
    query = (
        select(
            MergeRequest.repo_id,
            MergeRequest.author,
            MergeRequest.merged_at,
            MergeRequest.first_commit_at,
            MergeRequest.source_branch,
            Repo.default_branch,
        )
        .join(Repo, Repo.id == MergeRequest.repo_id)
        .where(MergeRequest.repo_id.in_(repos), _merged_in(scope, MergeRequest))
    )
    long_lived = set(targets)
    return [
        r[:4]
        for r in conn.execute(query)
        if r.source_branch is not None  # as SQL's NOT (...): unknown is not a feature branch
        and r.default_branch is not None
        and r.source_branch != r.default_branch
        and (r.repo_id, r.source_branch) not in long_lived
    ]


def _branches(
    conn: Connection, scope: Scope, repos: list[int], targets: list[tuple[int, str]]
) -> dict[int, tuple[int, int, int]]:
    """repo -> (active branches, release branches, hotfix branches)."""
    finished = exists().where(
        MergeRequest.repo_id == Branch.repo_id,
        MergeRequest.source_branch == Branch.name,
        or_(
            and_(MergeRequest.state == "merged", MergeRequest.merged_at < scope.until),
            and_(MergeRequest.state == "closed", MergeRequest.closed_at < scope.until),
        ),
    )
    targeted = _among(targets, Branch.repo_id, Branch.name)
    recent = Branch.last_commit_at >= scope.until - timedelta(days=ACTIVE_DAYS)
    active = and_(recent, ~finished, ~targeted)
    release = Branch.name.startswith(RELEASE_PREFIX, autoescape=True)
    hotfix = Branch.name.startswith(HOTFIX_PREFIX, autoescape=True)
    query = (
        select(
            Branch.repo_id,
            func.sum(case((active, 1), else_=0)),
            func.sum(case((release, 1), else_=0)),
            func.sum(case((hotfix, 1), else_=0)),
        )
        .where(
            Branch.repo_id.in_(repos),
            Branch.is_default.is_(False),
            Branch.last_commit_at >= scope.since,
            Branch.last_commit_at < scope.until,
        )
        .group_by(Branch.repo_id)
    )
    return {r: (int(a or 0), int(rel or 0), int(h or 0)) for r, a, rel, h in conn.execute(query)}


def _environment_branches(default: str, edges: dict[tuple[str, str], int]) -> list[str]:
    """Branches fed enough merges from the default branch, or from an environment branch found
    before them; in promotion order."""
    found: list[str] = []
    while True:
        feeding = {default, *found}
        fed: dict[str, int] = {}
        for (source, target), merges in edges.items():
            if source in feeding and target not in feeding:
                fed[target] = fed.get(target, 0) + merges
        new = sorted(t for t, n in fed.items() if n >= GITLAB_FLOW_MIN_ENVIRONMENT_MERGES)
        if not new:
            return found
        found.extend(new)


def classify(conn: Connection, scope: Scope) -> list[BranchStrategy]:
    """Every repository's branch strategy in the scope (services and teams), by service name."""
    repos = _repos(conn, scope)
    ids = sorted({r.id for r in repos})
    targets = _targets(conn, scope, ids)
    merges: dict[int, list[Any]] = {}
    for row in _merges(conn, scope, ids, targets):
        merges.setdefault(row[0], []).append(row)
    lives: dict[int, list[Any]] = {}
    for row in _feature_lives(conn, scope, ids, targets):
        lives.setdefault(row[0], []).append(row)
    branches = _branches(conn, scope, ids, targets)
    days = _working_days(scope)
    out = [
        _decide(
            BranchStrategy(r.service, r.team, r.default_branch or "main", UNKNOWN, ""),
            merges.get(r.id, []),
            lives.get(r.id, []),
            branches.get(r.id, (0, 0, 0)),
            days,
        )
        for r in repos
    ]
    return sorted(out, key=lambda s: s.service)


def _decide(
    s: BranchStrategy,
    merges: list[Any],
    lives: list[Any],
    branches: tuple[int, int, int],
    days: int,
) -> BranchStrategy:
    s.active_branches, s.release_branches, s.hotfix_branches = branches
    features: dict[str, int] = {}
    edges: dict[tuple[str, str], int] = {}
    for _, source, target, count in merges:
        s.merged += count
        if source is None:
            features[target] = features.get(target, 0) + count
        else:
            edges[(source, target)] = edges.get((source, target), 0) + count
    s.feature_merges = sum(features.values())
    s.environment_branches = _environment_branches(s.default_branch, edges)
    spans = [stats.hours(merged - first) for _, _, merged, first in lives if first and merged]
    s.median_branch_life_hours = stats.percentile(spans, 0.5)
    s.authors = len({author for _, author, _, _ in lives if author})
    if s.feature_merges:
        s.integration_branch = max(features, key=lambda t: (features[t], t == s.default_branch))
        s.integration_share = features[s.integration_branch] / s.feature_merges
        s.default_share = features.get(s.default_branch, 0) / s.feature_merges
    s.merges_per_day = features.get(s.default_branch, 0) / days if days else None
    s.strategy, s.decided_by = _verdict(s)
    return s


def _verdict(s: BranchStrategy) -> tuple[str, str]:
    if not s.merged:
        return UNKNOWN, "no merge request merged in the period"
    develop = s.integration_branch
    if (
        develop
        and develop != s.default_branch
        and (s.integration_share or 0) >= GIT_FLOW_MIN_INTEGRATION_SHARE
    ):
        return GIT_FLOW, (
            f"{s.integration_share:.0%} of feature work merges into {develop}, not "
            f"{s.default_branch}; {s.release_branches} release and {s.hotfix_branches} hotfix "
            "branches"
        )
    if s.environment_branches:
        return GITLAB_FLOW, (
            f"environment branches {', '.join(s.environment_branches)} receive merges from "
            f"{s.default_branch}"
        )
    life, per_day = s.median_branch_life_hours, s.merges_per_day or 0.0
    active_per_author = s.active_branches / max(1, s.authors)
    short = life is not None and life <= TRUNK_MAX_BRANCH_LIFE_HOURS
    daily = per_day >= TRUNK_MIN_MERGES_PER_DAY
    few = active_per_author <= TRUNK_MAX_ACTIVE_PER_AUTHOR
    signals = (
        f"median branch life {life or 0:.0f} h, {per_day:.1f} merges per working day into "
        f"{s.default_branch}, {s.active_branches} active branches for {s.authors} authors"
    )
    if short and daily and few:
        return TRUNK_BASED, signals
    return GITHUB_FLOW, signals


__all__ = [
    "ACTIVE_DAYS",
    "GITHUB_FLOW",
    "GITLAB_FLOW",
    "GITLAB_FLOW_MIN_ENVIRONMENT_MERGES",
    "GIT_FLOW",
    "GIT_FLOW_MIN_INTEGRATION_SHARE",
    "TRUNK_BASED",
    "TRUNK_MAX_ACTIVE_PER_AUTHOR",
    "TRUNK_MAX_BRANCH_LIFE_HOURS",
    "TRUNK_MIN_MERGES_PER_DAY",
    "UNKNOWN",
    "BranchStrategy",
    "classify",
]
