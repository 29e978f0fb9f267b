"""The drill-down lists behind the dashboard's tiles, chart bars and table rows: the deployments,
the changes and the pipelines of a scope, narrowed by list filters, read a page at a time
(DESIGN.md section 9).

Both lists are newest first and paged by keyset on (finish time, id): a page is one indexed select
of at most `Page.size` rows starting after the previous page's last row, so the thousandth page
costs what the first does, and rows arriving meanwhile never shift a page. `pages()` walks every
page of a filter result (the dashboard's CSV download streams them). Decisions where the design is
silent: the deployments list holds every attempt (any status, any kind) in the scope's environment
(production tier by default), so the tile's count is the list with `status=success, kind=app`; the
changes list holds a change where it first reached the scope's environment, as lead time counts it
(merge commits left out), with the merge request's stages measured from the change's own start;
the pipelines list holds every pipeline finished in the period of the scope's services (any status,
any ref; pipelines have no environment), as the Builds page counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from analytics import stats
from analytics.rules import DEPLOYMENT_REPO
from analytics.scope import Scope
from analytics.selects import scoped_chain
from analytics.views._common import Seconds, as_dicts, failure_reasons
from analytics.views.delivery import describe_changes
from warehouse.schema import (
    ChangeFailure,
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Environment,
    Pipeline,
    Repo,
    Service,
    Team,
    TestRun,
)

Cursor = tuple[datetime, int]  # (finish time, id) of the last row of a page


@dataclass(frozen=True)
class ListFilters:
    """What narrows a list beyond the scope: a local ISO week or month of the period (`bucket`,
    `2026-W05` or `2026-02`), and for deployments a status, a kind, only failed changes and an
    image digest (prefix); for changes a lead-time range in hours [min_hours, max_hours); for
    pipelines a status, a duration range in minutes [min_minutes, max_minutes), only those with
    failed tests (of the test suite `suite`, if given) and only default-branch ones; for
    deployments and pipelines a ref; for all a commit (sha prefix)."""

    bucket: str | None = None
    status: str | None = None
    kind: str | None = None
    failed_change: bool = False
    commit: str | None = None
    min_hours: float | None = None
    max_hours: float | None = None
    ref: str | None = None
    digest: str | None = None
    min_minutes: float | None = None
    max_minutes: float | None = None
    failed_tests: bool = False
    suite: str | None = None
    default_branch: bool = False


@dataclass(frozen=True)
class Page:
    """`size` rows after `after` (None: the first page)."""

    size: int = 50
    after: Cursor | None = None


@dataclass(frozen=True)
class ListPage:
    """A page of rows and the cursor of the next page (None: this was the last)."""

    rows: list[dict[str, Any]]
    next: Cursor | None


def cursor_text(cursor: Cursor) -> str:
    """A cursor as it travels in a URL (`2026-02-03T10:00:00+00:00~1234`)."""
    return f"{cursor[0].isoformat()}~{cursor[1]}"


def parse_cursor(text: str) -> Cursor:
    """The cursor `cursor_text` wrote; ValueError saying what is expected."""
    moment, _, ident = text.partition("~")
    try:
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None or not ident.isdigit():
            raise ValueError(text)
    except ValueError:
        raise ValueError(
            f"page cursor {text!r} is not <ISO time with offset>~<id>; open the list's first page"
        ) from None
    return at, int(ident)


def _period(scope: Scope, filters: ListFilters, column: Any) -> Any:
    """The scope's period, narrowed to the filters' week or month."""
    condition = scope.period(column)
    if filters.bucket:
        since, until = stats.bucket_bounds(filters.bucket, scope.zone)
        condition = and_(condition, column >= since, column < until)
    return condition


def _keyset(query: Any, at: Any, ident: Any, page: Page) -> Any:
    """Newest first, the page after `page.after`, one row more than the page to see a next one."""
    if page.after is not None:
        moment, last = page.after
        query = query.where(or_(at < moment, and_(at == moment, ident < last)))
    return query.order_by(at.desc(), ident.desc()).limit(page.size + 1)


def _paged(rows: list[dict[str, Any]], page: Page, at: str) -> ListPage:
    more = len(rows) > page.size
    rows = rows[: page.size]
    return ListPage(rows, (rows[-1][at], rows[-1]["id"]) if more and rows else None)


def deployments(conn: Connection, scope: Scope, filters: ListFilters, page: Page) -> ListPage:
    """Deployment attempts in the scope (its teams, services, environment and period), newest
    first: service, environment, status, kind, commit, image digest and reference, ref, deployer,
    start and finish, what made it a failed change (`reasons`, empty for none) and the link to the
    pipeline, job or build that ran it (`url`)."""
    query = scope.owned(
        select(
            Deployment.id,
            Service.name.label("service"),
            Team.name.label("team"),
            Environment.name.label("environment"),
            Deployment.status,
            Deployment.kind,
            Deployment.sha,
            Deployment.image_digest,
            Deployment.image_ref,
            Deployment.ref,
            Deployment.deployer,
            Deployment.started_at,
            Deployment.finished_at,
            ChangeFailure.incident,
            ChangeFailure.rollback,
            ChangeFailure.hotfix,
            Deployment.url,
            Deployment.external_id,
        )
        .select_from(Deployment)
        .join(Environment, Environment.id == Deployment.environment_id)
        .outerjoin(ChangeFailure, ChangeFailure.deployment_id == Deployment.id),
        Deployment.service_id,
    ).where(
        Environment.name == scope.environment
        if scope.environment is not None
        else Environment.tier == "production",
        _period(scope, filters, Deployment.finished_at),
    )
    if filters.status:
        query = query.where(Deployment.status == filters.status)
    if filters.kind:
        query = query.where(Deployment.kind == filters.kind)
    if filters.failed_change:
        query = query.where(ChangeFailure.id.is_not(None))
    if filters.commit:
        query = query.where(Deployment.sha.startswith(filters.commit.lower(), autoescape=True))
    if filters.ref:
        query = query.where(Deployment.ref == filters.ref)
    if filters.digest:
        query = query.where(Deployment.image_digest.startswith(filters.digest, autoescape=True))
    rows = as_dicts(conn.execute(_keyset(query, Deployment.finished_at, Deployment.id, page)))
    for r in rows:
        r["reasons"] = failure_reasons(r)
    return _paged(rows, page, "finished_at")


def changes(conn: Connection, scope: Scope, filters: ListFilters, page: Page) -> ListPage:
    """Changes that first reached the scope's environment in the period, newest first: commit,
    title, author, the merge request (link, created, first review, merged), lead time and its
    stages in hours (coding: change start to MR opened; pickup; review; deploy: merged to
    deployed), and the deployment that shipped it (service, environment, finish, link)."""
    lead = Seconds(DeploymentChange.started_at, DeploymentChain.finished_at)
    query = scoped_chain(
        scope,
        select(
            DeploymentChange.id,
            DeploymentChange.sha,
            DeploymentChange.started_at,
            DeploymentChain.finished_at.label("deployed_at"),
            Service.name.label("service"),
            Team.name.label("team"),
            DEPLOYMENT_REPO.label("repo_id"),
            Deployment.external_id.label("deployment"),
            Deployment.url.label("deployment_url"),
        )
        .select_from(DeploymentChange)
        .join(DeploymentChain, DeploymentChain.deployment_id == DeploymentChange.deployment_id)
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .where(scope.first_change(), DeploymentChange.is_merge.is_(False)),
    )
    if scope.environment is None:  # scoped_chain joins the environment only to name it
        query = query.join(Environment, Environment.id == DeploymentChain.environment_id)
    query = query.add_columns(Environment.name.label("environment")).where(
        _period(scope, filters, DeploymentChain.finished_at)
    )
    if filters.min_hours is not None:
        query = query.where(lead >= filters.min_hours * 3600)
    if filters.max_hours is not None:
        query = query.where(lead < filters.max_hours * 3600)
    if filters.commit:
        query = query.where(
            DeploymentChange.sha.startswith(filters.commit.lower(), autoescape=True)
        )
    rows = as_dicts(
        conn.execute(_keyset(query, DeploymentChain.finished_at, DeploymentChange.id, page))
    )
    listed = _paged(rows, page, "deployed_at")
    described = describe_changes(conn, listed.rows)
    for r in described:
        r.update(_stages(r))
    return ListPage(described, listed.next)


def _stages(r: dict[str, Any]) -> dict[str, float | None]:
    """A change's merge-request stages in hours (None where a time is missing)."""
    points = {
        "coding_hours": (r["started_at"], r["mr_created_at"]),
        "pickup_hours": (r["mr_created_at"], r["mr_first_review_at"]),
        "review_hours": (r["mr_first_review_at"], r["mr_merged_at"]),
        "deploy_hours": (r["mr_merged_at"], r["deployed_at"]),
    }
    return {
        name: stats.hours(end - start) if start and end else None
        for name, (start, end) in points.items()
    }


