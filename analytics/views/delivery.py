"""Views of delivery: what the warehouse holds, the filters' choices, slowest changes, deployments
per service and environment, failed changes, incidents, failure counts per service."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, case, func, literal, or_, select

from analytics import stats
from analytics.rows import lead_time_hours
from analytics.rules import DEPLOYMENT_REPO, MR_COMMIT, merged
from analytics.scope import Scope
from analytics.selects import scoped_chain
from analytics.views._common import (
    Seconds,
    Window,
    as_dicts,
    commit_url,
    failure_reasons,
)
from warehouse.schema import (
    ChangeFailure,
    Commit,
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Incident,
    MergeRequest,
    MrCommit,
    Pipeline,
    Repo,
    Service,
    SyncState,
    Team,
)


def presence(conn: Connection) -> dict[str, bool]:
    """Which kinds of facts the warehouse holds (an empty warehouse holds none)."""
    tables = {
        "deployments": Deployment,
        "pipelines": Pipeline,
        "commits": Commit,
        "syncs": SyncState,
    }
    return {
        name: conn.execute(select(literal(1)).select_from(model).limit(1)).first() is not None
        for name, model in tables.items()
    }


# -- lead time -------------------------------------------------------------------------------


def slowest_changes(conn: Connection, scope: Scope, limit: int = 20) -> list[dict[str, Any]]:
    """The changes with the longest lead time in scope (slowest first), with their commit and
    the merge request that brought them, and links to both."""
    lead = Seconds(DeploymentChange.started_at, DeploymentChain.finished_at)
    query = scoped_chain(
        scope,
        select(
            Service.name.label("service"),
            DeploymentChain.finished_at.label("deployed_at"),
            DeploymentChange.sha,
            DeploymentChange.started_at,
        )
        .select_from(DeploymentChange)
        .join(DeploymentChain, DeploymentChain.deployment_id == DeploymentChange.deployment_id)
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .where(
            scope.first_change(),
            DeploymentChange.is_merge.is_(False),
            DeploymentChange.started_at.is_not(None),
        ),
    )
    repo_id = DEPLOYMENT_REPO
    query = query.add_columns(repo_id.label("repo_id")).order_by(lead.desc()).limit(limit)
    top = as_dicts(conn.execute(query))
    described = describe_changes(conn, top)
    keep = (
        "service",
        "sha",
        "title",
        "author",
        "started_at",
        "deployed_at",
        "lead_time_hours",
        "commit_url",
        "merge_request",
        "merge_request_url",
    )
    return [{k: r[k] for k in keep} for r in described]


def describe_changes(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` of changes (`repo_id`, `sha`, `started_at`, `deployed_at`: a page, never a table)
    with their commit's title and author, the merged MR that brought each (`merge_request`
    "!iid title", its URL and its created/first review/merged times), the lead time in hours and
    a link to the commit; three selects for the whole list."""
    pairs = {(r["repo_id"], r["sha"]) for r in rows if r["repo_id"] is not None}
    if not pairs:
        commits: dict[tuple[int, str], Any] = {}
        repos: dict[int, str | None] = {}
        mrs: dict[tuple[int, str], dict[str, Any]] = {}
    else:
        commits = {
            (c.repo_id, c.sha): c
            for c in conn.execute(
                select(Commit.repo_id, Commit.sha, Commit.title, Commit.author_name).where(
                    _any_pair(Commit.repo_id, Commit.sha, pairs)
                )
            )
        }
        repos = dict(
            conn.execute(
                select(Repo.id, Repo.web_url).where(Repo.id.in_({p[0] for p in pairs}))
            ).all()
        )
        mrs = merge_requests_of(conn, pairs)
    out = []
    for r in rows:
        key = (r["repo_id"], r["sha"])
        commit, mr = commits.get(key), mrs.get(key, {})
        started, deployed = r["started_at"], r["deployed_at"]
        out.append(
            {
                **r,
                "title": commit.title if commit else None,
                "author": commit.author_name if commit else None,
                "lead_time_hours": lead_time_hours(started, deployed),
                "commit_url": commit_url(repos.get(r["repo_id"]), r["sha"]),
                "merge_request": mr.get("title"),
                "merge_request_url": mr.get("web_url"),
                "mr_created_at": mr.get("created_at"),
                "mr_first_review_at": mr.get("first_review_at"),
                "mr_merged_at": mr.get("merged_at"),
            }
        )
    return out


def _any_pair(repo_column: Any, sha_column: Any, pairs: set[tuple[int, str]]) -> Any:
    """(repo, sha) is one of `pairs` (written so the (repo_id, sha) indexes serve it)."""
    return or_(*(and_(repo_column == repo, sha_column == sha) for repo, sha in sorted(pairs)))


