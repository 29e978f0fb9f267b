"""Jenkins-built services: their builds and deployments as a Jenkins controller holds them.

A Jenkins-built service keeps its code in GitLab (commits, branches, merge requests, registry,
incidents come from the GitLab simulator), but GitLab runs none of its pipelines and records none of
its deployments: Jenkins builds every push and deploys through `deploy-<service>` jobs with the
parameters `ENV` and `IMAGE`. The history itself is generated like every other service's
(`sandbox.generate`); this module lays it out as Jenkins jobs and numbered builds.

Layouts alternate between the Jenkins-built services, so a small organisation shows each kind:
- `multibranch`: folder `<team>` / multibranch project `<service>` / one pipeline job per branch
  (named like Jenkins names them: `feature%2Fx`), deployments by the pipeline job
  `<team>/deploy-<service>` with `IMAGE=<repo>@sha256:...` plus `GIT_COMMIT` and `BRANCH`;
- `classic`: pipeline job `<team>/<service>-build` for the default branch and hotfixes, freestyle
  job `<team>/<service>-pr` for the other branches, deployments by the top-level freestyle job
  `deploy-<service>` with a tag (`IMAGE=<repo>:<sha8>`, `:latest` for test) and the service's
  repository checked out (a git BuildData), beside a deploy-config repository.
Pipeline builds load a shared library (a second BuildData, before or after the service's own); a
test failure makes a build UNSTABLE, a build failure FAILURE; a few branch builds are ABORTED
midway. Builds are numbered per job in the order they started, as Jenkins numbers them.

Declarative pipelines set a failed build's result before its post steps finish: a post-pass
(`add_interim_results`, its own random stream) gives most FAILURE and UNSTABLE builds, of build and
deploy jobs alike, a `result_at` inside their last stage, from which they show that result while
still building.

At an instant (`visible`, `building`, `shown_result`, `stage_status`, `published_suites`, shared by
the simulator and the ground truth): a build exists from its start; until its last stage finishes
it is building, with no result before its `result_at`; a stage shows in `wfapi/describe` once it
started (NOT_EXECUTED ones once the build finished); the test report once the test stage finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sandbox.clock import ms
from sandbox.image_repos import deployable, repositories
from sandbox.model import (
    Deployment,
    Image,
    JenkinsBuild,
    JenkinsJob,
    Job,
    MergeRequest,
    Organisation,
    Pipeline,
    Service,
    TestSuite,
)

ABORTED_SHARE = 0.04  # branch builds someone stops midway
INTERIM_SHARE = 0.6  # failed builds whose result shows while post steps still run
LIBRARY = "platform/jenkins-library"
DEPLOY_CONFIG = "platform/deploy-config"


@dataclass(frozen=True)
class Style:
    """How one Jenkins-built service's jobs are set up."""

    layout: str  # multibranch | classic
    image: str  # digest | tag: how its deploy jobs name the image
    remote: str  # http | ssh: how BuildData name its repository

    @classmethod
    def of(cls, index: int) -> Style:
        """The style of the `index`-th Jenkins-built service (every kind shows in a small org)."""
        layout = ("multibranch", "classic")[index % 2]
        image = "digest" if index % 4 in (0, 3) else "tag"
        return cls(layout, image, "http" if layout == "multibranch" else "ssh")


def encode_branch(name: str) -> str:
    """A branch name as a multibranch project names its job (Jenkins' NameEncoder)."""
    return name.replace("%", "%25").replace("/", "%2F")


def iter_jobs(items: Iterable[JenkinsJob]) -> Iterator[JenkinsJob]:
    """Every item, depth first, folders before their children."""
    for item in items:
        yield item
        yield from iter_jobs(item.children)


def sha_of(*parts: object) -> str:
    """A deterministic 40-character sha for repositories the sandbox does not generate."""
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def gitlab_view(org: Organisation) -> Organisation:
    """The organisation as GitLab holds it: Jenkins-built services keep their code, registry and
    incidents but have no GitLab pipelines, environments or deployments."""
    services = [
        dataclasses.replace(s, pipelines=[], deployments=[], environments={})
        if s.builder == "jenkins"
        else s
        for s in org.services
    ]
    return dataclasses.replace(org, services=services)


