"""Unmerged branches without a merge request, aged by their first own commit (DESIGN.md section 9;
docs/POLICIES.md "long-lived-branch"), and the commits pushed straight to a default branch
(direct-push), from the commit graph in SQL: `graph` answers both in one select, so that the
default branches' first-parent lines are walked once for the two.

A branch's own commits are those reachable from its head and not from its repository's default
branch head (`commit_parent`); its age counts from the earliest authored of them. Judged this
way: branches that are not the default, not protected (environment branches, git-flow's develop:
long-lived by design) and not the source of any merge request (an open one is reported as the
merge request; a merged or closed one was decided there). A branch whose head the default branch
reaches has no own commit: it is merged.

What the default branch reaches is not walked in full (the whole history: 280,000 commits on the
large sandbox organisation). Its first-parent line is (`first_parent_lines`, the walk direct-push
needs too); from the judged heads, the commits reached without crossing the line (`off_line`: a
few thousand); from those, upwards through their children, the commits above them not on the
line (`above`); and, down from those of them the line has a child of, the ones among them the
default branch reaches (`reached`). A commit reached from a judged head without crossing the
line is reached by the default branch exactly when it is in `reached`: the default branch's path
to it leaves the line for the last time at a parent of a line commit, and runs up to it through
commits above it. So the own commits are those reached from the head without crossing the line
or `reached`, as if the default branch's whole ancestry had been walked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Select,
    String,
    and_,
    case,
    exists,
    func,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.orm import aliased

from warehouse.schema import Branch, Commit, CommitParent, MergeRequest, MrCommit, Service


def first_parent_lines() -> CTE:
    """(repo_id, sha) of every commit on a default branch's first-parent line, from its head."""
    heads = select(Branch.repo_id, Branch.head_sha.label("sha")).where(
        Branch.is_default, Branch.head_sha.is_not(None)
    )
    line = heads.cte("first_parent_line", recursive=True)
    parent = aliased(CommitParent)
    # UNION ALL: a first-parent line never meets itself (a commit's id hashes its parents', so
    # the graph has no cycle), and no dedupe b-tree is needed (1.5 -> 1.2 s on the large sandbox)
    return line.union_all(
        select(parent.repo_id, parent.parent_sha).join(
            line,
            and_(parent.repo_id == line.c.repo_id, parent.sha == line.c.sha, parent.position == 0),
        )
    )


def _in(cte: CTE, repo_id: Any, sha: Any) -> ColumnElement[bool]:
    """Whether the commit (repo_id, sha) is a row of `cte`."""
    return exists().where(cte.c.repo_id == repo_id, cte.c.sha == sha)


def _own_commits(line: CTE | None = None) -> CTE:
    """(repo_id, name, sha) of the own commits of each branch judged (see the module)."""
    line = first_parent_lines() if line is None else line
    has_mr = exists().where(
        MergeRequest.repo_id == Branch.repo_id, MergeRequest.source_branch == Branch.name
    )
    heads = (
        select(Branch.repo_id, Branch.name, Branch.head_sha.label("sha"))
        .where(
            Branch.is_default.is_(False),
            Branch.protected.is_(False),
            Branch.head_sha.is_not(None),
            ~has_mr,
            ~_in(line, Branch.repo_id, Branch.head_sha),
        )
        .cte("judged_heads")
    )
    off = select(heads.c.repo_id, heads.c.sha).cte("off_line", recursive=True)
    parent = aliased(CommitParent)
    off = off.union(
        select(parent.repo_id, parent.parent_sha)
        .join(off, and_(parent.repo_id == off.c.repo_id, parent.sha == off.c.sha))
        .where(~_in(line, parent.repo_id, parent.parent_sha))
    )
    above = select(off.c.repo_id, off.c.sha).cte("above", recursive=True)
    child = aliased(CommitParent)
    above = above.union(
        select(child.repo_id, child.sha)
        .join(above, and_(child.repo_id == above.c.repo_id, child.parent_sha == above.c.sha))
        # `position` names a column no index holds with (repo_id, parent_sha), so that SQLite
        # looks the children up on ix_commit_parent_repo_parent rather than scanning the
        # repository's rows of the covering natural key
        .where(child.position >= 0, ~_in(line, child.repo_id, child.sha))
    )
    below = aliased(CommitParent)
    line_child = exists(
        select(below.id)
        .join(line, and_(line.c.repo_id == below.repo_id, line.c.sha == below.sha))
        .where(
            below.repo_id == above.c.repo_id,
            below.parent_sha == above.c.sha,
            below.position >= 0,  # as above
        )
    )
    reached = select(above.c.repo_id, above.c.sha).where(line_child).cte("reached", recursive=True)
    down = aliased(CommitParent)
    reached = reached.union(
        select(down.repo_id, down.parent_sha)
        .join(reached, and_(down.repo_id == reached.c.repo_id, down.sha == reached.c.sha))
        .where(_in(above, down.repo_id, down.parent_sha))
    )
    own = (
        select(heads.c.repo_id, heads.c.name, heads.c.sha)
        .where(~_in(reached, heads.c.repo_id, heads.c.sha))
        .cte("own_commits", recursive=True)
    )
    step = aliased(CommitParent)
    return own.union(
        select(own.c.repo_id, own.c.name, step.parent_sha)
        .join(step, and_(step.repo_id == own.c.repo_id, step.sha == own.c.sha))
        .where(
            ~_in(line, step.repo_id, step.parent_sha),
            ~_in(reached, step.repo_id, step.parent_sha),
        )
    )


