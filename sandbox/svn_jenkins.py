"""A Jenkins controller building and deploying the sandbox's Subversion repository
(sandbox/svn_repo.py), served by the Jenkins simulator, with its delivery ground truth.

Jobs: `svn-payments` (freestyle) builds trunk at the revisions in `BUILT`, its builds carrying the
Subversion plugin's changelog (module URL and revision, the revisions since the previous build);
`deploy-svn-payments` deploys each build to `test` and the revisions in `RELEASED` on to
`production`, with `ENV`, `IMAGE` (by digest) and `SVN_REVISION` parameters, as a parameterised
deploy job downstream of the build does.

The truth follows DESIGN.md's definitions, computed here from the repository's own truth (not
with the analytics): the first production deployment is the baseline; each later one's changes are
the commits reachable from its revision and not from the previous one's, merge commits left out of
lead time, which is the deployment's finish less the commit's date.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sandbox.model import JenkinsBuild, JenkinsJob, Job, Organisation
from sandbox.svn_repo import HISTORY, TRUTH_LINES, TRUTH_PARENTS, SvnRepository

SERVICE = "svn-payments"
BUILT = [2, 3, 7, 8, 10, 11, 18, 19]  # trunk revisions Jenkins built (SCM polling)
RELEASED = [3, 8, 11, 19]  # the builds promoted to production
BUILD_AFTER, BUILD_TAKES = timedelta(minutes=10), timedelta(minutes=8)
TEST_AFTER, PRODUCTION_AFTER, DEPLOY_TAKES = (
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(minutes=5),
)


@dataclass(frozen=True)
class SvnDeployment:
    """A deployment in the truth: environment, revision and finish."""

    environment: str
    revision: int
    finished_at: datetime


@dataclass
class SvnDeliveryTruth:
    deployments: list[SvnDeployment]
    lead_times_hours: list[float]  # per change deployed to production (merges excluded)

    @property
    def production(self) -> list[SvnDeployment]:
        return [d for d in self.deployments if d.environment == "production"]


def _stage(id_: int, name: str, start: datetime, takes: timedelta) -> Job:
    return Job(id_, name, name, "success", start, start, start + takes)


def jenkins_organisation(repo: SvnRepository, now: datetime | None = None) -> Organisation:
    """An organisation whose only content is the Jenkins controller of the Subversion service."""
    module = f"{repo.url}/trunk"
    build_job = JenkinsJob(("svn-payments",), "freestyle", service=SERVICE)
    deploy_job = JenkinsJob(("deploy-svn-payments",), "freestyle", service=SERVICE, deploy=True)
    previous = 0
    for number, revision in enumerate(BUILT, start=1):
        start = repo.date(revision) + BUILD_AFTER
        changes = [
            (r, HISTORY[r - 1][0], repo.date(r), HISTORY[r - 1][2])
            for r in range(previous + 1, revision + 1)
            if TRUTH_LINES[r] == "trunk"
        ]
        build_job.builds.append(
            JenkinsBuild(
                number=number, queued_at=start, stages=[_stage(number, "build", start, BUILD_TAKES)],
                result="SUCCESS", sha=f"r{revision}", ref="trunk", cause="scm",
                svn_module=module, svn_changes=changes,
            )
        )  # fmt: skip
        previous = revision
    for d in _deployments(repo):
        number = len(deploy_job.builds) + 1
        start = d.finished_at - DEPLOY_TAKES
        deploy_job.builds.append(
            JenkinsBuild(
                number=number, queued_at=start,
                stages=[_stage(1000 + number, "deploy", start, DEPLOY_TAKES)],
                result="SUCCESS", sha=f"r{d.revision}", ref="trunk", cause="upstream",
                parameters={"ENV": d.environment, "IMAGE": image(d.revision),
                            "SVN_REVISION": str(d.revision)},
                upstream=("svn-payments", BUILT.index(d.revision) + 1),
            )
        )  # fmt: skip
    last = max(b.finished_at for j in (build_job, deploy_job) for b in j.builds)
    return Organisation(
        seed=0, size="svn", now=now or last + timedelta(hours=1), start=repo.start,
        root_group="svn", teams=[], services=[], developers=[], jenkins=[build_job, deploy_job],
    )  # fmt: skip


def image(revision: int) -> str:
    """The image a build of `revision` pushed, by digest."""
    digest = hashlib.sha256(f"svn-payments r{revision}".encode()).hexdigest()
    return f"registry.example/svn-payments@sha256:{digest}"


def _deployments(repo: SvnRepository) -> list[SvnDeployment]:
    found = []
    for revision in BUILT:
        done = repo.date(revision) + BUILD_AFTER + BUILD_TAKES
        found.append(SvnDeployment("test", revision, done + TEST_AFTER + DEPLOY_TAKES))
        if revision in RELEASED:
            found.append(
                SvnDeployment("production", revision, done + PRODUCTION_AFTER + DEPLOY_TAKES)
            )
    return sorted(found, key=lambda d: d.finished_at)


def _ancestors(revision: int) -> set[int]:
    seen, todo = set(), [revision]
    while todo:
        r = todo.pop()
        if r not in seen:
            seen.add(r)
            todo.extend(TRUTH_PARENTS.get(r, []))
    return seen


def delivery_truth(repo: SvnRepository) -> SvnDeliveryTruth:
    """The deployments and the production lead times of the Subversion service."""
    deployments = _deployments(repo)
    lead_times: list[float] = []
    previous: int | None = None
    for d in deployments:
        if d.environment != "production":
            continue
        if previous is not None:
            changes = _ancestors(d.revision) - _ancestors(previous)
            lead_times.extend(
                (d.finished_at - repo.date(c)).total_seconds() / 3600
                for c in sorted(changes)
                if len(TRUTH_PARENTS.get(c, [])) < 2
            )
        previous = d.revision
    return SvnDeliveryTruth(deployments, lead_times)


__all__ = [
    "SERVICE",
    "SvnDeliveryTruth",
    "SvnDeployment",
    "delivery_truth",
    "image",
    "jenkins_organisation",
]
