"""A repository's commit graph for derive and drift: which commits a deployment brought that the
previous one did not (`CommitGraph.difference`), whether a commit is an ancestor of another
(`is_ancestor`, `ancestors_among`), and the commit generations (`commit_generation`) that bound
those walks.

A commit's generation is 1 + the largest of its parents' (1 without parent links): every ancestor
of a commit has a smaller one. Walking from two tips at once in decreasing generation, as git's
merge-base walk does with generation numbers, a commit is final once taken from the heap (all its
children in the walk came before it), and the walk stops when nothing it still looks for can lie
deeper: it reads the commits between the two tips and their fork points, not the repository's
history. Parent links are read a band of generations at a time (doubling as a walk goes deeper),
so a walk costs a few indexed reads.

Generations are derived: `refresh_generations` computes them for the commits whose parent links
were written since the last derive and, when that changes a commit's generation (a parent link
that arrived late), for its descendants in turn; a full derive, or the first derive after
migration 0027, computes every repository's.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, select
from sqlalchemy.orm import aliased

from warehouse.schema import (
    Commit,
    CommitGeneration,
    CommitParent,
    DeriveState,
    MergeRequest,
)
from warehouse.upsert import upsert

STATE = "generations"  # derive_state row of the last refresh
BATCH = 500  # shas per read
# generations a band reads: first, at most. A day's walk mostly reaches a few generations down:
# a first band of 128 read the chains' walks of a large organisation's weekday in 1.2 s, 16 in 0.85
FIRST_DEPTH, MAX_DEPTH = 16, 8192

_parent = aliased(CommitGeneration)
# the parent links of some commits, with each parent's generation
_LINKS = (
    select(CommitParent.sha, CommitParent.parent_sha, func.coalesce(_parent.generation, 1))
    .outerjoin(
        _parent,
        and_(_parent.repo_id == CommitParent.repo_id, _parent.sha == CommitParent.parent_sha),
    )
    .where(
        CommitParent.repo_id == bindparam("repo"),
        CommitParent.sha.in_(bindparam("shas", expanding=True)),
    )
)
# the parent links of the commits in a band of generations, with both generations
_BAND = (
    select(
        CommitParent.sha,
        CommitParent.parent_sha,
        func.coalesce(_parent.generation, 1),
        CommitGeneration.generation,
    )
    .join(
        CommitParent,
        and_(
            CommitParent.repo_id == CommitGeneration.repo_id,
            CommitParent.sha == CommitGeneration.sha,
        ),
    )
    .outerjoin(
        _parent,
        and_(_parent.repo_id == CommitParent.repo_id, _parent.sha == CommitParent.parent_sha),
    )
    .where(
        CommitGeneration.repo_id == bindparam("repo"),
        CommitGeneration.generation.between(bindparam("low"), bindparam("high")),
    )
)


class CommitGraph:
    """One repository's commit graph, read as walks need it; what lead time needs about a commit
    is looked up for the few commits that are changes (`starts`)."""

    def __init__(self, conn: Connection, repo_id: int | None) -> None:
        self.conn = conn
        self.repo_id = repo_id  # None: a service without a repository (events pushed to us)
        self._parents: dict[str, tuple[str, ...]] = {}
        self._generation: dict[str, int] = {}
        self._whole: dict[str, list[str]] | None = None
        self._bands: list[tuple[int, int]] = []  # generation bands read whole
        self._depth = FIRST_DEPTH
        self._starts: dict[str, tuple[datetime | None, bool]] = {}  # read by `starts`

    # -- reading ---------------------------------------------------------------------------------

    def _load(self, shas: Iterable[str]) -> None:
        """Read the parent links of `shas` not read yet, with each parent's generation."""
        wanted = [s for s in dict.fromkeys(shas) if s not in self._parents]
        for start in range(0, len(wanted), BATCH):
            part = wanted[start : start + BATCH]
            found: dict[str, list[str]] = {s: [] for s in part}
            if self.repo_id is not None:
                for sha, parent, generation in self.conn.execute(
                    _LINKS, {"repo": self.repo_id, "shas": part}
                ):
                    found[sha].append(parent)
                    self._generation.setdefault(parent, generation)
            for sha, parents in found.items():
                self._parents[sha] = tuple(parents)
                self._generation[sha] = 1 + max((self._generation[p] for p in parents), default=0)

    def parents_of(self, sha: str) -> tuple[str, ...]:
        """`sha`'s parents. A commit a walk reached (its generation known) is read with the band
        of generations below it, `_depth` deep (doubled at each band: a walk that goes deep reads
        deeper at once); a commit of a band read without links has none."""
        if sha in self._parents:
            return self._parents[sha]
        if sha not in self._generation or self.repo_id is None:
            self._load([sha])
            return self._parents[sha]
        high = self._generation[sha]
        if not any(low <= high <= top for low, top in self._bands):
            low = max(1, high - self._depth)
            self._bands.append((low, high))
            self._depth = min(self._depth * 2, MAX_DEPTH)
            band: dict[str, list[str]] = defaultdict(list)
            for child, parent, generation, own in self.conn.execute(
                _BAND, {"repo": self.repo_id, "low": low, "high": high}
            ):
                band[child].append(parent)
                self._generation.setdefault(parent, generation)
                self._generation.setdefault(child, own)
            for child, parents in band.items():
                self._parents.setdefault(child, tuple(parents))
        return self._parents.setdefault(sha, ())

    def generation(self, sha: str) -> int:
        if sha not in self._generation:
            self._load([sha])
        return self._generation[sha]

    @property
    def parents(self) -> dict[str, list[str]]:
        """sha -> parent shas of the whole repository, read once (`new_since` walks from many
        tips at once)."""
        if self._whole is None:
            whole = {} if self.repo_id is None else _parent_links(self.conn, self.repo_id, None)
            self._whole = whole
        return self._whole

    # -- walks ---------------------------------------------------------------------------------

    def difference(self, tip: str, base: str | None) -> list[str]:
        """Commits reachable from `tip` and not from `base` (None: every commit reachable from
        `tip`), walking both in decreasing generation until no commit reachable from `tip`
        alone is left to take."""
        if base is None:
            return sorted(self.ancestors(tip))
        uninteresting: dict[str, bool] = {}  # sha -> reachable from base (final once taken)
        heap: list[tuple[int, str]] = []
        live = 0  # commits waiting in the heap that are reachable from tip alone so far

        def push(sha: str, from_base: bool) -> None:
            nonlocal live
            seen = uninteresting.get(sha)
            if seen is None:
                uninteresting[sha] = from_base
                heapq.heappush(heap, (-self.generation(sha), sha))
                live += not from_base
            elif from_base and not seen:
                uninteresting[sha] = True
                live -= 1

        push(tip, False)
        push(base, True)
        found: list[str] = []
        while live:
            _, sha = heapq.heappop(heap)
            from_base = uninteresting[sha]
            if not from_base:
                live -= 1
                found.append(sha)
            for parent in self.parents_of(sha):
                push(parent, from_base)
        return found

    def ancestors_among(self, shas: Iterable[str], tip: str) -> set[str]:
        """Which of `shas` are reachable from `tip` (itself included): the walk from `tip` goes
        no deeper than the smallest generation among them."""
        wanted = set(shas)
        if self._whole is not None:  # the whole graph is read already: one walk in memory
            return wanted & self.ancestors(tip)
        self._load([tip, *wanted])
        floor = min((self._generation[s] for s in wanted), default=0)
        found: set[str] = set()
        seen, stack = {tip}, [tip]
        while stack and len(found) < len(wanted):
            sha = stack.pop()
            if sha in wanted:
                found.add(sha)
            for parent in self.parents_of(sha):
                if parent not in seen and self.generation(parent) >= floor:
                    seen.add(parent)
                    stack.append(parent)
        return found

    def is_ancestor(self, sha: str, tip: str) -> bool:
        """Whether `sha` is reachable from `tip` (itself included)."""
        return sha == tip or bool(self.ancestors_among([sha], tip))

    def ancestors(self, sha: str) -> set[str]:
        """Every commit reachable from `sha`, itself included (the whole history: for a first
        deployment whose previous one named no commit)."""
        seen, stack = set(), [sha]
        parents = self.parents_of if self._whole is None else self._whole_parents
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(parents(current))
        return seen

    def _whole_parents(self, sha: str) -> list[str]:
        return self.parents.get(sha, [])

    def new_since(
        self, sha: str, known: set[str], previous: str | None = None
    ) -> tuple[list[str], bool]:
        """Commits reachable from `sha` and not in `known` (ancestors of one or several tips),
        over the whole graph, and whether the walk reached `previous`."""
        found, stack = [], [sha]
        seen: set[str] = set()
        parents = self.parents
        reached = False
        while stack:
            current = stack.pop()
            if current == previous:
                reached = True
            if current in seen or current in known:
                continue
            seen.add(current)
            found.append(current)
            stack.extend(parents.get(current, ()))
        return found, reached

    # -- lead time ------------------------------------------------------------------------------

    def starts(self, shas: list[str]) -> dict[str, tuple[datetime | None, bool]]:
        """sha -> (where lead time starts, is a merge commit): authored_at, or for a squash commit
        the authored_at of its merge request's first commit. Each commit is read once per graph
        (a derive): the chains of a service's environments bring the same commits one after the
        other."""
        wanted = [s for s in dict.fromkeys(shas) if s not in self._starts]
        self._load(wanted)
        out = self._starts
        for part in range(0, len(wanted), BATCH):
            chunk = {"repo": self.repo_id, "shas": wanted[part : part + BATCH]}
            for sha, authored, is_merge in self.conn.execute(_AUTHORED, chunk):
                out[sha] = (authored, bool(is_merge) or len(self._parents[sha]) > 1)
            for squash_sha, first in self.conn.execute(_SQUASHED, chunk):
                if squash_sha:
                    out[squash_sha] = (first, out.get(squash_sha, (None, False))[1])
        for sha in wanted:
            out.setdefault(sha, (None, len(self._parents[sha]) > 1))
        return {sha: out[sha] for sha in shas}


