"""schema-skipped-env (error): a schema deployment to E whose migration version never ran in the
environment before E on the promotion path."""

from __future__ import annotations

from itertools import pairwise

from sqlalchemy import Connection, func, select

from analytics.policies.period import Scan, deployment_subject, deployments
from analytics.policies.violation import Violation
from config.settings import PolicySettings
from warehouse.schema import Deployment, Environment

ID = "schema-skipped-env"
SEVERITY = "error"
Params = PolicySettings  # `[policies.schema-skipped-env]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Schema deployments in the period whose version had not run upstream by their start: one
    select for the period's schema deployments, one for when each version first ran upstream."""
    path = scan.promotion_path
    schema = deployments(conn, scan, path[1:], kind="schema")
    first_ran = {
        (service_id, env, version): finished
        for service_id, env, version, finished in conn.execute(
            select(
                Deployment.service_id,
                Environment.name,
                Deployment.schema_version,
                func.min(Deployment.finished_at),
            )
            .join(Environment, Environment.id == Deployment.environment_id)
            .where(
                Deployment.service_id.in_(sorted({d.service_id for d in schema}) or [-1]),
                Deployment.kind == "schema",
                Deployment.status == "success",
                Environment.name.in_(path[:-1]),
            )
            .group_by(Deployment.service_id, Environment.name, Deployment.schema_version)
        )
    }
    violations = []
    for upstream, env in pairwise(path):
        for d in (d for d in schema if d.stage == env):
            ran = None  # a deployment without a version matches none (SQL's = NULL)
            if d.schema_version is not None:
                ran = first_ran.get((d.service_id, upstream, d.schema_version))
            if ran is None or d.start is None or ran > d.start:
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
