"""Pipelines and jobs with realistic timings: queue 0.5 to 2 min, jobs adding up to a median 8 to 15 min."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sandbox.clock import ms
from sandbox.model import Developer, Job, Pipeline, TestSuite


class Ids:
    """Instance-wide id counters, as one GitLab instance hands them out."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def next(self, kind: str) -> int:
        """The next id of `kind` (project, merge_request, pipeline, job, ...), starting at 1."""
        value = self._next.get(kind, 0) + 1
        self._next[kind] = value
        return value


def digest_of(*parts: object) -> str:
    """A deterministic `sha256:` image digest for the given identity."""
    return "sha256:" + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def lognormal(rng: random.Random, median: float, sigma: float) -> float:
    """A log-normal draw with the given median (sigma 1.0 puts p90 at about 3.6 x the median)."""
    return median * rng.lognormvariate(0.0, sigma)


@dataclass
class BuildProfile:
    """How a team's pipelines behave."""

    branch_failure: float  # share of branch pipelines that fail
    main_failure: float  # share of default-branch pipelines that fail
    duration_median_s: float  # median pipeline duration
    flaky_suite: str | None  # a test suite that fails now and then


class PipelineFactory:
    """Builds pipelines for one service; ids come from the instance-wide counters."""

    def __init__(self, rng: random.Random, ids: Ids, profile: BuildProfile) -> None:
        self.rng = rng
        self.ids = ids
        self.profile = profile
        self.iid = 0

    def _pipeline(self, ref: str, sha: str, source: str, user: Developer, at: datetime) -> Pipeline:
        self.iid += 1
        return Pipeline(self.ids.next("pipeline"), self.iid, ref, sha, source, user, ms(at))

    def _job(self, name: str, stage: str, created: datetime, seconds: float, status: str) -> Job:
        queued = (
            self.rng.uniform(30, 120) if stage in ("build", "deploy") else self.rng.uniform(1, 15)
        )
        started = ms(created + timedelta(seconds=queued))
        finished = ms(started + timedelta(seconds=seconds))
        return Job(self.ids.next("job"), name, stage, status, ms(created), started, finished)

    def _skipped(self, name: str, stage: str, created: datetime) -> Job:
        return Job(self.ids.next("job"), name, stage, "skipped", ms(created), None, None)

    def build(
        self,
        ref: str,
        sha: str,
        user: Developer,
        at: datetime,
        *,
        main: bool,
        fail: bool | None = None,
        package: bool = False,
    ) -> Pipeline:
        """A build pipeline (build, test, and package on the default branch) pushed at `at`.

        `fail` forces the outcome; otherwise the profile's failure rate decides.
        """
        rng = self.rng
        pipeline = self._pipeline(ref, sha, "push", user, at)
        if fail is None:
            fail = rng.random() < (
                self.profile.main_failure if main else self.profile.branch_failure
            )
        total = lognormal(rng, self.profile.duration_median_s, 0.35)
        fail_in_build = fail and rng.random() < 0.3
        build = self._job(
            "build", "build", at, total * 0.3, "failed" if fail_in_build else "success"
        )
        pipeline.jobs.append(build)
        if fail_in_build:
            pipeline.jobs.append(self._skipped("test", "test", at))
            if package:
                pipeline.jobs.append(self._skipped("package", "package", at))
            return pipeline
        assert build.finished_at is not None
        test = self._job(
            "test", "test", build.finished_at, total * 0.55, "failed" if fail else "success"
        )
        pipeline.jobs.append(test)
        pipeline.test_suites = self._suites(failing=fail)
        if package:
            assert test.finished_at is not None
            if fail:
                pipeline.jobs.append(self._skipped("package", "package", test.finished_at))
            else:
                pipeline.jobs.append(
                    self._job("package", "package", test.finished_at, total * 0.15, "success")
                )
        return pipeline

    def _suites(self, failing: bool) -> list[TestSuite]:
        rng = self.rng
        suites = []
        for name, size in (("unit", rng.randint(150, 900)), ("integration", rng.randint(20, 120))):
            failed = 0
            if failing and (name == "unit" or rng.random() < 0.4):
                failed = rng.randint(1, 6)
            elif name == self.profile.flaky_suite and rng.random() < 0.04:
                failed = 1
            skipped = rng.randint(0, 5)
            suites.append(
                TestSuite(name, size, failed, skipped, 0, round(size * rng.uniform(0.05, 0.4), 2))
            )
        if not failing and any(s.failed for s in suites):  # a flaky failure that was retried green
            for suite in suites:
                suite.failed = 0
        return suites

    def deploy(
        self,
        ref: str,
        sha: str,
        user: Developer,
        at: datetime,
        environment: str,
        *,
        succeed: bool = True,
        rebuild: bool = False,
        job_name: str | None = None,
    ) -> Pipeline:
        """A promotion pipeline started by hand (`web`): optionally a rebuild, then one deploy job."""
        rng = self.rng
        pipeline = self._pipeline(ref, sha, "web", user, at)
        start = at
        if rebuild:
            package = self._job("package", "package", at, rng.uniform(120, 300), "success")
            pipeline.jobs.append(package)
            assert package.finished_at is not None
            start = package.finished_at
        name = job_name or f"deploy-{environment.lower()}"
        job = self._job(
            name, "deploy", start, rng.uniform(60, 240), "success" if succeed else "failed"
        )
        job.environment = environment
        pipeline.jobs.append(job)
        return pipeline

    def deploy_job(self, pipeline: Pipeline, environment: str, succeed: bool = True) -> Job:
        """An automatic deploy job appended to a build pipeline, after its last job."""
        last = max(j.finished_at for j in pipeline.jobs if j.finished_at)
        job = self._job(
            f"deploy-{environment.lower()}",
            "deploy",
            last,
            self.rng.uniform(60, 180),
            "success" if succeed else "failed",
        )
        job.environment = environment
        pipeline.jobs.append(job)
        return job