class RanLast:
    """The history a chain ran last (the commits reachable from `base`, the last deployment that
    named a commit), kept one of two ways: as `base` alone, asked by bounded walks (a chain with
    few deployments to link: an incremental derive), or as the set of those commits, kept up to
    date deployment after deployment over the whole graph (many: a full derive, where a bounded
    walk per deployment would cost more than holding the set)."""

    def __init__(self, graph: CommitGraph, base: str | None, as_set: bool) -> None:
        self.graph, self.base = graph, base
        self.known: set[str] | None = None
        if as_set:
            graph.parents  # noqa: B018  # the whole graph first: every walk here is in memory
            self.known = graph.ancestors(base) if base else set()

    def holds(self, sha: str) -> bool:
        """Whether the chain ran `sha` last (a rollback to it)."""
        if self.known is not None:
            return sha in self.known
        return self.base is not None and self.graph.is_ancestor(sha, self.base)

    def bring(self, sha: str) -> list[str]:
        """The commits `sha` brings that the chain did not run; `sha` is run last after."""
        if self.known is None:
            found = self.graph.difference(sha, self.base)
        else:
            found, reached = self.graph.new_since(sha, self.known, self.base)
            if reached:  # base is an ancestor of sha: its history grows by what sha brings
                self.known.update(found)
            else:
                self.known = self.graph.ancestors(sha)
        self.base = sha
        return found

    def move(self, sha: str | None) -> None:
        """Run `sha` last (a first deployment, or a rollback), its history whole."""
        self.base = sha
        if self.known is not None:
            self.known = self.graph.ancestors(sha) if sha else set()