def build_jenkins(org: Organisation) -> list[JenkinsJob]:
    """The Jenkins controller's top-level items for the organisation's Jenkins-built services."""
    top: list[JenkinsJob] = []
    folders: dict[str, JenkinsJob] = {}
    jenkins_built = [s for s in org.services if s.builder == "jenkins"]
    for index, s in enumerate(jenkins_built):
        folder = folders.get(s.team)
        if folder is None:
            folder = folders[s.team] = JenkinsJob((s.team,), "folder")
            top.append(folder)
        rng = random.Random(f"{org.seed}/jenkins-layout/{s.name}")
        _ServiceJobs(org, s, Style.of(index), rng, folder, top).build()
    for item in iter_jobs(top):
        item.children.sort(key=lambda j: j.path)
    top.sort(key=lambda j: j.path)
    return top


class _ServiceJobs:
    """Lays out one service's pipelines and deployments as Jenkins jobs and builds."""

    def __init__(
        self,
        org: Organisation,
        service: Service,
        style: Style,
        rng: random.Random,
        folder: JenkinsJob,
        top: list[JenkinsJob],
    ) -> None:
        self.org, self.s, self.style, self.rng = org, service, style, rng
        self.folder, self.top = folder, top
        self.jobs: dict[str, JenkinsJob] = {}
        self.library = f"{org.root_group}/{LIBRARY}"
        self.deploy_config = f"{org.root_group}/{DEPLOY_CONFIG}"
        self.merges: dict[str, MergeRequest] = {
            sha: mr
            for mr in service.merge_requests
            for sha in (mr.merge_commit_sha, mr.squash_commit_sha)
            if sha
        }
        self.images: dict[str, Image] = {i.digest: i for i in service.images}

    def build(self) -> None:
        s = self.s
        deployments = {id(d.job): d for d in s.deployments}
        deploy_job = self._deploy_job()
        triggered: list[tuple[JenkinsBuild, JenkinsJob, JenkinsBuild]] = []
        for p in s.pipelines:
            deploys = [j for j in p.jobs if j.stage == "deploy"]
            if p.source == "web":  # a promotion: one deploy build (with its rebuild, if any)
                deploy_job.builds.append(self._deploy(p, p.jobs, deploys[-1], deployments))
                continue
            job = self._build_job(p.ref)
            build = self._build(p, [j for j in p.jobs if j.stage != "deploy"], job)
            job.builds.append(build)
            for d in deploys:  # the automatic deployment to test, triggered by the build
                downstream = self._deploy(p, [d], d, deployments, upstream=True)
                deploy_job.builds.append(downstream)
                triggered.append((downstream, job, build))
        for job in [deploy_job, *self.jobs.values()]:
            job.builds.sort(key=lambda b: (b.started_at, b.stages[0].id))
            for number, b in enumerate(job.builds, 1):
                b.number = number
        for downstream, job, upstream in triggered:
            downstream.upstream = (job.full_name, upstream.number)

    # -- jobs ----------------------------------------------------------------------------------

    def _job(
        self, parent: JenkinsJob | None, name: str, kind: str, service: str = "", **extra: object
    ) -> JenkinsJob:
        path = (*(parent.path if parent else ()), name)
        job = JenkinsJob(
            path,
            kind,
            service=service or self.s.name,
            remote=self.style.remote,
            **extra,  # type: ignore[arg-type]
        )
        (parent.children if parent else self.top).append(job)
        return job

    def _deploy_job(self) -> JenkinsJob:
        name, service = f"deploy-{self.s.deployed_as}", self.s.deployed_as
        if self.style.layout == "multibranch":
            return self._job(self.folder, name, "pipeline", service, deploy=True)
        return self._job(None, name, "freestyle", service, deploy=True)

    def _build_job(self, ref: str) -> JenkinsJob:
        """The job that builds `ref`, created on first use."""
        s, style = self.s, self.style
        if style.layout == "multibranch":
            key = ref
        elif ref == s.default_branch or ref.startswith("hotfix/"):
            key = "build"
        else:
            key = "pr"
        job = self.jobs.get(key)
        if job is not None:
            return job
        if style.layout == "multibranch":
            project = self.jobs.get("") or self._job(self.folder, s.name, "multibranch")
            self.jobs[""] = project
            job = self._job(project, encode_branch(ref), "pipeline", display_name=ref, branch=True)
        elif key == "build":
            job = self._job(self.folder, f"{s.name}-build", "pipeline")
        else:
            job = self._job(self.folder, f"{s.name}-pr", "freestyle")
        self.jobs[key] = job
        return job

    # -- builds --------------------------------------------------------------------------------

    def _build(self, p: Pipeline, stages: list[Job], job: JenkinsJob) -> JenkinsBuild:
        mainline = p.ref == self.s.default_branch or p.ref.startswith("hotfix/")
        aborted = not mainline and self.rng.random() < ABORTED_SHARE
        if aborted:
            stages = self._aborted(stages)
        return JenkinsBuild(
            0,
            p.created_at,
            stages,
            "ABORTED" if aborted else _result(stages),
            p.sha,
            p.ref,
            "branch" if job.branch else "scm",
            checkouts=self._checkouts(p, job),
            changes=self._changes(p.sha),
            test_suites=[] if aborted else list(p.test_suites),
            pipeline=p,
        )

    def _aborted(self, stages: list[Job]) -> list[Job]:
        """Copies of `stages` as if someone stopped the build while one of them ran."""
        ran = [i for i, j in enumerate(stages) if j.started_at and j.finished_at]
        stop = self.rng.choice(ran)
        out = []
        for i, j in enumerate(stages):
            if i < stop:
                out.append(dataclasses.replace(j))
            elif i == stop:
                assert j.started_at and j.finished_at
                share = self.rng.uniform(0.2, 0.8)
                end = ms(j.started_at + (j.finished_at - j.started_at) * share)
                out.append(dataclasses.replace(j, status="canceled", finished_at=end))
            else:
                out.append(
                    dataclasses.replace(j, status="skipped", started_at=None, finished_at=None)
                )
        return out

    def _checkouts(self, p: Pipeline, job: JenkinsJob) -> list[tuple[str, str, str]]:
        own = (self.s.path, p.sha, p.ref if job.branch else f"refs/remotes/origin/{p.ref}")
        if job.kind == "freestyle":
            return [(self.s.path, p.sha, f"origin/{p.ref}")]
        month = p.created_at.strftime("%Y-%m")  # the library moves on now and then
        library = (self.library, sha_of(self.library, month), "main")
        return [own, library] if self.style.layout == "multibranch" else [library, own]

    def _changes(self, sha: str) -> list[str]:
        """The commits a build's changelog lists: a merged request's commits and its merge."""
        mr = self.merges.get(sha)
        if mr is None or mr.squash_commit_sha == sha:
            return [sha]
        return [*mr.commits, sha]

    def _deploy(
        self,
        p: Pipeline,
        stages: list[Job],
        job: Job,
        deployments: dict[int, Deployment],
        upstream: bool = False,
    ) -> JenkinsBuild:
        """A build of `deploy-<service>` running `job` (and the rebuild before it, if any)."""
        s = self.s
        d = deployments.get(id(job))
        assert job.environment is not None
        parameters = {"ENV": job.environment, "IMAGE": self._image_reference(p, d, job.environment)}
        checkouts: list[tuple[str, str, str]] = []
        if self.style.image == "digest":
            parameters.update(GIT_COMMIT=p.sha, BRANCH=p.ref)
        else:
            config = sha_of(self.deploy_config, p.created_at.date())
            checkouts = [
                (s.path, p.sha, f"origin/{p.ref}"),
                (self.deploy_config, config, "origin/main"),
            ]
        return JenkinsBuild(
            0,
            job.created_at if upstream else p.created_at,
            list(stages),
            "SUCCESS" if job.status == "success" else "FAILURE",
            p.sha,
            p.ref,
            "upstream" if upstream else "user",
            user=None if upstream else p.user,
            parameters=parameters,
            checkouts=checkouts,
            pipeline=p,
            deployment=d,
        )

    def _image_reference(self, p: Pipeline, d: Deployment | None, environment: str) -> str:
        """IMAGE as the deploy job is given it: by digest, or by a tag (a moving one for test)."""
        s = self.s
        image = self.images.get(d.digest) if d and d.digest else None
        if image is None:  # still deploying at the end of the history: the image it was given
            app = deployable(s)
            image = next((i for i in app if i.pipeline_id == p.id), None) or next(
                (i for i in app if i.revision == p.sha), None
            )
        if image is None:
            return f"{repositories(s)[0].location}:{p.sha[:8]}"
        if self.style.image == "digest":
            return f"{image.repository}@{image.digest}"
        test = next((e for e in s.environments.values() if e.canonical == "test"), None)
        tag = "latest" if test and test.name == environment else image.tag
        return f"{image.repository}:{tag}"


