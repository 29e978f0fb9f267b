"""Work item <-> change links found in our own data, rebuilt by derive: a work item key (Jira
`PAY-12`, Zentao `story #12`, `warehouse.references.work_item_keys`) in a merge request's title or
source branch links the item to the MR; in a commit's title, to the commit.

Decisions where DESIGN.md is silent:
- A key names every work item with that key (two Jira sites with a `PAY` project: both); keys
  are matched as the trackers store them (`PAY-12`, `story-12`).
- `origin` reference links are derive's; the trackers' own links (`origin` tracker) are left
  alone, and a reference the tracker also gives stays the tracker's. A title edited to drop a
  key drops the link.
- Incremental (`changed_after`: the previous derive's start, as for the chains): only the MRs
  and commits whose row changed since (`changed_at`) are read — their links are rewritten — and
  the work items new or changed since: the MRs and commits that may name their keys are found by
  `LIKE` (the key, or `#<n>` for a Zentao `story #12`) and checked by `work_item_keys`. A first
  or `--full` derive, or more than `INCREMENTAL_ITEMS` new work items (a first tracker sync),
  reads every title instead (a regular expression per title: about a second per million). A
  work item whose key changed (a Jira issue moved to another project) keeps the links of its old
  key until a `--full` derive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, or_, select, true, tuple_

from warehouse.references import work_item_keys
from warehouse.schema import Commit, MergeRequest, Repo, WorkItem, WorkItemLink
from warehouse.upsert import upsert

ORIGIN = "reference"


INCREMENTAL_ITEMS = 200  # more new work items than this: read every title instead
_NATURAL = (
    WorkItemLink.source_id,
    WorkItemLink.item,
    WorkItemLink.kind,
    WorkItemLink.repo_path,
    WorkItemLink.target,
)


def derive_work_item_links(conn: Connection, changed_after: datetime | None = None) -> int:
    """Bring the `reference` links up to date (everything when `changed_after` is None, else
    what changed after it: module docstring); returns how many there are."""
    if _nothing_to_link(conn):
        return 0
    new_items: list[tuple[int, str, str]] = []
    if changed_after is not None:
        new_items = [
            (r[0], r[1], r[2])
            for r in conn.execute(
                select(WorkItem.source_id, WorkItem.external_id, WorkItem.key)
                .where(WorkItem.changed_at > changed_after)
                .limit(INCREMENTAL_ITEMS + 1)
            )
        ]
    if changed_after is None or len(new_items) > INCREMENTAL_ITEMS:
        _rebuild(conn)
    else:
        _changed_texts(conn, changed_after)
        _new_items(conn, new_items)
    return int(
        conn.execute(
            select(func.count()).select_from(WorkItemLink).where(WorkItemLink.origin == ORIGIN)
        ).scalar_one()
    )


def _nothing_to_link(conn: Connection) -> bool:
    """No work item and no reference link (a warehouse without a tracker): no text can add or drop
    a link, so no title is read (every changed MR's and commit's, 0.08 s of a day's derive on the
    large organisation)."""
    links = select(WorkItemLink.id).where(WorkItemLink.origin == ORIGIN)
    return not conn.execute(select(or_(exists(select(WorkItem.id)), exists(links)))).scalar()


def _items_by_key(conn: Connection, keys: Iterable[str] | None) -> dict[str, list[tuple[int, str]]]:
    """key -> (source, external id) of the work items with those keys (every one: None)."""
    items: dict[str, list[tuple[int, str]]] = defaultdict(list)
    query = select(WorkItem.source_id, WorkItem.external_id, WorkItem.key)
    wanted = sorted(set(keys)) if keys is not None else None
    parts = (
        [query]
        if wanted is None
        else [
            query.where(WorkItem.key.in_(wanted[i : i + 500])) for i in range(0, len(wanted), 500)
        ]
    )
    for part in parts:
        for source_id, external_id, key in conn.execute(part):
            items[key].append((source_id, external_id))
    return items


def _mr_keys(title: str | None, branch: str | None) -> list[str]:
    return work_item_keys(title) + work_item_keys(branch, branch=True)


def _texts(
    conn: Connection, where_mr: Any, where_commit: Any
) -> Iterator[tuple[str, str, str, list[str]]]:
    """(kind, repo path, target, keys named) of the MRs and commits the conditions select."""
    mrs = select(Repo.path, MergeRequest.iid, MergeRequest.title, MergeRequest.source_branch).join(
        Repo, Repo.id == MergeRequest.repo_id
    )
    for path, iid, title, branch in conn.execute(mrs.where(where_mr)):
        yield "merge_request", path, str(iid), _mr_keys(title, branch)
    commits = select(Repo.path, Commit.sha, Commit.title).join(Repo, Repo.id == Commit.repo_id)
    for path, sha, title in conn.execute(commits.where(where_commit)):
        yield "commit", path, sha, work_item_keys(title)


def _rebuild(conn: Connection) -> None:
    """Every MR and commit title read; the stored reference links made equal to what they name."""
    items = _items_by_key(conn, None)
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    if items:
        for kind, path, target, keys in _texts(conn, true(), true()):
            _add(rows, items, keys, kind, path, target)
    stored = _stored(conn, None)
    _delete(conn, [k for k, origin in stored.items() if origin == ORIGIN and k not in rows])
    upsert(conn, WorkItemLink, [row for k, row in rows.items() if k not in stored])


def _changed_texts(conn: Connection, changed_after: datetime) -> None:
    """The MRs and commits changed after `changed_after`: their links rewritten."""
    named = list(
        _texts(conn, MergeRequest.changed_at > changed_after, Commit.changed_at > changed_after)
    )
    if not named:
        return
    items = _items_by_key(conn, {k for *_, keys in named for k in keys})
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for kind, path, target, keys in named:
        _add(rows, items, keys, kind, path, target)
    stored = _stored(conn, [(kind, path, target) for kind, path, target, _ in named])
    _delete(conn, [k for k, origin in stored.items() if origin == ORIGIN and k not in rows])
    upsert(conn, WorkItemLink, [row for k, row in rows.items() if k not in stored])


def _new_items(conn: Connection, new: list[tuple[int, str, str]]) -> None:
    """Links of the work items new or changed since the last derive, from the MRs and commits
    whose text may name their keys (`LIKE`, then checked)."""
    if not new:
        return
    items: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for source_id, external_id, key in new:
        items[key].append((source_id, external_id))
    patterns = sorted({_pattern(key) for key in items})
    mr_text = func.upper(func.coalesce(MergeRequest.title, "") + " " + MergeRequest.source_branch)
    commit_text = func.upper(func.coalesce(Commit.title, ""))
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for start in range(0, len(patterns), 50):
        part = patterns[start : start + 50]
        for kind, path, target, keys in _texts(
            conn, or_(*(mr_text.like(p) for p in part)), or_(*(commit_text.like(p) for p in part))
        ):
            _add(rows, items, keys, kind, path, target)
    stored = _stored(conn, [(k[2], k[3], k[4]) for k in rows])
    upsert(conn, WorkItemLink, [row for k, row in rows.items() if k not in stored])


def _pattern(key: str) -> str:
    """A `LIKE` pattern (upper-cased text) every text naming `key` matches: the Jira key itself,
    or `#<n>` for a Zentao `story-12` (`story #12`, `需求#12`)."""
    kind, _, number = key.rpartition("-")
    if kind.islower() or not kind.isupper():  # a Zentao key: story-12, bug-45, task-7
        return f"%#%{number}%"
    return f"%{key.upper()}%"


def _stored(
    conn: Connection, targets: list[tuple[str, str, str]] | None
) -> dict[tuple[Any, ...], str]:
    """natural key -> origin of the stored links (of `targets`: (kind, repo path, target))."""
    query = select(*_NATURAL, WorkItemLink.origin)
    if targets is None:
        return {tuple(r[:5]): r[5] for r in conn.execute(query)}
    found: dict[tuple[Any, ...], str] = {}
    wanted = sorted(set(targets))
    by = tuple_(WorkItemLink.kind, WorkItemLink.repo_path, WorkItemLink.target)
    for start in range(0, len(wanted), 500):
        for r in conn.execute(query.where(by.in_(wanted[start : start + 500]))):
            found[tuple(r[:5])] = r[5]
    return found


def _delete(conn: Connection, stale: list[tuple[Any, ...]]) -> None:
    natural = tuple_(*_NATURAL)
    for start in range(0, len(stale), 500):
        conn.execute(
            delete(WorkItemLink).where(
                and_(WorkItemLink.origin == ORIGIN, natural.in_(stale[start : start + 500]))
            )
        )


def _add(
    rows: dict[tuple[Any, ...], dict[str, Any]],
    items: dict[str, list[tuple[int, str]]],
    keys: list[str],
    kind: str,
    path: str,
    target: str,
) -> None:
    for key in dict.fromkeys(keys):
        for source_id, external_id in items.get(key, []):
            natural = (source_id, external_id, kind, path, target)
            rows.setdefault(
                natural,
                {
                    "source_id": source_id,
                    "item": external_id,
                    "kind": kind,
                    "repo_path": path,
                    "target": target,
                    "origin": ORIGIN,
                },
            )