# where lead time starts: a commit's authored time; a squash commit's, its MR's first commit's
_AUTHORED = select(Commit.sha, Commit.authored_at, Commit.is_merge).where(
    Commit.repo_id == bindparam("repo"), Commit.sha.in_(bindparam("shas", expanding=True))
)
# (the merge requests found by (repo, squash commit), each with its first commit as derive stored
# it before the chains: `analytics.first_commits`)
_SQUASHED = (
    select(MergeRequest.squash_commit_sha, func.min(MergeRequest.first_commit_at))
    .where(
        MergeRequest.repo_id == bindparam("repo"),
        MergeRequest.squash_commit_sha.in_(bindparam("shas", expanding=True)),
    )
    .group_by(MergeRequest.squash_commit_sha)
)


# -- generations -------------------------------------------------------------------------------


def refresh_generations(conn: Connection, after: datetime | None) -> int:
    """Bring `commit_generation` up to date with the parent links written at or after `after`
    (None, or no refresh recorded: every repository's, from scratch); returns the rows written."""
    recorded = conn.execute(
        select(DeriveState.started_at).where(DeriveState.name == STATE)
    ).scalar()
    if after is None or recorded is None:
        conn.execute(delete(CommitGeneration))
        repos = conn.execute(select(CommitParent.repo_id).distinct()).scalars().all()
        return sum(
            upsert(
                conn,
                CommitGeneration,
                _rows(repo_id, _computed(_parent_links(conn, repo_id, None), {})),
            )
            for repo_id in repos
        )
    # every repository at once (one statement a step, not several a repository: a day touches
    # nearly all of them): the commits whose links changed, then the children of each commit
    # whose generation moved, until none does
    parents, known = _changed_links(conn, after)
    children: dict[int, dict[str, set[str]]] | None = _children_of_changed(conn, after)
    written = 0
    while parents:
        moved: dict[int, set[str]] = {}
        rows: list[dict[str, Any]] = []
        for repo_id, links in parents.items():
            stored = known.get(repo_id, {})
            generations = _computed(links, stored)
            moved[repo_id] = {s for s, g in generations.items() if stored.get(s) != g}
            rows.extend(_rows(repo_id, {s: generations[s] for s in moved[repo_id]}))
        written += upsert(conn, CommitGeneration, rows)
        # a commit whose generation moved moves its children's (a parent link arrived late),
        # those computed with it aside; the children of the commits with changed links were
        # read with them, the rest (rare: a late link's descendants) a repository at a time
        done, parents, known = parents, {}, {}
        for repo_id, shas in moved.items():
            if children is not None:
                below = {c for c, ps in children.get(repo_id, {}).items() if ps & shas}
            else:
                below = _children(conn, repo_id, shas) if shas else set()
            links = _parent_links(conn, repo_id, below - set(done[repo_id])) if below else {}
            if links:
                parents[repo_id] = links
                outside = {p for ps in links.values() for p in ps if p not in links}
                known[repo_id] = _stored(conn, repo_id, outside | set(links))
        children = None
    return written


