"""Duplicate merge requests, closed unmerged (a post-pass). GitLab refuses a second open merge
request from the same source into the same target branch, but a teammate may push a copy of a
branch under review and open a merge request from it: it lists the same commits (the same ones
are missing from the target), and is closed once noticed, before the first merges (had it stayed
open, GitLab would have marked it merged when the first brought its commits into the target).

In a few services, a merged feature merge request gets such a duplicate: source branch
`<its source>-copy` (deleted when closed, so never listed), same target, title and commits, opened
by a teammate during the review and closed before the merge. It has no approvals, notes, merge or
squash commit. A reader that takes the merge request of a commit by its commits alone, or the
last updated one, may name the closed one.

Ground truth: no figure moves. Every figure reads merged merge requests only (the merge request of
a change, its stages, the MRs merged and not in production, branch strategies' feature merges and
branch lives, the policies on merges, a requirement's delivery); the copy branch is finished (its
merge request closed) and listed nowhere. The work items the title names list the duplicate among
the merge requests naming them (`TrackerItem.merge_requests`), as a tracker's development panel
does. Its own random stream, a fixed number of draws per merged merge request; it runs after
every other generator (the trackers', which write work item keys into titles, included: the
duplicate copies the title it ends with), its merge request ids after every other's, its iids
after each project's last.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sandbox.clock import ms
from sandbox.model import Developer, MergeRequest, Organisation, Service
from sandbox.pipelines import Ids

SHARE = 0.02  # of the merged feature merge requests
COPY = "-copy"  # the copied branch's suffix


@dataclass
class _Draw:
    """A merged feature merge request, its service, the teammate who would open the duplicate,
    and where in the review it is opened and closed (0-1)."""

    mr: MergeRequest
    service: Service
    author: Developer
    opened: float
    closed: float


def add_duplicate_merge_requests(org: Organisation, ids: Ids) -> list[MergeRequest]:
    """Add a closed duplicate to about `SHARE` of the merged feature merge requests (at least one
    in an organisation that has any); returns the duplicates."""
    teams = {t.name: t for t in org.teams}
    chosen: list[_Draw] = []
    first: _Draw | None = None
    for s in sorted(org.services, key=lambda s: s.name):
        rng = random.Random(f"{org.seed}/duplicate-merge-requests/{s.name}")
        developers = teams[s.team].developers
        # feature branches: not the default one nor one merge requests merge into (long-lived)
        long_lived = {s.default_branch} | {m.target_branch for m in s.merge_requests}
        for mr in sorted(s.merge_requests, key=lambda m: m.iid):
            if mr.state != "merged" or mr.merged_at is None:
                continue
            pick, who, opened, closed = (rng.random() for _ in range(4))  # always four
            if mr.source_branch in long_lived or not mr.commits or mr.merged_at <= mr.created_at:
                continue
            others = [d for d in developers if d.id != mr.author.id] or [mr.author]
            draw = _Draw(mr, s, others[int(who * len(others))], opened, closed)
            first = first or draw
            if pick < SHARE:
                chosen.append(draw)
    if not chosen and first is not None:
        chosen.append(first)
    duplicates = [_duplicate(d, ids) for d in chosen]
    if org.trackers is not None:  # the copied title names the same work items
        for d, duplicate in zip(chosen, duplicates, strict=True):
            for item in org.trackers.items:
                if (d.service.name, d.mr.iid) in item.merge_requests:
                    item.merge_requests.append((d.service.name, duplicate.iid))
    return duplicates


def _duplicate(d: _Draw, ids: Ids) -> MergeRequest:
    """The duplicate of `d.mr`: opened and closed during its review."""
    mr, s = d.mr, d.service
    assert mr.merged_at is not None
    review = mr.merged_at - mr.created_at
    created = ms(mr.created_at + review * (0.1 + 0.4 * d.opened))
    closed = ms(created + (mr.merged_at - created) * (0.2 + 0.6 * d.closed))
    duplicate = MergeRequest(
        ids.next("merge_request"),
        max(m.iid for m in s.merge_requests) + 1,
        mr.title,
        d.author,
        mr.source_branch + COPY,
        mr.target_branch,
        created_at=created,
        first_commit_at=mr.first_commit_at,
        commits=list(mr.commits),
        state="closed",
        updated_at=closed,
        closed_at=closed,
    )
    s.merge_requests.append(duplicate)
    return duplicate


__all__ = ["COPY", "SHARE", "add_duplicate_merge_requests"]
