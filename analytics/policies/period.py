"""What every policy's scan reads: the period and settings of a scan (`Scan`), and the two selects
several policies share (the successful deployments finished in the period, the merge requests
merged in it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from analytics.policies.violation import Violation
from analytics.promotion import run_rows, stage_name
from config.settings import PoliciesSettings
from warehouse.schema import Deployment, Environment, MergeRequest, Service


@dataclass
class Scan:
    """A scan's period [since, until), promotion path and `[policies]` settings."""

    since: datetime
    until: datetime
    promotion_path: list[str]
    params: PoliciesSettings = field(default_factory=PoliciesSettings)
    # what several policies of one scan read alike (`deployments`), by connection: read once
    shared: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


class Staged:
    """A deployment row with `stage`: the promotion-path name its environment stands for (a
    production region stands where production does)."""

    def __init__(self, row: Any, stage: str) -> None:
        self._row, self.stage = row, stage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def deployments(
    conn: Connection, scan: Scan, environments: list[str] | None = None, kind: str | None = None
) -> list[Any]:
    """Successful deployments finished in the scan's period (to the stages `environments`, of the
    `kind` app, schema or config, when given), oldest first, each `Staged`. Read once per scan
    and connection: seven policies ask for them."""
    key = ("deployments", conn)
    if key not in scan.shared:
        scan.shared[key] = _deployments(conn, scan)
    return [
        d
        for d in scan.shared[key]
        if (environments is None or d.stage in environments) and (kind is None or d.kind == kind)
    ]


def _deployments(conn: Connection, scan: Scan) -> list[Staged]:
    query = (
        select(
            Deployment.id,
            Deployment.source_id,
            Deployment.external_id,
            Deployment.service_id,
            Service.name.label("service"),
            Environment.name.label("environment"),
            Environment.position,
            Environment.tier,
            Deployment.image_digest,
            Deployment.image_ref,
            Deployment.sha,
            Deployment.ref,
            Deployment.url,
            Deployment.kind,
            Deployment.schema_version,
            func.coalesce(
                Deployment.started_at, Deployment.created_at, Deployment.finished_at
            ).label("start"),
            Deployment.finished_at,
        )
        .join(Service, Service.id == Deployment.service_id)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(
            Deployment.status == "success",
            Deployment.finished_at >= scan.since,
            Deployment.finished_at < scan.until,
        )
    )
    rows = conn.execute(query.order_by(Deployment.finished_at, Deployment.id)).all()
    path = scan.promotion_path
    return [Staged(r, stage_name(r.environment, r.position, path)) for r in rows]


def upstream_runs(conn: Connection, scan: Scan) -> list[Any]:
    """`analytics.promotion.run_rows` of every service in the environments before the last of the
    promotion path, read once per scan and connection (untested-image and rebuilt-image)."""
    key = ("upstream_runs", conn)
    if key not in scan.shared:
        scan.shared[key] = run_rows(conn, None, scan.promotion_path[:-1])
    return list(scan.shared[key])


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


def merged(conn: Connection, scan: Scan, *columns: Any) -> list[Any]:
    """Merge requests merged in the scan's period, with their service (and `columns`, e.g. a
    correlated subquery about each merge request, so a policy makes one query, not one per MR)."""
    return list(
        conn.execute(
            select(
                MergeRequest.repo_id,
                MergeRequest.iid,
                MergeRequest.head_sha,
                MergeRequest.merged_at,
                MergeRequest.approvals,
                MergeRequest.web_url,
                Service.name.label("service"),
                *columns,
            )
            .join(Service, Service.repo_id == MergeRequest.repo_id)
            .where(
                MergeRequest.state == "merged",
                MergeRequest.merged_at >= scan.since,
                MergeRequest.merged_at < scan.until,
            )
        )
    )
