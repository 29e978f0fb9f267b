"""What every policy's scan reads: the period and settings of a scan (`Scan`), and the two selects
several policies share (the successful deployments finished in the period, the merge requests
merged in it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, func, or_, select
from sqlalchemy.orm import aliased

from analytics.policies.violation import Violation
from analytics.promotion import image_column, stage_column
from analytics.unmerged import Graph, graph
from config.settings import PoliciesSettings
from warehouse.schema import Deployment, Environment, Image, MergeRequest, Pipeline, Service

Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])  # a select, whatever its columns


@dataclass
class Scan:
    """A scan's period [since, until), promotion path and `[policies]` settings."""

    since: datetime
    until: datetime
    promotion_path: list[str]
    params: PoliciesSettings = field(default_factory=PoliciesSettings)
    # what several policies of one scan read alike (`deployments`), by connection: read once
    shared: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


def deployments(
    conn: Connection, scan: Scan, environments: list[str] | None = None, kind: str | None = None
) -> list[Any]:
    """Successful deployments finished in the scan's period (to the stages `environments`, of the
    `kind` app, schema or config, when given), oldest first, each with its `stage`: the
    promotion-path name its environment stands for (a production region stands where production
    does; `analytics.promotion.stage_column`). Read once per scan and connection: seven policies
    ask for them."""
    key = ("deployments", conn)
    if key not in scan.shared:
        scan.shared[key] = deployments_where(conn, scan)
    return [
        d
        for d in scan.shared[key]
        if (environments is None or d.stage in environments) and (kind is None or d.kind == kind)
    ]


def deployments_where(conn: Connection, scan: Scan, *criteria: Any) -> list[Any]:
    """The rows `deployments` gives, those meeting `criteria` only, read now (a view asking for a
    few of them reads those, not the period's every deployment)."""
    query = select(
        Deployment.id,
        Deployment.source_id,
        Deployment.external_id,
        Deployment.service_id,
        Service.name.label("service"),
        Environment.name.label("environment"),
        Environment.tier,
        stage_column(scan.promotion_path).label("stage"),
        Deployment.image_digest,
        Deployment.image_ref,
        Deployment.sha,
        Deployment.ref,
        Deployment.url,
        Deployment.kind,
        Deployment.schema_version,
        func.coalesce(Deployment.started_at, Deployment.created_at, Deployment.finished_at).label(
            "start"
        ),
        Deployment.finished_at,
    )
    query = _successful(query, scan, *criteria)
    return list(conn.execute(query.order_by(Deployment.finished_at, Deployment.id)).all())


def deployments_counted(conn: Connection, scan: Scan, *criteria: Any) -> dict[str, int]:
    """The rows `deployments_where` gives, counted per service in SQL: service name -> count."""
    query = _successful(select(Service.name, func.count()), scan, *criteria)
    return {name: count for name, count in conn.execute(query.group_by(Service.name))}


def _successful(query: Q, scan: Scan, *criteria: Any) -> Q:
    """`query` over the successful deployments finished in the scan's period meeting `criteria`,
    with their service and environment."""
    return (
        query.select_from(Deployment)
        .join(Service, Service.id == Deployment.service_id)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(
            Deployment.status == "success",
            Deployment.finished_at >= scan.since,
            Deployment.finished_at < scan.until,
            *criteria,
        )
    )


def period_images(scan: Scan) -> Select[Any]:
    """The images (`analytics.promotion.image_column`) of the successful application deployments
    finished in the scan's period to an environment after the first of the promotion path, as a
    select: the images untested-image asks the upstream runs about."""
    platform, path = aliased(Image), scan.promotion_path
    return (
        select(image_column(Deployment, platform))
        .join(Environment, Environment.id == Deployment.environment_id)
        .outerjoin(platform, platform.digest == Deployment.image_digest)
        .where(
            Deployment.status == "success",
            Deployment.kind == "app",
            Deployment.finished_at >= scan.since,
            Deployment.finished_at < scan.until,
            stage_column(path).in_(path[1:]),
        )
    )


