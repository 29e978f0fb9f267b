"""Parts of the policy scan computed the straightforward way, as the scan did before issue #21
part 4 made them set-based: the image policies from every successful deployment of the period and
every successful application deployment upstream read row by row, each row's stage, image and
commit decided in Python (`stage_name`, `canonical`, `revisions`), the same predicates asked; and
the unmerged branches from the default branches' whole ancestry. What `analytics.policies.scan`
and `analytics.unmerged.unmerged_branches` find must equal them, in the same order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CTE, Connection, and_, exists, func, select
from sqlalchemy.orm import aliased

from analytics.observed import canonical
from analytics.policies import rebuilt_image, untested_image
from analytics.policies.period import of_deployment
from analytics.policies.violation import Violation
from analytics.promotion import Run, Runs, revisions, stage_name, upstream_of
from config.settings import PoliciesSettings
from warehouse.schema import (
    Branch,
    Commit,
    CommitParent,
    Deployment,
    Environment,
    MergeRequest,
    Service,
)


class Staged:
    """A deployment row with the promotion-path name its environment stands for."""

    def __init__(self, row: Any, stage: str) -> None:
        self._row, self.stage = row, stage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def reference_deployments(
    conn: Connection, since: datetime, until: datetime, path: list[str]
) -> list[Staged]:
    """Successful deployments finished in [since, until), oldest first, staged in Python."""
    rows = conn.execute(
        select(
            Deployment.id,
            Deployment.source_id,
            Deployment.external_id,
            Deployment.service_id,
            Service.name.label("service"),
            Environment.name.label("environment"),
            Environment.position,
            Deployment.image_digest,
            Deployment.sha,
            Deployment.url,
            Deployment.kind,
            func.coalesce(
                Deployment.started_at, Deployment.created_at, Deployment.finished_at
            ).label("start"),
            Deployment.finished_at,
        )
        .join(Service, Service.id == Deployment.service_id)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(
            Deployment.status == "success",
            Deployment.finished_at >= since,
            Deployment.finished_at < until,
        )
        .order_by(Deployment.finished_at, Deployment.id)
    ).all()
    return [Staged(r, stage_name(r.environment, r.position, path)) for r in rows]


def reference_runs(conn: Connection, environments: list[str]) -> Runs:
    """Every successful application deployment of every service to `environments`, one `Run` per
    row, its image and commit looked up in Python."""
    rows = conn.execute(
        select(Deployment.service_id, Environment.name, Deployment.image_digest)
        .add_columns(Deployment.sha, Deployment.finished_at)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(
            Deployment.status == "success",
            Deployment.kind == "app",
            Deployment.finished_at.is_not(None),
            Deployment.service_id.is_not(None),
            Environment.name.in_(environments),
        )
    ).all()
    digests = {r.image_digest for r in rows if r.image_digest}
    images, commits = canonical(conn, digests), revisions(conn, digests)
    runs = Runs()
    for service_id, env, digest, sha, finished in rows:
        image = images[digest] if digest else f"commit:{sha}"
        runs.add(service_id, env, Run(image, finished, commits.get(digest or "")))
    return runs


def reference_untested(
    conn: Connection, since: datetime, until: datetime, path: list[str], params: PoliciesSettings
) -> list[Violation]:
    """untested-image over [since, until) from every upstream run."""
    p = params.untested_image
    found = [
        d
        for d in reference_deployments(conn, since, until, path)
        if d.stage in path[1:] and d.kind == "app"
    ]
    images = canonical(conn, {d.image_digest for d in found if d.image_digest})
    runs = reference_runs(conn, path[:-1])
    out = []
    for d in found:
        image = images[d.image_digest] if d.image_digest else f"commit:{d.sha}"
        skipped = untested_image.skipped_environments(
            runs, d.service_id, image, d.stage, d.start, path, p
        )
        if skipped:
            message = untested_image.message(image, d.environment, skipped, p.min_soak_minutes)
            out.append(of_deployment(untested_image.ID, untested_image.SEVERITY, d, message))
    return out


def reference_rebuilt(
    conn: Connection, since: datetime, until: datetime, path: list[str]
) -> list[Violation]:
    """rebuilt-image over [since, until) from every upstream run."""
    found = [
        d
        for d in reference_deployments(conn, since, until, path)
        if d.stage in path[1:] and d.image_digest
    ]
    digests = {d.image_digest for d in found}
    images, commits = canonical(conn, digests), revisions(conn, digests)
    runs = reference_runs(conn, path[:-1])
    out = []
    for d in found:
        upstream, image = upstream_of(d.stage, path, "previous")[0], images[d.image_digest]
        revision = commits.get(d.image_digest)
        other = rebuilt_image.rebuilt_from(
            runs, d.service_id, image, revision, upstream, d.finished_at
        )
        if revision and other:
            message = rebuilt_image.message(image, revision, upstream, other)
            out.append(of_deployment(rebuilt_image.ID, rebuilt_image.SEVERITY, d, message))
    return out


def _default_ancestry() -> CTE:
    """(repo_id, sha) of every commit the default branch's head reaches, itself included."""
    heads = select(Branch.repo_id, Branch.head_sha.label("sha")).where(
        Branch.is_default, Branch.head_sha.is_not(None)
    )
    reached = heads.cte("default_ancestry", recursive=True)
    parent = aliased(CommitParent)
    return reached.union(
        select(parent.repo_id, parent.parent_sha).join(
            reached, and_(parent.repo_id == reached.c.repo_id, parent.sha == reached.c.sha)
        )
    )


def reference_unmerged(conn: Connection, first_before: datetime) -> list[Any]:
    """`analytics.unmerged.unmerged_branches` from the default branches' whole ancestry: a
    branch's own commits are those its walk reaches before any commit the default branch
    reaches."""
    default = _default_ancestry()
    has_mr = exists().where(
        MergeRequest.repo_id == Branch.repo_id, MergeRequest.source_branch == Branch.name
    )
    merged = exists().where(default.c.repo_id == Branch.repo_id, default.c.sha == Branch.head_sha)
    heads = select(Branch.repo_id, Branch.name, Branch.head_sha.label("sha")).where(
        Branch.is_default.is_(False),
        Branch.protected.is_(False),
        Branch.head_sha.is_not(None),
        ~has_mr,
        ~merged,
    )
    own = heads.cte("own_commits", recursive=True)
    parent = aliased(CommitParent)
    on_default = exists().where(
        default.c.repo_id == parent.repo_id, default.c.sha == parent.parent_sha
    )
    own = own.union(
        select(own.c.repo_id, own.c.name, parent.parent_sha)
        .join(parent, and_(parent.repo_id == own.c.repo_id, parent.sha == own.c.sha))
        .where(~on_default)
    )
    since = func.min(func.coalesce(Commit.authored_at, Commit.committed_at))
    ages = (
        select(own.c.repo_id, own.c.name, since.label("since"))
        .join(Commit, and_(Commit.repo_id == own.c.repo_id, Commit.sha == own.c.sha))
        .group_by(own.c.repo_id, own.c.name)
        .having(since < first_before)
        .subquery()
    )
    query = (
        select(ages.c.repo_id, ages.c.name, ages.c.since, Service.name.label("service"))
        .join(Service, Service.repo_id == ages.c.repo_id)
        .order_by(ages.c.repo_id, ages.c.name)
    )
    return list(conn.execute(query).all())