def mark_generations(conn: Connection, started_at: datetime) -> None:
    """Record that generations are up to date as of a derive started at `started_at`."""
    upsert(conn, DeriveState, [{"name": STATE, "started_at": started_at}])


def _computed(parents: dict[str, list[str]], known: dict[str, int]) -> dict[str, int]:
    """The generation of each commit of `parents` (sha -> its parents' shas), parents first
    within `parents`; a parent outside it has its generation in `known` (1 if unknown)."""
    computed: dict[str, int] = {}
    for sha in parents:  # an explicit stack
        stack, entered = [sha], set()
        while stack:
            top = stack[-1]
            if top in computed:
                stack.pop()
                continue
            # a parent already entered on this path is a cycle (git has none; a corrupt payload
            # might): its link is left out rather than followed forever
            waiting = [
                p for p in parents[top] if p in parents and p not in computed and p not in entered
            ]
            if top not in entered and waiting:
                entered.add(top)
                stack.extend(waiting)
                continue
            stack.pop()
            computed[top] = 1 + max(
                (computed.get(p, 1) if p in parents else known.get(p, 1) for p in parents[top]),
                default=0,
            )
    return computed


def _rows(repo_id: int, generations: dict[str, int]) -> list[dict[str, Any]]:
    return [{"repo_id": repo_id, "sha": s, "generation": g} for s, g in generations.items()]


_OWN = aliased(CommitGeneration)