def commit_graph(conn: Connection, scan: Scan) -> Graph:
    """`analytics.unmerged.graph` of the scan: the direct pushes of its period and the branches
    long-lived-branch's `max_age_days` makes long-lived at its end, read once per scan and
    connection for direct-push and long-lived-branch (one walk of the first-parent lines)."""
    key = ("commit_graph", conn)
    if key not in scan.shared:
        max_age = timedelta(days=scan.params.long_lived_branch.max_age_days)
        scan.shared[key] = graph(conn, scan.since, scan.until, scan.until - max_age)
    found: Graph = scan.shared[key]
    return found


def memo(scan: Scan, name: str) -> dict[Any, Any]:
    """A dict of answers shared by the policies of one scan (`canonical`'s and `revisions`')."""
    found: dict[Any, Any] = scan.shared.setdefault(("memo", name), {})
    return found


def deployment_subject(d: Any) -> str:
    """The subject of a deployment's violation."""
    return f"deployment {d.source_id}:{d.external_id}"


def of_deployment(policy: str, severity: str, d: Any, message: str) -> Violation:
    """A violation by the deployment `d`: its service, environment, link and finish."""
    return Violation(
        policy,
        severity,
        d.service,
        d.environment,
        deployment_subject(d),
        message,
        d.url,
        occurred_at=d.finished_at,
    )


def of_merge_request(policy: str, severity: str, mr: Any, message: str) -> Violation:
    """A violation by the merged merge request `mr` (a row of `merged`): its link and merge."""
    return Violation(
        policy,
        severity,
        mr.service,
        None,
        f"merge request {mr.repo_id}!{mr.iid}",
        message,
        mr.web_url,
        occurred_at=mr.merged_at,
    )


def merged(conn: Connection, scan: Scan) -> list[Any]:
    """Merge requests merged in the scan's period that either merge-request policy flags, with
    their service and `head_status`: the status of the latest pipeline of their head created by
    the merge (a correlated subquery on ix_pipeline_repo_sha, so one query, not one per MR), the
    rest left in SQL: those whose head's pipeline was not a success, or with fewer approvals than
    merge-without-approval's `required_approvals` (3,000 of the 33,000 merged on the large
    sandbox organisation); read once per scan and connection for both policies, which keep their
    own. Those not released yet first, then by release and id: the order SQLite's index on
    (state, released_at) gave before it was written here, so that PostgreSQL gives it too."""
    key = ("merged", conn)
    if key not in scan.shared:
        head_status = (
            select(Pipeline.status)
            .where(
                Pipeline.repo_id == MergeRequest.repo_id,
                Pipeline.sha == MergeRequest.head_sha,
                Pipeline.created_at <= MergeRequest.merged_at,
            )
            .order_by(Pipeline.created_at.desc(), Pipeline.id.desc())
            .limit(1)
            .correlate(MergeRequest)
            .scalar_subquery()
            .label("head_status")
        )
        every = (
            select(
                MergeRequest.repo_id,
                MergeRequest.iid,
                MergeRequest.head_sha,
                MergeRequest.merged_at,
                MergeRequest.approvals,
                MergeRequest.web_url,
                MergeRequest.released_at,
                MergeRequest.id,
                Service.name.label("service"),
                head_status,
            )
            .join(Service, Service.repo_id == MergeRequest.repo_id)
            .where(
                MergeRequest.state == "merged",
                MergeRequest.merged_at >= scan.since,
                MergeRequest.merged_at < scan.until,
            )
            .subquery()
        )
        required = scan.params.merge_without_approval.required_approvals
        flagged = select(*(c for c in every.c if c.name not in ("released_at", "id"))).where(
            or_(  # the head's status asked once (SQLite puts the subquery where it is named)
                func.coalesce(every.c.head_status, "") != "success",
                func.coalesce(every.c.approvals, 0) < required,
            )
        )
        scan.shared[key] = list(
            conn.execute(flagged.order_by(every.c.released_at.nulls_first(), every.c.id))
        )
    return list(scan.shared[key])
