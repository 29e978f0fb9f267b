"""schema-skipped-env (error): a schema deployment to E whose migration version never ran in the
environment before E on the promotion path."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from analytics.policies.period import Scan, deployment_subject, deployments
from analytics.policies.violation import Violation
from config.settings import PolicySettings
from warehouse.schema import Deployment, Environment

ID = "schema-skipped-env"
SEVERITY = "error"
Params = PolicySettings  # `[policies.schema-skipped-env]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Schema deployments in the period whose version had not run upstream by their start."""
    violations = []
    for upstream, env in zip(scan.promotion_path, scan.promotion_path[1:], strict=False):
        schema = [d for d in deployments(conn, scan, [env]) if d.kind == "schema"]
        for d in schema:
            ran = conn.execute(
                select(func.count())
                .select_from(Deployment)
                .join(Environment, Environment.id == Deployment.environment_id)
                .where(
                    Deployment.service_id == d.service_id,
                    Deployment.kind == "schema",
                    Deployment.status == "success",
                    Environment.name == upstream,
                    Deployment.schema_version == d.schema_version,
                    Deployment.finished_at <= d.start,
                )
            ).scalar_one()
            if not ran:
                violations.append(
                    Violation(
                        ID,
                        SEVERITY,
                        d.service,
                        env,
                        deployment_subject(d),
                        f"migration {d.schema_version} ran in {env} but never in {upstream}: "
                        f"apply it to {upstream} first",
                        d.url,
                        occurred_at=d.finished_at,
                    )
                )
    return violations
