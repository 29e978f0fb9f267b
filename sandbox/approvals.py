"""Approvals withdrawn before the merge (a post-pass): GitLab writes a system note on each approval
("approved this merge request") and on each withdrawal ("unapproved this merge request"); the REST
fallback replays them (`collectors.gitlab_normalize.approvals_from_notes`), the simulator's
`/approvals` and GraphQL's `approvedBy` follow the same notes (`sandbox.gitlab_payloads.approvals`).

Some merged merge requests get an approval that is withdrawn before the merge:
- `same`: the approver who approves at the merge approved earlier, withdrew, and approves again;
- `another`: another teammate approved and withdrew, and the usual approver approves at the merge;
- `none`: in a merge request merged without an approval, a teammate approved and withdrew, and
  nobody approved again (the merge-without-approval policy must flag it).

Ground truth: `MergeRequest.approvers` (who approves at the merge) is what it was: the notes are
added around it, so no figure moves. The withdrawn approval falls after the merge request's first
review (so `first_review_at` stays) and before the approval at the merge; the notes are appended
(every reader orders them by (created_at, id)). Its own random stream, a fixed number of draws per
merged merge request, so choosing one moves no other; note ids are taken after every other note's
(no other id moves).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sandbox.clock import ms
from sandbox.model import Developer, MergeRequest, Note, Organisation
from sandbox.pipelines import Ids

APPROVED = "approved this merge request"
UNAPPROVED = "unapproved this merge request"
SHARE = 0.08  # of merged merge requests with an approval
SHARE_UNAPPROVED = 0.5  # of those merged without one
MIN_WINDOW = timedelta(minutes=10)  # between the first review and the approval at the merge
VARIANTS = ("same", "another", "none")


def withdrawals(mr: MergeRequest) -> list[tuple[Developer, datetime, datetime]]:
    """(who, approved at, withdrew at) of each approval of `mr` that was withdrawn."""
    found = []
    notes = sorted((n for n in mr.notes if n.system), key=lambda n: (n.created_at, n.id))
    for i, note in enumerate(notes):
        if note.body == UNAPPROVED:
            approved = [
                n for n in notes[:i] if n.body == APPROVED and n.author.id == note.author.id
            ]
            found.append((note.author, approved[-1].created_at, note.created_at))
    return found


def withdrawn_kind(mr: MergeRequest) -> str | None:
    """The variant a merge request's notes show, read back from them (None: no withdrawal)."""
    if not any(n.system and n.body == UNAPPROVED for n in mr.notes):
        return None
    if not mr.approvers:
        return "none"
    withdrawn = {n.author.id for n in mr.notes if n.system and n.body == UNAPPROVED}
    return "same" if withdrawn <= {a.id for a in mr.approvers} else "another"


@dataclass
class _Draw:
    """One eligible merge request and its five draws (drawn for every merged one)."""

    mr: MergeRequest
    withdrawer: Developer
    kind: str  # what it would show: same | another | none
    chosen: bool
    first: float
    second: float


def add_withdrawn_approvals(org: Organisation, ids: Ids) -> None:
    """Add an approval and its withdrawal to about `SHARE` of the merged merge requests with an
    approval and `SHARE_UNAPPROVED` of those without, and to the first eligible one of a variant
    the draws left out (so every organisation with such merge requests shows the three);
    `MergeRequest.approvers` is unchanged."""
    teams = {t.name: t for t in org.teams}
    eligible: list[_Draw] = []
    for s in org.services:
        rng = random.Random(f"{org.seed}/withdrawn-approvals/{s.name}")
        developers = teams[s.team].developers
        for mr in s.merge_requests:
            if mr.state != "merged" or mr.merged_at is None:
                continue
            pick, variant, first, second, who = (rng.random() for _ in range(5))  # always five
            start = max(mr.created_at, mr.first_review_at or mr.created_at)
            if _approval(mr) - start < MIN_WINDOW:
                continue
            if mr.approvers:
                approver = mr.approvers[-1]
                others = [d for d in developers if d.id not in (mr.author.id, approver.id)]
                same = variant < 0.5 or not others
                withdrawer = approver if same else others[int(who * len(others))]
                kind, chosen = ("same" if same else "another"), pick < SHARE
            else:
                others = [d for d in developers if d.id != mr.author.id]
                if not others:
                    continue
                withdrawer = others[int(who * len(others))]
                kind, chosen = "none", pick < SHARE_UNAPPROVED
            eligible.append(_Draw(mr, withdrawer, kind, chosen, first, second))
    shown = {d.kind for d in eligible if d.chosen}
    for kind in VARIANTS:
        if kind not in shown:
            missing = next((d for d in eligible if d.kind == kind), None)
            if missing is not None:
                missing.chosen = True
    for d in eligible:
        if d.chosen:
            _withdraw(d, ids)


def _approval(mr: MergeRequest) -> datetime:
    """When the approver approves (or would have): just before the merge."""
    assert mr.merged_at is not None
    return mr.merged_at - timedelta(seconds=30)


def _withdraw(d: _Draw, ids: Ids) -> None:
    """An approval after the first review, withdrawn before the approval at the merge."""
    mr = d.mr
    start = max(mr.created_at, mr.first_review_at or mr.created_at)
    approval = _approval(mr)
    approved = start + (approval - start) * (0.1 + 0.4 * d.first)
    withdrawn = approved + (approval - approved) * (0.2 + 0.6 * d.second)
    for at, body in ((approved, APPROVED), (withdrawn, UNAPPROVED)):
        mr.notes.append(Note(ids.next("note"), d.withdrawer, ms(at), body, system=True))
