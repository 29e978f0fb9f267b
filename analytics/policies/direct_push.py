"""direct-push (warn): a commit on the default branch's first-parent line that no merge request
brought (committed in the period)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from analytics.policies.period import Scan
from analytics.policies.violation import Violation
from config.settings import PolicySettings
from warehouse.schema import Branch, Commit, CommitParent, MergeRequest, MrCommit, Service

ID = "direct-push"
SEVERITY = "warn"
Params = PolicySettings  # `[policies.direct-push]`: the severity only


def check(conn: Connection, scan: Scan) -> list[Violation]:
    """Commits on the default branch's first-parent line that no merge request brought."""
    found = []
    heads = conn.execute(
        select(Branch.repo_id, Branch.head_sha, Service.name)
        .join(Service, Service.repo_id == Branch.repo_id)
        .where(Branch.is_default)
    ).all()
    for repo_id, head, service in heads:
        first_parent = dict(
            conn.execute(
                select(CommitParent.sha, CommitParent.parent_sha).where(
                    CommitParent.repo_id == repo_id, CommitParent.position == 0
                )
            ).all()
        )
        brought = set(
            conn.execute(select(MrCommit.sha).where(MrCommit.repo_id == repo_id)).scalars()
        )
        for column in (MergeRequest.merge_commit_sha, MergeRequest.squash_commit_sha):
            brought.update(
                s
                for s in conn.execute(
                    select(column).where(MergeRequest.repo_id == repo_id)
                ).scalars()
                if s
            )
        committed = dict(
            conn.execute(
                select(Commit.sha, Commit.committed_at).where(
                    Commit.repo_id == repo_id,
                    Commit.committed_at >= scan.since,
                    Commit.committed_at < scan.until,
                )
            ).all()
        )
        sha = head
        while sha is not None:
            if (
                sha in committed and sha not in brought and sha in first_parent
            ):  # the root is not a push
                found.append(
                    Violation(
                        ID,
                        SEVERITY,
                        service,
                        None,
                        f"commit {repo_id}:{sha}",
                        f"{sha[:12]} was pushed straight to the default branch: protect it and "
                        "merge through merge requests",
                        occurred_at=committed[sha],
                    )
                )
            sha = first_parent.get(sha)
    return found
