"""Unmerged branches without a merge request, aged by their first own commit (DESIGN.md section 9;
docs/POLICIES.md "long-lived-branch"), from the commit graph in SQL.

A branch's own commits are those reachable from its head and not from its repository's default
branch head (`commit_parent`, two recursive CTEs); its age counts from the earliest authored of
them. Judged this way: branches that are not the default, not protected (environment branches,
git-flow's develop: long-lived by design) and not the source of any merge request (an open one is
reported as the merge request; a merged or closed one was decided there). A branch whose head the
default branch reaches has no own commit: it is merged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CTE, Connection, and_, exists, func, select
from sqlalchemy.orm import aliased

from warehouse.schema import Branch, Commit, CommitParent, MergeRequest, Service


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


def _own_commits(default: CTE) -> CTE:
    """(repo_id, name, sha) of the own commits of each branch judged (see the module)."""
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
    return own.union(
        select(own.c.repo_id, own.c.name, parent.parent_sha)
        .join(parent, and_(parent.repo_id == own.c.repo_id, parent.sha == own.c.sha))
        .where(~on_default)
    )


def unmerged_branches(conn: Connection, first_before: datetime) -> list[Any]:
    """Rows (repo_id, name, since, service) of the branches without a merge request whose first
    own commit was authored before `first_before`; `since` is that commit's time."""
    own = _own_commits(_default_ancestry())
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
