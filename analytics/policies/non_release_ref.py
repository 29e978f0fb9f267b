"""non-release-ref (error): production (the production tier, or the last environment of the
promotion path) is deployed from the default branch, a tag or an allowed pattern (`allowed_refs`,
default release/*, hotfix/*). The gate (analytics.gate) and the scan both decide with `guards`
and `allowed`."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, Connection, or_, select

from analytics.policies.period import Scan, deployments, of_deployment
from analytics.policies.violation import Violation
from analytics.promotion import stage_column
from config.settings import NonReleaseRefPolicy
from warehouse.schema import Environment, Repo, Service

ID = "non-release-ref"
SEVERITY = "error"
Params = NonReleaseRefPolicy  # `[policies.non-release-ref]`, validated at start (config.settings)

SEMVER_TAG = re.compile(r"^(refs/tags/.+|v?\d+\.\d+(\.\d+)?([-+].*)?)$")


def guards(tier: str | None, stage: str, path: Sequence[str]) -> bool:
    """Whether the policy applies to a deployment to the environment of `tier` standing for
    `stage` of the promotion path: the production tier, or the path's last environment."""
    return tier == "production" or (bool(path) and stage == path[-1])


def guards_column(path: Sequence[str]) -> ColumnElement[bool]:
    """`guards` in SQL, over the joined `environment` row (`stage_column`)."""
    production = Environment.tier == "production"
    return or_(production, stage_column(path) == path[-1]) if path else production


def allowed(ref: str, default_branch: str | None, patterns: Iterable[str]) -> bool:
    """Whether production may be deployed from `ref`: the default branch (main when unknown), a
    tag or version, or a ref matching an allowed glob pattern."""
    name = ref.removeprefix("refs/heads/")
    return (
        name == (default_branch or "main")
        or bool(SEMVER_TAG.match(ref))
        or any(fnmatch.fnmatch(name, p) for p in patterns)
    )


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Deployments to production from a ref that is not allowed."""
    patterns = scan.params.non_release_ref.allowed_refs
    defaults = dict(
        conn.execute(
            select(Service.id, Repo.default_branch).join(Repo, Repo.id == Service.repo_id)
        ).all()
    )
    violations = []
    for d in deployments(conn, scan):
        if not d.ref or not guards(d.tier, d.stage, scan.promotion_path):
            continue
        if allowed(d.ref, defaults.get(d.service_id), patterns):
            continue
        violations.append(
            of_deployment(
                ID,
                SEVERITY,
                d,
                f"production was deployed from {d.ref}: release from the default branch, a tag or "
                f"{', '.join(patterns)}",
            )
        )
    return violations