# -- state at an instant ----------------------------------------------------------------------


def millis(value: datetime) -> int:
    """Epoch milliseconds, as Jenkins writes times."""
    return int(value.timestamp() * 1000)


def visible(b: JenkinsBuild, at: datetime) -> bool:
    """A build exists from its start."""
    return b.started_at <= at


def building(b: JenkinsBuild, at: datetime) -> bool:
    """A build runs until its last stage finishes."""
    return b.finished_at > at


def shown_result(b: JenkinsBuild, at: datetime) -> str | None:
    """The build's `result` at `at`: its result once finished, or once set while building
    (`result_at`); None before."""
    if not building(b, at) or (b.result_at is not None and b.result_at <= at):
        return b.result
    return None


def add_interim_results(org: Organisation) -> None:
    """Give most FAILURE and UNSTABLE builds a `result_at`: the instant, inside their last stage,
    at which the failing step set the result; post steps run on until the stage's finish."""
    for job in iter_jobs(org.jenkins):
        rng = random.Random(f"{org.seed}/jenkins-interim/{job.full_name}")
        for b in job.builds:
            if b.result not in ("FAILURE", "UNSTABLE") or rng.random() >= INTERIM_SHARE:
                continue
            last = next(j for j in b.stages if j.finished_at == b.finished_at)
            if last.started_at is None or last.finished_at is None:
                continue
            at = ms(last.started_at + (last.finished_at - last.started_at) * rng.uniform(0.3, 0.8))
            if last.started_at <= at < last.finished_at:
                b.result_at = at


