"""Unmerged branches without a merge request (DESIGN.md section 9): a post-pass after every other
generator, with its own random stream and commit shas, so nothing else in the organisation changes.

In a few services it pushes one branch whose first own commit is 9-20 days old and whose last one
is recent (long-lived by its first commit, not stale), and one 1-4 days old (neither). No pipeline
runs for them (projects whose CI runs for merge requests only), so no id moves. Ground truth:
`sandbox.truth.long_lived_branches`.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sandbox.clock import ms
from sandbox.history import VERBS, WORDS, make_sha
from sandbox.model import Branch, Commit, Developer, Organisation, Service

OLD_DAYS = (9.0, 20.0)  # first own commit of the long-lived one, days before now
YOUNG_DAYS = (1.0, 4.0)  # first own commit of the young one


def add_unmerged_branches(org: Organisation, seed: int) -> None:
    """Push a long-lived and a young branch without a merge request in a quarter of the
    services (at least two); changes nothing else."""
    rng = random.Random(f"{seed}/unmerged-branches")
    services = sorted(org.services, key=lambda s: s.name)
    for s in rng.sample(services, min(len(services), max(2, len(services) // 4))):
        developers = next(t for t in org.teams if t.name == s.team).developers
        old = org.now - timedelta(days=rng.uniform(*OLD_DAYS))
        recent = org.now - timedelta(days=rng.uniform(0.2, 3.0))
        _push(s, rng, f"wip/{rng.choice(WORDS)}-old", [old, recent], developers)
        young = org.now - timedelta(days=rng.uniform(*YOUNG_DAYS))
        _push(s, rng, f"wip/{rng.choice(WORDS)}-new", [young], developers)


def _push(
    s: Service, rng: random.Random, name: str, times: list[datetime], developers: list[Developer]
) -> None:
    """Branch `name` off the default branch's head at `times[0]`, one commit at each time."""
    main = s.branches[s.default_branch].heads
    parent = [sha for pushed, sha in main if pushed <= times[0]][-1]
    author = rng.choice(developers)
    heads: list[tuple[datetime, str]] = []
    for at in times:
        title = f"WIP {rng.choice(VERBS).lower()} {rng.choice(WORDS)}"
        sha = make_sha(f"{s.name}/{name}", len(heads))
        commit = Commit(sha, (parent,), author, ms(at), ms(at + timedelta(seconds=40)), title,
                        additions=12, deletions=3, branch=name)  # fmt: skip
        s.commits[sha] = commit
        heads.append((commit.committed_at, sha))
        parent = sha
    s.branches[name] = Branch(name, heads[0][0], heads)
