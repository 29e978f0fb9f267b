"""A second production region (DESIGN.md section 9): one service runs in two production-tier
environments, its own production environment and `<that name>-us` (`production-us`, `prod-us`,
`PRO-US` by the team's naming style), each a deployment chain of its own.

The second region follows the first: every successful production deployment of the first is
rolled out to it with the same commit, ref and image, usually some minutes to hours later, now and
then first (a region that leads), never out of order. So a change reaches production twice: lead
time and the merge-request stages count it once, at its first production deployment in either
region; deployment frequency counts both; failures, recovery and rework follow each region's chain.

A post-pass after every other one but the migrations (which leave the second region alone), with a
random stream of its own: every other object keeps its ids, and the region's pipelines, jobs,
deployments and environment take the ids after them (GitLab allocates ids in creation order; the
collectors' cursors are update times, not ids, as for `sandbox.migrations`).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from itertools import pairwise

from sandbox.model import Deployment, Environment, Organisation, Service
from sandbox.pipelines import BuildProfile, Ids, PipelineFactory

REGION = "us"
LEAD_SHARE = 0.15  # rollouts that reach the second region first
LAG_MINUTES = (20.0, 360.0)
FAILURE_WINDOW = timedelta(days=7)  # the default windows of change failure (DESIGN.md section 4)
HOTFIX_WINDOW = timedelta(hours=24)
LEAD_MINUTES = (15.0, 60.0)
_PROFILE = BuildProfile(0.0, 0.0, 600.0, None)  # deploy pipelines only: no builds or tests


def regional_service(org: Organisation) -> Service | None:
    """The service deployed to two regions: the first GitLab-built, trunk-based service of a team
    that deploys daily or more (none in `tiny`, whose single service GitLab-only tests rely on)."""
    if org.size == "tiny":
        return None
    teams = {t.name: t for t in org.teams}
    return next(
        (
            s
            for s in org.services
            if s.builder == "gitlab"
            and s.flow == "trunk"
            and teams[s.team].profile in ("elite", "high")
            and "production" in s.environments
        ),
        None,
    )


def add_region(org: Organisation, ids: Ids) -> None:
    """Give `regional_service(org)` a second production region (see the module doc)."""
    service = regional_service(org)
    if service is None:
        return
    rng = random.Random(f"{org.seed}/regions/{service.name}")
    home = service.environments["production"]
    suffix = REGION.upper() if home.name.isupper() else REGION
    assert service.created_at is not None
    region = Environment(
        ids.next("environment"),
        f"{home.name}-{suffix}",
        f"production-{REGION}",
        "production",
        service.created_at,
    )
    service.environments[region.canonical] = region
    pipelines = PipelineFactory(rng, ids, _PROFILE)
    pipelines.iid = max((p.iid for p in service.pipelines), default=0)
    iid = max((d.iid for d in service.deployments), default=0)
    followed = sorted(
        (
            d
            for d in service.deployments
            if d.environment is home and d.kind == "app" and d.status == "success"
        ),
        key=lambda d: (d.finished_at, d.id),
    )
    free = org.start  # the region runs one rollout at a time, in the first region's order
    mirrors: list[Deployment] = []
    for d in followed:
        assert d.finished_at is not None
        rebuilt_here = any(j.name == "package" for j in d.pipeline.jobs)  # its image is that new
        if rng.random() < LEAD_SHARE and not rebuilt_here:
            at = d.created_at - timedelta(minutes=rng.uniform(*LEAD_MINUTES))
        else:
            at = d.finished_at + timedelta(minutes=rng.uniform(*LAG_MINUTES))
        at = max(at, free + timedelta(minutes=rng.uniform(2, 10)))
        pipeline = pipelines.deploy(d.ref, d.sha, d.user, at, region.name)
        job = pipeline.jobs[-1]
        if job.finished_at is None or job.finished_at >= org.now:
            break
        service.pipelines.append(pipeline)
        iid += 1
        mirror = Deployment(
            ids.next("deployment"),
            iid,
            region,
            d.sha,
            d.ref,
            "success",
            job.created_at,
            job,
            pipeline,
            d.user,
            d.digest,
            rollback=d.rollback,
            hotfix=d.hotfix,
            # a rebuilt image is the rebuilt-image policy's, as in the first region
            untested=not d.rebuilt
            and _untested(service, d.digest, job.started_at or job.created_at),
            rebuilt=d.rebuilt,
        )
        service.deployments.append(mirror)
        mirrors.append(mirror)
        free = job.finished_at
    service.pipelines.sort(key=lambda p: p.id)
    _intend_failures(service, followed, mirrors)


def _untested(service: Service, digest: str | None, start: datetime) -> bool:
    """The generator's intent: the image never finished a successful deployment to staging (the
    environment before production) by the time the region's rollout started, e.g. a region that
    led while staging was still deploying it."""
    return not any(
        d.digest == digest and d.finished_at is not None and d.finished_at <= start
        for d in service.deployments
        if d.environment.canonical == "staging" and d.status == "success" and d.kind == "app"
    )


def _intend_failures(service: Service, home: list[Deployment], region: list[Deployment]) -> None:
    """The generator's intent for the second region: its own rollbacks and hotfixes (N is the next
    rollout in the region), and each incident with the newest deployment of either region that
    finished before it opened (within the failure window), which may take it from the first."""
    for d, n in pairwise(region):
        assert d.finished_at is not None and n.finished_at is not None
        reasons = set()
        if n.rollback and n.finished_at < d.finished_at + FAILURE_WINDOW:
            reasons.add("rollback")
        if n.ref.startswith("hotfix/") and n.finished_at < d.finished_at + HOTFIX_WINDOW:
            reasons.add("hotfix")
        d.failed_change = tuple(sorted(reasons))
    by_id = {d.id: d for d in home}
    for incident in service.incidents:
        linked = by_id.get(incident.deployment_id or -1)
        if linked is None:
            continue
        newest = [
            chain[i - 1]
            for chain in (home, region)
            if (
                i := sum(1 for d in chain if d.finished_at and d.finished_at <= incident.created_at)
            )
        ]
        winner = max(newest, key=lambda d: (d.finished_at, d.id))
        if winner is linked or incident.created_at >= winner.finished_at + FAILURE_WINDOW:  # type: ignore[operator]
            continue
        incident.deployment_id = winner.id
        linked.failed_change = tuple(r for r in linked.failed_change if r != "incident")
        winner.failed_change = tuple(sorted({*winner.failed_change, "incident"}))
