"""The quality-gate rule that quality-gate-failed and quality-gate-missing share, and the gate
(analytics.gate) calls: which SonarQube analysis decides a deployment, and what it says.

A deployment's commit is its image's (analytics.promotion.revisions: the image's labels), else
the deployment's own commit. Of that commit's analyses (`code_analysis`, any SonarQube source),
the one that decides is the latest that:
- is of a branch matching `branches` (a pull request's analysis never counts: it analysed a
  merge of the branch into its target, not the commit);
- was made before the deployment started (an analysis made after it did not gate it);
- is no older than `max_analysis_age_days` at the deployment's start, when that is set.
Its gate failed when SonarQube said ERROR on a condition outside `ignored_conditions`; WARN is
passed. No such analysis: the commit is *missing* an analysis.

The policies apply to the environments non-release-ref guards (the production tier, or the last
environment of the promotion path), to application deployments.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from analytics.policies.non_release_ref import guards_column
from analytics.policies.period import Scan, deployments_counted, deployments_where, memo
from analytics.promotion import revisions
from config.settings import QualityGatePolicy
from warehouse.schema import CodeAnalysis, Deployment, table_of

PASSED, FAILED, MISSING, NO_GATE = "passed", "failed", "missing", "none"


@dataclass(frozen=True)
class Verdict:
    """What a commit's analyses say about a deployment starting at some time."""

    status: str  # passed | failed | missing | none (analysed, but no gate computed)
    analysis: Any = None  # the deciding code_analysis row
    failing: tuple[dict[str, Any], ...] = ()  # its failing conditions that deny

    def as_json(self, commit: str | None) -> dict[str, Any]:
        """The gate's `quality_gate` block."""
        a = self.analysis
        return {
            "commit": commit,
            "status": self.status,
            "analysis": a.analysis_key if a is not None else None,
            "project": a.project_key if a is not None else None,
            "branch": a.branch if a is not None else None,
            "analysed_at": a.analysed_at.isoformat() if a is not None else None,
            "failing_conditions": list(self.failing),
            "url": a.url if a is not None else None,
        }


def analyses_of(conn: Connection, commits: Iterable[str]) -> dict[str, list[Any]]:
    """commit -> its branch analyses (pull requests' left out), oldest first."""
    wanted = sorted(set(commits))
    found: dict[str, list[Any]] = {}
    for start in range(0, len(wanted), 500):
        rows = conn.execute(
            select(*table_of(CodeAnalysis).columns)
            .where(
                CodeAnalysis.revision.in_(wanted[start : start + 500]),
                CodeAnalysis.pull_request.is_(None),
                CodeAnalysis.branch.is_not(None),
            )
            .order_by(CodeAnalysis.analysed_at, CodeAnalysis.id)
        )
        for row in rows:
            found.setdefault(row.revision, []).append(row)
    return found


def verdict(analyses: Iterable[Any], start: datetime, params: QualityGatePolicy) -> Verdict:
    """The verdict of a commit's analyses on a deployment starting at `start`."""
    oldest = (
        start - timedelta(days=params.max_analysis_age_days)
        if params.max_analysis_age_days
        else None
    )
    counted = [
        a
        for a in analyses
        if a.analysed_at < start
        and (oldest is None or a.analysed_at >= oldest)
        and any(fnmatch.fnmatchcase(a.branch or "", p) for p in params.branches)
    ]
    if not counted:
        return Verdict(MISSING)
    latest = max(counted, key=lambda a: a.analysed_at)
    if latest.gate_status == "none":
        return Verdict(NO_GATE, latest)
    ignored = set(params.ignored_conditions)
    denying = tuple(c for c in latest.failing_conditions or [] if c.get("metric") not in ignored)
    if latest.gate_status == "failed" and (denying or not latest.failing_conditions):
        return Verdict(FAILED, latest, denying)
    return Verdict(PASSED, latest)


def describe_conditions(failing: Iterable[dict[str, Any]]) -> str:
    """`new_coverage 61.2 (LT 80), ...`: the failing conditions, as a message names them."""
    return ", ".join(
        f"{c.get('metric')} {c.get('actual')} ({c.get('comparator')} {c.get('threshold')})"
        for c in failing
    )


def failed_message(commit: str, v: Verdict) -> str:
    """What a quality-gate-failed violation or gate reason says."""
    a = v.analysis
    conditions = describe_conditions(v.failing) or "no condition listed"
    return (
        f"commit {commit[:12]} failed the SonarQube quality gate of {a.project_key} "
        f"({a.branch}, analysed {a.analysed_at:%Y-%m-%d %H:%M} UTC): {conditions}; fix them and "
        f"re-analyse before promoting" + (f" — {a.url}" if a.url else "")
    )


def missing_message(commit: str | None) -> str:
    """What a quality-gate-missing violation or gate reason says."""
    if commit is None:
        return "the image's commit is unknown, so no SonarQube analysis can be found for it"
    return (
        f"commit {commit[:12]} has no SonarQube analysis on an allowed branch made before the "
        "deployment: analyse it (on the main branch) before promoting"
    )


def guarded_deployments(conn: Connection, scan: Scan) -> list[Any]:
    """The scan's application deployments the policies apply to."""
    return deployments_where(conn, scan, *_guards(scan))


def guarded_per_service(conn: Connection, scan: Scan) -> dict[str, int]:
    """`guarded_deployments` counted per service (name -> count) in SQL."""
    return deployments_counted(conn, scan, *_guards(scan))


def _guards(scan: Scan) -> tuple[Any, ...]:
    return Deployment.kind == "app", guards_column(scan.promotion_path)


def analysed(conn: Connection) -> bool:
    """Whether the warehouse holds any analysis (none: no SonarQube source, every gate missing)."""
    return conn.execute(select(CodeAnalysis.id).limit(1)).first() is not None


def any_failed(conn: Connection) -> bool:
    """Whether any branch analysis failed its gate: none, and no deployment's verdict can be
    `FAILED` (`verdict` fails only on such an analysis), so quality-gate-failed reads nothing
    (a warehouse without SonarQube, or whose gates all pass: the large organisation's scan took
    4.31-4.72 s against 4.46-5.00 s)."""
    failed = select(CodeAnalysis.id).where(
        CodeAnalysis.gate_status == "failed",
        CodeAnalysis.pull_request.is_(None),
        CodeAnalysis.branch.is_not(None),
    )
    return conn.execute(failed.limit(1)).first() is not None


def guarded(conn: Connection, scan: Scan) -> list[tuple[Any, str | None]]:
    """The scan's application deployments the policies apply to, each with its commit (the
    image's, else the deployment's)."""
    found = guarded_deployments(conn, scan)
    commits = revisions(
        conn, {d.image_digest for d in found if d.image_digest}, memo(scan, "revisions")
    )
    return [(d, commits.get(d.image_digest or "") or d.sha) for d in found]
