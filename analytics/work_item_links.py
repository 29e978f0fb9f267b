"""Work item <-> change links found in our own data, rebuilt by derive: a work item key (Jira
`PAY-12`, Zentao `story #12`, `warehouse.references.work_item_keys`) in a merge request's title or
source branch links the item to the MR; in a commit's title, to the commit.

Decisions where DESIGN.md is silent:
- A key names every work item with that key (two Jira sites with a `PAY` project: both); keys
  are matched as the trackers store them (`PAY-12`, `story-12`).
- The links are rewritten whole on every derive (`origin` reference; the trackers' own links,
  `origin` tracker, are left alone, and a reference the tracker also gives stays the tracker's):
  a title edited to drop a key drops the link. Every MR and commit title is read each time (a
  regular expression per title: about a second per million).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, and_, delete, select, tuple_

from warehouse.references import work_item_keys
from warehouse.schema import Commit, MergeRequest, Repo, WorkItem, WorkItemLink
from warehouse.upsert import upsert

ORIGIN = "reference"


def derive_work_item_links(conn: Connection) -> int:
    """Rebuild the `reference` links; returns how many there are."""
    items: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for source_id, external_id, key in conn.execute(
        select(WorkItem.source_id, WorkItem.external_id, WorkItem.key)
    ):
        items[key].append((source_id, external_id))
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    if items:
        mrs = select(Repo.path, MergeRequest.iid, MergeRequest.title, MergeRequest.source_branch)
        for path, iid, title, branch in conn.execute(
            mrs.join(Repo, Repo.id == MergeRequest.repo_id)
        ):
            keys = work_item_keys(title) + work_item_keys(branch, branch=True)
            _add(rows, items, keys, "merge_request", path, str(iid))
        commits = select(Repo.path, Commit.sha, Commit.title).join(Repo, Repo.id == Commit.repo_id)
        for path, sha, title in conn.execute(commits):
            _add(rows, items, work_item_keys(title), "commit", path, sha)
    stored = {
        tuple(k[:5]): k[5]
        for k in conn.execute(
            select(
                WorkItemLink.source_id,
                WorkItemLink.item,
                WorkItemLink.kind,
                WorkItemLink.repo_path,
                WorkItemLink.target,
                WorkItemLink.origin,
            )
        )
    }
    stale = [k for k, origin in stored.items() if origin == ORIGIN and k not in rows]
    natural = tuple_(
        WorkItemLink.source_id,
        WorkItemLink.item,
        WorkItemLink.kind,
        WorkItemLink.repo_path,
        WorkItemLink.target,
    )
    for start in range(0, len(stale), 500):
        conn.execute(
            delete(WorkItemLink).where(
                and_(WorkItemLink.origin == ORIGIN, natural.in_(stale[start : start + 500]))
            )
        )
    new = [row for k, row in rows.items() if k not in stored]  # a tracker's own link stays its
    upsert(conn, WorkItemLink, new)
    return len(rows)


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
