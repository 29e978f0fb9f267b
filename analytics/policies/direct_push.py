"""direct-push (warn): a commit on the default branch's first-parent line that no merge request
brought (committed in the period).

One select for every repository (`analytics.unmerged.graph`, which answers long-lived-branch's
unmerged branches too): a recursive CTE walks each default branch's first-parent line from its
head; a commit of the line committed in the period that no merge request lists, merged or squashed
is a push (the line's root, without a parent, is not)."""

from __future__ import annotations

from sqlalchemy import Connection

from analytics.policies.period import Scan, commit_graph
from analytics.policies.violation import Violation
from config.settings import PolicySettings

ID = "direct-push"
SEVERITY = "warn"
Params = PolicySettings  # `[policies.direct-push]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Commits on the default branch's first-parent line that no merge request brought
    (`analytics.unmerged.graph`, read with long-lived-branch's branches)."""
    return [
        Violation(
            ID,
            SEVERITY,
            service,
            None,
            f"commit {repo_id}:{sha}",
            f"{sha[:12]} was pushed straight to the default branch: protect it and merge through "
            "merge requests",
            occurred_at=committed_at,
        )
        for repo_id, sha, committed_at, service, _ in commit_graph(conn, scan).pushes
    ]