def merge_requests_of(
    conn: Connection, pairs: set[tuple[int, str]]
) -> dict[tuple[int, str], dict[str, Any]]:
    """(repo, sha) -> the merged MR that brought the commit: as its squash or merge commit, else
    as one of its commits."""
    found: dict[tuple[int, str], dict[str, Any]] = {}
    columns = (
        MergeRequest.repo_id,
        MergeRequest.iid,
        MergeRequest.title,
        MergeRequest.web_url,
        MergeRequest.created_at,
        MergeRequest.first_review_at,
        MergeRequest.merged_at,
    )
    via = (
        select(*columns, MrCommit.sha)
        .join(MrCommit, MR_COMMIT)
        .where(_any_pair(MrCommit.repo_id, MrCommit.sha, pairs), merged())
    )
    queries: list[Any] = [via]  # later queries win: a squash or merge commit is the MR itself
    for sha_column in (MergeRequest.merge_commit_sha, MergeRequest.squash_commit_sha):
        queries.append(
            select(*columns, sha_column).where(
                _any_pair(MergeRequest.repo_id, sha_column, pairs), merged()
            )
        )
    for query in queries:
        for repo_id, iid, title, url, created, reviewed, merged_at, sha in conn.execute(query):
            found[(repo_id, sha)] = {
                "iid": iid,
                "title": f"!{iid} {title or ''}",
                "web_url": url,
                "created_at": created,
                "first_review_at": reviewed,
                "merged_at": merged_at,
            }
    return found


# -- deployments and failures ----------------------------------------------------------------


def failed_changes(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Failed changes in scope, newest first, with their reasons, recovery and links."""
    query = scoped_chain(
        scope,
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            DeploymentChain.finished_at,
            Deployment.sha,
            Deployment.ref,
            Deployment.url.label("deployment_url"),
            ChangeFailure.incident,
            ChangeFailure.rollback,
            ChangeFailure.hotfix,
            ChangeFailure.recovered_at,
        )
        .select_from(ChangeFailure)
        .join(DeploymentChain, DeploymentChain.deployment_id == ChangeFailure.deployment_id)
        .join(Deployment, Deployment.id == ChangeFailure.deployment_id),
    )
    query = query.outerjoin(Repo, Repo.id == DEPLOYMENT_REPO).add_columns(
        Repo.web_url.label("repo_url")
    )
    rows = as_dicts(conn.execute(query.order_by(DeploymentChain.finished_at.desc())))
    for r in rows:
        r["reasons"] = failure_reasons(r)
        recovered = r["recovered_at"]
        r["recovery_hours"] = stats.hours(recovered - r["finished_at"]) if recovered else None
        r["commit_url"] = commit_url(r.pop("repo_url"), r["sha"])
    return rows


def incidents(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Incidents opened in the period (the scope's teams and services), newest first, with their
    time to restore; one resolved before it was opened has none and is flagged
    `resolved_before_opened`. An incident several sources recorded is listed once (the record
    `recovery_time.incidents` counts: `duplicate_of` is None)."""
    query = scope.owned(
        select(
            Service.name.label("service"),
            Incident.title,
            Incident.severity,
            Incident.opened_at,
            Incident.resolved_at,
            Incident.url,
            Incident.deployment_external_id.label("linked_deployment"),
        ).select_from(Incident),
        Incident.service_id,
    ).where(scope.period(Incident.opened_at), Incident.duplicate_of.is_(None))
    rows = as_dicts(conn.execute(query.order_by(Incident.opened_at.desc())))
    for r in rows:
        resolved = r["resolved_at"]
        r["resolved_before_opened"] = resolved is not None and resolved < r["opened_at"]
        usable = resolved is not None and not r["resolved_before_opened"]
        r["restore_hours"] = stats.hours(resolved - r["opened_at"]) if usable else None
    return rows


def failure_counts(conn: Connection, scope: Scope, recent: Window, before: Window) -> list[dict]:
    """Per service: production deployments and failed changes in two windows (for a rising
    change failure rate), and failed changes of the period not recovered."""

    def count(window: Window, failed: bool = False) -> Any:
        inside = and_(
            DeploymentChain.finished_at >= window[0], DeploymentChain.finished_at < window[1]
        )
        if failed:
            inside = and_(inside, ChangeFailure.id.is_not(None))
        return func.sum(case((inside, 1), else_=0))

    query = scoped_chain(
        scope,
        select(
            Service.name.label("service"),
            Team.name.label("team"),
            count(recent).label("deployments"),
            count(recent, True).label("failed"),
            count(before).label("deployments_before"),
            count(before, True).label("failed_before"),
            func.sum(
                case(
                    (and_(ChangeFailure.id.is_not(None), ChangeFailure.recovered_at.is_(None)), 1),
                    else_=0,
                )
            ).label("unrecovered"),
        )
        .select_from(DeploymentChain)
        .outerjoin(ChangeFailure, ChangeFailure.deployment_id == DeploymentChain.deployment_id),
    )
    return as_dicts(conn.execute(query.group_by(Service.name, Team.name)))