def pipelines(conn: Connection, scope: Scope, filters: ListFilters, page: Page) -> ListPage:
    """Pipelines of the scope's services (by their repository) finished in the period, newest
    first: service, ref (and whether it is the default branch), Jenkins job, commit, status,
    trigger, start and finish, duration and queue time in seconds, the tests that failed in it
    (`failed_tests`) and the link to the pipeline (`web_url`). The Builds page's figures count
    these rows: its failed pipelines are this list with `status=failed`."""
    failed_tests = (
        select(func.sum(TestRun.failed))
        .where(
            TestRun.source_id == Pipeline.source_id,
            TestRun.pipeline_external_id == Pipeline.external_id,
            TestRun.failed > 0,
        )
        .scalar_subquery()
    )
    query = scope.owned(
        select(
            Pipeline.id,
            Service.name.label("service"),
            Team.name.label("team"),
            Pipeline.ref,
            (Pipeline.ref == Repo.default_branch).label("default_branch"),
            Pipeline.job_name,
            Pipeline.sha,
            Pipeline.status,
            Pipeline.trigger,
            Pipeline.started_at,
            Pipeline.finished_at,
            Pipeline.duration_s,
            Pipeline.queued_s,
            func.coalesce(failed_tests, 0).label("failed_tests"),
            Pipeline.web_url,
            Pipeline.external_id,
        )
        .select_from(Pipeline)
        .join(Repo, Repo.id == Pipeline.repo_id),
        on=Service.repo_id == Pipeline.repo_id,
    ).where(_period(scope, filters, Pipeline.finished_at))
    if filters.status:
        query = query.where(Pipeline.status == filters.status)
    if filters.ref:
        query = query.where(Pipeline.ref == filters.ref)
    if filters.default_branch:
        query = query.where(Pipeline.ref == Repo.default_branch)
    if filters.commit:
        query = query.where(Pipeline.sha.startswith(filters.commit.lower(), autoescape=True))
    if filters.min_minutes is not None:
        query = query.where(Pipeline.duration_s >= filters.min_minutes * 60)
    if filters.max_minutes is not None:
        query = query.where(Pipeline.duration_s < filters.max_minutes * 60)
    if filters.failed_tests or filters.suite:
        failing = and_(
            TestRun.source_id == Pipeline.source_id,
            TestRun.pipeline_external_id == Pipeline.external_id,
            TestRun.failed > 0,
        )
        if filters.suite:
            failing = and_(failing, TestRun.suite == filters.suite)
        query = query.where(select(TestRun.id).where(failing).exists())
    rows = as_dicts(conn.execute(_keyset(query, Pipeline.finished_at, Pipeline.id, page)))
    for r in rows:
        r["default_branch"] = bool(r["default_branch"])
    return _paged(rows, page, "finished_at")


ListView = Callable[[Connection, Scope, ListFilters, Page], ListPage]
LISTS: dict[str, ListView] = {
    "deployments": deployments,
    "changes": changes,
    "pipelines": pipelines,
}


def pages(
    conn: Connection, name: str, scope: Scope, filters: ListFilters, size: int = 500
) -> Iterator[list[dict[str, Any]]]:
    """Every page of the list `name` (`deployments`, `changes`, `pipelines`) under the filters, in order."""
    page = Page(size)
    while True:
        listed = LISTS[name](conn, scope, filters, page)
        yield listed.rows
        if listed.next is None:
            return
        page = replace(page, after=listed.next)