def _ages(first_before: datetime, line: CTE | None = None) -> Select[Any]:
    """(repo_id, name, since, service) of the branches judged whose first own commit was
    authored before `first_before`; `since` is that commit's time."""
    own = _own_commits(line)
    since = func.min(func.coalesce(Commit.authored_at, Commit.committed_at))
    ages = (
        select(own.c.repo_id, own.c.name, since.label("since"))
        .join(Commit, and_(Commit.repo_id == own.c.repo_id, Commit.sha == own.c.sha))
        .group_by(own.c.repo_id, own.c.name)
        .having(since < first_before)
        .subquery()
    )
    return select(ages.c.repo_id, ages.c.name, ages.c.since, Service.name.label("service")).join(
        Service, Service.repo_id == ages.c.repo_id
    )


def unmerged_branches(conn: Connection, first_before: datetime) -> list[Any]:
    """Rows (repo_id, name, since, service) of the branches without a merge request whose first
    own commit was authored before `first_before`; `since` is that commit's time."""
    ages = _ages(first_before).subquery()
    return list(conn.execute(select(ages).order_by(ages.c.repo_id, ages.c.name)).all())


def _pushes(since: datetime, until: datetime, line: CTE) -> Select[Any]:
    """(repo_id, sha, committed_at, service) of the commits of a default branch's first-parent
    `line` committed in [since, until) that no merge request lists, merged or squashed (the
    line's root, without a parent, is not one). The commits of the period no merge request
    brought (a few thousand on the large sandbox, from one pass over the commits) are the ones
    the line's commits are looked up in, rather than each of the line's commits (130,000) in the
    commit table."""
    first, period = aliased(CommitParent), aliased(Commit)
    has_parent = exists().where(
        first.repo_id == period.repo_id, first.sha == period.sha, first.position == 0
    )
    listed = exists().where(MrCommit.repo_id == period.repo_id, MrCommit.sha == period.sha)
    merged, squashed = (
        exists().where(MergeRequest.repo_id == period.repo_id, column == period.sha)
        for column in (MergeRequest.merge_commit_sha, MergeRequest.squash_commit_sha)
    )
    pushed = select(period.repo_id, period.sha).where(
        period.committed_at >= since,
        period.committed_at < until,
        ~listed,
        ~merged,
        ~squashed,
        has_parent,
    )
    return (
        select(line.c.repo_id, line.c.sha, Commit.committed_at, Service.name.label("service"))
        .join(Commit, and_(Commit.repo_id == line.c.repo_id, Commit.sha == line.c.sha))
        .join(Service, Service.repo_id == line.c.repo_id)
        .where(tuple_(line.c.repo_id, line.c.sha).in_(pushed))
    )


class Graph(NamedTuple):
    """What `graph` finds: the direct pushes, by service, newest first (rows of `_pushes`), and
    the unmerged branches, by repository and name (rows of `unmerged_branches`)."""

    pushes: list[Any]
    unmerged: list[Any]


def graph(conn: Connection, since: datetime, until: datetime, first_before: datetime) -> Graph:
    """The commits pushed straight to a default branch in [since, until) and the unmerged
    branches whose first own commit was authored before `first_before`, in one select: the two
    share the walk of the first-parent lines (`first_parent_lines`)."""
    line = first_parent_lines()
    push, branch = _pushes(since, until, line), _ages(first_before, line)
    both = union_all(
        push.add_columns(literal("push", String).label("kind")),
        branch.add_columns(literal("branch", String).label("kind")),
    ).subquery()
    is_push = both.c.kind == "push"
    rows = conn.execute(
        select(both).order_by(
            both.c.kind,
            case((is_push, both.c.service)),  # pushes: by service, newest first, then sha
            case((is_push, both.c[2])).desc(),
            case((~is_push, both.c.repo_id)),  # branches: by repository, then name
            both.c[1],
        )
    ).all()
    return Graph(
        [r for r in rows if r.kind == "push"],
        [r for r in rows if r.kind == "branch"],
    )
