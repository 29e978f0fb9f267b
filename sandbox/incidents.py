"""Incidents resolved before they were opened: a post-pass over a generated organisation.

Two real-world shapes give an incident a resolution earlier than its opening: clock skew between
the system that opens incidents and the one that resolves them (minutes), and tickets back-filled
after the outage, opened hours after the resolution they record. `skew_incidents` moves the
resolution of a few resolved incidents (its own random stream) before their opening; it makes no
ids and changes nothing else, so every other random stream and id stays as it was.

The ground truth (`sandbox.reference`): such an incident is flagged (`resolved_before_opened`),
left out of time to restore and counted; its resolution does not recover the failed change it is
attributed to.
"""

from __future__ import annotations

import random
from datetime import timedelta

from sandbox.clock import ms
from sandbox.model import Incident, Organisation

# resolved incidents made to resolve before their opening, per organisation size
SKEWED = {"tiny": 0, "small": 2, "demo": 4, "large": 12}


def resolved_before_opened(i: Incident) -> bool:
    """Whether the incident's resolution is earlier than its opening (no usable restore time)."""
    return i.closed_at is not None and i.closed_at < i.created_at


def skew_incidents(org: Organisation) -> list[Incident]:
    """Resolve a few resolved incidents before their opening, alternately by clock skew (1-20
    minutes) and as back-filled tickets (1-8 hours); returns them."""
    rng = random.Random(f"{org.seed}/skewed-incidents/{org.size}")
    resolved = sorted(
        (i for s in org.services for i in s.incidents if i.closed_at is not None),
        key=lambda i: i.id,
    )
    chosen = sorted(
        rng.sample(resolved, min(SKEWED.get(org.size, 0), len(resolved))), key=lambda i: i.id
    )
    for n, i in enumerate(chosen):
        early = (
            timedelta(minutes=rng.uniform(1, 20))
            if n % 2 == 0
            else timedelta(hours=rng.uniform(1, 8))
        )
        i.closed_at = ms(i.created_at - early)
    return chosen