def _changed_links(
    conn: Connection, after: datetime
) -> tuple[dict[int, dict[str, list[str]]], dict[int, dict[str, int]]]:
    """The commits with a parent link written at or after `after`, every repository's in one
    statement: repository -> sha -> all its parents, and repository -> the stored generation of
    each of those commits and parents."""
    # not DISTINCT: SQLite would read every link in its unique index's order to drop duplicates
    # (0.2 s) rather than the few changed through the changed_at index; a commit with two changed
    # links meets its links twice, dropped below
    changed = (
        select(CommitParent.repo_id, CommitParent.sha)
        .where(CommitParent.changed_at >= after)
        .subquery("changed")
    )
    link = aliased(CommitParent)
    rows = conn.execute(
        select(
            changed.c.repo_id, changed.c.sha, link.parent_sha, _OWN.generation, _parent.generation
        )
        .join(link, and_(link.repo_id == changed.c.repo_id, link.sha == changed.c.sha))
        .outerjoin(_OWN, and_(_OWN.repo_id == changed.c.repo_id, _OWN.sha == changed.c.sha))
        .outerjoin(_parent, and_(_parent.repo_id == link.repo_id, _parent.sha == link.parent_sha))
    )
    parents: dict[int, dict[str, list[str]]] = defaultdict(dict)
    known: dict[int, dict[str, int]] = defaultdict(dict)
    for repo_id, sha, parent, own, of_parent in rows:
        links = parents[repo_id].setdefault(sha, [])
        if parent not in links:
            links.append(parent)
        if own is not None:
            known[repo_id][sha] = own
        if of_parent is not None:
            known[repo_id][parent] = of_parent
    return parents, known


def _children_of_changed(conn: Connection, after: datetime) -> dict[int, dict[str, set[str]]]:
    """repository -> child -> its parents among the commits with a parent link written at or
    after `after` (one statement, from the changed_at index to the (repo, parent) one; changed_at
    is selected so that no index covers the read: SQLite preferred the unique (repo, sha, parent)
    index, covering it, and walked each repository's every link: 0.19 s against 0.01 s)."""
    child = aliased(CommitParent)
    rows = conn.execute(
        select(child.repo_id, child.sha, child.parent_sha, child.changed_at)
        .join(
            CommitParent,
            and_(CommitParent.repo_id == child.repo_id, CommitParent.sha == child.parent_sha),
        )
        .where(CommitParent.changed_at >= after)
    )
    found: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for repo_id, sha, parent, _ in rows:
        found[repo_id][sha].add(parent)
    return found


def _parent_links(conn: Connection, repo_id: int, shas: set[str] | None) -> dict[str, list[str]]:
    """sha -> its parents, for `shas` (None: the whole repository)."""
    links = select(CommitParent.sha, CommitParent.parent_sha).where(CommitParent.repo_id == repo_id)
    if shas is None:
        whole: dict[str, list[str]] = defaultdict(list)
        for sha, parent in conn.execute(links):
            whole[sha].append(parent)
        return dict(whole)
    found: dict[str, list[str]] = {s: [] for s in shas}
    for sha, parent in _by_batch(conn, links, CommitParent.sha, shas):
        found[sha].append(parent)
    return found


def _stored(conn: Connection, repo_id: int, shas: set[str]) -> dict[str, int]:
    stored = select(CommitGeneration.sha, CommitGeneration.generation).where(
        CommitGeneration.repo_id == repo_id
    )
    return {
        sha: generation for sha, generation in _by_batch(conn, stored, CommitGeneration.sha, shas)
    }


def _children(conn: Connection, repo_id: int, shas: set[str]) -> set[str]:
    # changed_at is selected so that no index covers the read: SQLite (no statistics) preferred
    # the unique (repo, sha, parent) index, which covers it, and walked the repository's every
    # link for the `repo_id =` alone instead of the (repo, parent) ranges
    children = select(CommitParent.sha, CommitParent.changed_at).where(
        CommitParent.repo_id == repo_id
    )
    return {sha for sha, _ in _by_batch(conn, children, CommitParent.parent_sha, shas)}


def _by_batch(conn: Connection, query: Any, column: Any, shas: set[str]) -> Iterator[Any]:
    """The rows of `query` whose `column` is one of `shas`, read `BATCH` shas at a time."""
    ordered = sorted(shas)
    for start in range(0, len(ordered), BATCH):
        yield from conn.execute(query.where(column.in_(ordered[start : start + BATCH])))