def visible_builds(job: JenkinsJob, at: datetime) -> list[JenkinsBuild]:
    """The job's builds that exist at `at`, oldest first (numbers follow starts)."""
    return [b for b in job.builds if b.started_at <= at]


_STAGE_STATUS = {"success": "SUCCESS", "failed": "FAILED", "canceled": "ABORTED"}


def stage_status(b: JenkinsBuild, j: Job, at: datetime) -> str | None:
    """A stage's status in `wfapi/describe` at `at`; None while it is not shown."""
    if j.started_at is None or j.finished_at is None:
        return None if building(b, at) else "NOT_EXECUTED"
    if j.started_at > at:
        return None
    if j.finished_at > at:
        return "IN_PROGRESS"
    status = _STAGE_STATUS.get(j.status, "NOT_EXECUTED")
    return "UNSTABLE" if status == "FAILED" and b.result == "UNSTABLE" else status


def published_suites(b: JenkinsBuild, at: datetime) -> list[TestSuite]:
    """The test suites the build has published by `at` (at the end of its test stage)."""
    test = next((j for j in b.stages if j.stage == "test"), None)
    if not b.test_suites or test is None or test.finished_at is None or test.finished_at > at:
        return []
    return b.test_suites


def _result(stages: list[Job]) -> str:
    """A finished build's result from its stages: failed tests make it UNSTABLE."""
    for j in stages:
        if j.status == "failed":
            return "UNSTABLE" if j.stage == "test" else "FAILURE"
        if j.status == "canceled":
            return "ABORTED"
    return "SUCCESS"
