"""Jobs retried days after their pipeline finished (a post-pass): someone re-runs an old branch
pipeline's test job. GitLab creates a new job in the same pipeline and marks the old one retried;
the pipeline runs again, so its `updated_at` and `finished_at` move days past its creation. An
incremental sync whose cursor window starts after the pipeline's creation sees it changed: over
REST its jobs are read by its own `/pipelines/:id/jobs` (`include_retried`), not from the
project's job listing, which the sync reads back only to its window (`collectors.gitlab_streams.
Pipelines.details_rest`).

In each GitLab-built service, one successful pipeline of a feature or spike branch that still
exists at the retry (a branch GitLab deleted on merge cannot be retried) and runs no deployment
has its test job retried `DELAY_DAYS` after its finish, green again, at least a day before the
end of the history: its status stays success, so no policy or metric figure moves. Ground truth:
`Job.retried_at` on the retried job and the new job in `Pipeline.jobs`; the pipeline's status and
duration follow its latest jobs (`Pipeline.latest_jobs`), its finish the retry's.

Its own random stream and a fixed number of draws per service; the new jobs' ids are taken after
every other job's but the migrations' (the generator runs it just before `add_migrations`).
"""

from __future__ import annotations

import random
from datetime import timedelta

from sandbox.clock import ms
from sandbox.model import Job, Organisation, Pipeline, Service
from sandbox.pipelines import Ids

DELAY_DAYS = (3.0, 8.0)  # from the pipeline's finish to the retry
BRANCHES = ("feature/", "spike/")


def retried_pipelines(org: Organisation) -> list[tuple[Service, Pipeline, Job]]:
    """(service, pipeline, the retried job) of every retry the organisation holds."""
    return [
        (s, p, j)
        for s in org.services
        for p in s.pipelines
        for j in p.jobs
        if j.retried_at is not None
    ]


def _candidates(s: Service, org: Organisation) -> list[Pipeline]:
    latest = org.now - timedelta(days=DELAY_DAYS[1] + 1)
    found = []
    for p in s.pipelines:
        branch = s.branches.get(p.ref)
        if (
            branch is None
            or not p.ref.startswith(BRANCHES)
            or p.finished_at is None
            or p.finished_at > latest
            or any(j.status != "success" or j.environment for j in p.jobs)
            or not any(j.stage == "test" for j in p.jobs)
        ):
            continue
        if branch.deleted_at is None:  # GitLab deleted it on merge: no retry
            found.append(p)
    return found


def add_retried_jobs(org: Organisation, ids: Ids) -> None:
    """Retry the test job of one old green branch pipeline in each GitLab-built service."""
    for s in org.services:
        if s.builder != "gitlab":
            continue
        rng = random.Random(f"{org.seed}/retried-jobs/{s.name}")
        pick, delay, queued, spread = (rng.random() for _ in range(4))  # always four
        candidates = _candidates(s, org)
        if not candidates:
            continue
        p = candidates[int(pick * len(candidates))]
        old = next(j for j in reversed(p.jobs) if j.stage == "test")
        assert p.finished_at is not None and old.duration is not None
        days = DELAY_DAYS[0] + (DELAY_DAYS[1] - DELAY_DAYS[0]) * delay
        created = ms(p.finished_at + timedelta(days=days))
        started = ms(created + timedelta(seconds=1 + 14 * queued))
        finished = ms(started + timedelta(seconds=old.duration * (0.8 + 0.4 * spread)))
        old.retried_at = created
        new = Job(ids.next("job"), old.name, old.stage, "success", created, started, finished)
        p.jobs.append(new)
