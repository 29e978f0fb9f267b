"""Views of environments: what runs where, a service's promotion history and the latest drift
snapshot (drift arrives with `cdmetrics policy scan`; its violations are
analytics.views.violations)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, true
from sqlalchemy.orm import aliased

from analytics.rules import DEPLOYMENT_REPO
from analytics.scope import Scope
from analytics.views._common import as_dicts, commit_url
from warehouse.schema import (
    Deployment,
    DeploymentChain,
    DriftSnapshot,
    Environment,
    Repo,
    Service,
)


def environment_state(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """What runs where at the end of the period: per service and environment the last successful
    application deployment before `until` (digest, commit, when), from recorded deployments."""
    # each service and environment's latest chained deployment by the deployments' (service,
    # environment, finished) index, read backwards from `until` (of equal finish times the later
    # id; a chain row's finish is its deployment's): grouping every chain row of the history read
    # all of them (0.27 s on a large organisation)
    latest = (
        select(Deployment.id)
        .where(
            Deployment.service_id == Service.id,
            Deployment.environment_id == Environment.id,
            Deployment.finished_at < scope.until,
            select(DeploymentChain.id)
            .where(DeploymentChain.deployment_id == Deployment.id)
            .exists(),
        )
        .order_by(Deployment.finished_at.desc(), Deployment.id.desc())
        .limit(1)
        .correlate(Service, Environment)
        .scalar_subquery()
    )
    query = scope.owned(
        select(
            Service.name.label("service"),
            Environment.name.label("environment"),
            Environment.position,
            Deployment.finished_at,
            Deployment.sha,
            Deployment.image_digest,
            Deployment.ref,
            Deployment.url.label("deployment_url"),
            Repo.web_url.label("repo_url"),
        ).select_from(Environment),
        on=true(),
    )
    query = (
        query.join(Deployment, Deployment.id == latest)
        .outerjoin(Repo, Repo.id == DEPLOYMENT_REPO)
        .order_by(Service.name, Environment.position, Deployment.id)
    )
    state = as_dicts(conn.execute(query))
    for r in state:
        r["commit_url"] = commit_url(r["repo_url"], r["sha"])
    return state


def promotion_history(conn: Connection, scope: Scope, service: str) -> list[dict[str, Any]]:
    """Successful application deployments of one service in the period, in every environment."""
    query = (
        select(
            DeploymentChain.finished_at,
            Environment.name.label("environment"),
            Environment.position,
            Deployment.sha,
            Deployment.image_digest,
            Deployment.ref,
            DeploymentChain.rollback,
            Deployment.url.label("deployment_url"),
        )
        .select_from(DeploymentChain)
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .join(Environment, Environment.id == DeploymentChain.environment_id)
        .join(Service, Service.id == DeploymentChain.service_id)
        .where(Service.name == service, scope.period(DeploymentChain.finished_at))
        .order_by(DeploymentChain.finished_at)
    )
    return as_dicts(conn.execute(query))


def drift_matrix(conn: Connection, scope: Scope, behind_only: bool = False) -> list[dict[str, Any]]:
    """The latest drift snapshot of each service and environment pair (empty until drift
    analytics have taken one); `behind_only`: the pairs whose downstream lacks commits the
    upstream runs, or, where the count is unknown, runs another image or none."""
    up, down = aliased(Environment), aliased(Environment)
    d = DriftSnapshot
    latest = (
        select(
            d.service_id,
            d.upstream_environment_id,
            d.downstream_environment_id,
            func.max(d.taken_at).label("taken_at"),
        )
        .where(d.taken_at < scope.until)
        .group_by(d.service_id, d.upstream_environment_id, d.downstream_environment_id)
        .subquery()
    )
    query = scope.owned(
        select(
            Service.name.label("service"),
            up.name.label("upstream"),
            down.name.label("downstream"),
            down.position,
            d.taken_at,
            d.upstream_digest,
            d.downstream_digest,
            d.commits_behind,
            (d.drift_age_s / 3600.0).label("drift_age_hours"),
            d.downstream_ever_upstream,
        )
        .select_from(d)
        .join(
            latest,
            and_(
                latest.c.service_id == d.service_id,
                latest.c.upstream_environment_id == d.upstream_environment_id,
                latest.c.downstream_environment_id == d.downstream_environment_id,
                latest.c.taken_at == d.taken_at,
            ),
        )
        .join(up, up.id == d.upstream_environment_id)
        .join(down, down.id == d.downstream_environment_id),
        d.service_id,
    )
    if behind_only:
        query = query.where(
            or_(
                d.commits_behind > 0,
                and_(
                    d.commits_behind.is_(None),
                    d.upstream_digest.is_not(None),
                    or_(d.downstream_digest.is_(None), d.downstream_digest != d.upstream_digest),
                ),
            )
        )
    return as_dicts(conn.execute(query.order_by(Service.name, down.position)))
