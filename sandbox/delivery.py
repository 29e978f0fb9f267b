"""A service's delivery: images from default-branch builds, automatic deployment to test, promotion
to staging and production on the team's cadence, and the failures a real organisation has —
untested and rebuilt images, failed attempts, rollbacks, hotfixes and incidents."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from sandbox.clock import WorkClock, ms
from sandbox.history import History, make_sha
from sandbox.model import (
    Branch,
    Commit,
    Deployment,
    Developer,
    Environment,
    Image,
    Incident,
    Job,
    Pipeline,
    Service,
    Team,
)
from sandbox.pipelines import Ids, PipelineFactory, digest_of, lognormal
from warehouse.vocabulary import tier_of

ENV_STYLES = {
    "plain": {"test": "test", "staging": "staging", "production": "production"},
    "ctrip": {"test": "FAT", "staging": "UAT", "production": "PRO"},
    "short": {"test": "qa", "staging": "pre", "production": "prod"},
}
CTRIP_TIERS = {"test": "testing", "staging": "staging", "production": "production"}
SEVERITIES = ("low", "medium", "high", "critical")


@dataclass
class DeliveryProfile:
    """How a team promotes (intervals in working hours) and how often it breaks production."""

    staging_every_h: float
    production_every_h: float
    change_failure: float
    restore_h: float  # median time to restore an incident
    untested_share: float = 0.03
    rebuilt_share: float = 0.02
    attempt_failure: float = 0.03


class DeliveryBuilder:
    """Generates one service's images, deployments and incidents from its history: staging and
    production deploy from `refs` (the default branch; sandbox.flows subclasses it for GitLab
    flow's environment branches)."""

    refs: ClassVar[dict[str, str]] = {
        "staging": "main",
        "production": "main",
    }  # canonical environment -> deployed ref

    def __init__(
        self,
        service: Service,
        team: Team,
        clock: WorkClock,
        rng: random.Random,
        ids: Ids,
        profile: DeliveryProfile,
        pipelines: PipelineFactory,
        start: datetime,
        now: datetime,
    ) -> None:
        self.s, self.team, self.clock, self.rng, self.ids = service, team, clock, rng, ids
        self.p, self.pipelines, self.start, self.now = profile, pipelines, start, now
        self.deploy_iid = 0
        self.issue_iid = 0
        self.digests: dict[str, str] = {}  # sha -> digest of its default build
        self.current: dict[str, Deployment] = {}  # canonical env -> last successful deployment
        self.ever: dict[str, set[str]] = {"test": set(), "staging": set(), "production": set()}
        self.rank: dict[str, float] = {}  # position on main; a hotfix ranks just after its base
        self.high_water: dict[str, float] = {}  # newest rank each environment has run

    def build(self, history: History) -> None:
        """Generate everything after the code history."""
        self._environments()
        self.rank = {sha: float(i) for i, (_, sha) in enumerate(history.main)}
        for _, sha in history.main:
            pipeline = history.main_pipelines.get(sha)
            if pipeline is not None and pipeline.status == "success":
                self._image(pipeline, sha)
                self._deploy_to_test(pipeline, sha)
        self._promote()

    # -- environments and images -------------------------------------------------------------

    def _environments(self) -> None:
        names = ENV_STYLES[self.team.env_style]
        assert self.s.created_at is not None
        for canonical, raw in names.items():
            tier = CTRIP_TIERS[canonical] if self.team.env_style == "ctrip" else tier_of(raw)
            self.s.environments[canonical] = Environment(
                self.ids.next("environment"), raw, canonical, tier, self.s.created_at
            )

    def _image(self, pipeline: Pipeline, sha: str, suffix: str = "") -> str:
        package = next(j for j in pipeline.jobs if j.name == "package")
        assert package.finished_at is not None
        digest = digest_of(self.s.name, sha, pipeline.id)
        tag = sha[:8] + suffix
        self.s.images.append(
            Image(digest, self.s.image_repository, sha, package.finished_at, pipeline.id, tag)
        )
        self.s.tag_history.append((tag, digest, package.finished_at))
        if not suffix:
            self.s.tag_history.append(("latest", digest, package.finished_at))  # a tag that moves
            self.digests[sha] = digest
        return digest

    # -- deployments -------------------------------------------------------------------------

    def _record(
        self, canonical: str, pipeline: Pipeline, job: Job, digest: str | None, **truth: bool
    ) -> Deployment:
        self.deploy_iid += 1
        env = self.s.environments[canonical]
        deployment = Deployment(
            self.ids.next("deployment"),
            self.deploy_iid,
            env,
            pipeline.sha,
            pipeline.ref,
            "success" if job.status == "success" else "failed",
            job.created_at,
            job,
            pipeline,
            pipeline.user,
            digest,
            **truth,  # type: ignore[arg-type]
        )
        self.s.deployments.append(deployment)
        if deployment.status == "success":
            self.current[canonical] = deployment
            rank = self.rank.get(deployment.sha, -1.0)
            self.high_water[canonical] = max(self.high_water.get(canonical, -1.0), rank)
            if digest:
                self.ever[canonical].add(digest)
        return deployment

    def _deploy_to_test(self, pipeline: Pipeline, sha: str) -> None:
        env = self.s.environments["test"]
        ok = self.rng.random() > self.p.attempt_failure
        job = self.pipelines.deploy_job(pipeline, env.name, succeed=ok)
        if job.finished_at and job.finished_at < self.now:
            self._record("test", pipeline, job, self.digests[sha])

    def _deploy(
        self,
        canonical: str,
        sha: str,
        ref: str,
        digest: str | None,
        at: datetime,
        *,
        rebuild: bool = False,
        **truth: bool,
    ) -> Deployment | None:
        """A promotion pipeline deploying `sha` to `canonical`; a failed attempt is retried once."""
        env = self.s.environments[canonical]
        user = self.rng.choice(self.team.developers)
        ok = self.rng.random() > self.p.attempt_failure
        pipeline = self.pipelines.deploy(ref, sha, user, at, env.name, succeed=ok, rebuild=rebuild)
        self.s.pipelines.append(pipeline)
        job = pipeline.jobs[-1]
        if rebuild:
            digest = self._image(pipeline, sha, suffix=f"-{env.name.lower()}")
        if job.finished_at is None or job.finished_at >= self.now:
            return None
        deployment = self._record(canonical, pipeline, job, digest, **truth)
        if not ok:  # retried a few minutes later
            retry_at = job.finished_at + timedelta(minutes=self.rng.uniform(5, 20))
            return self._deploy(canonical, sha, ref, digest, retry_at, **truth)
        return deployment

    def _schedule(self, every_h: float) -> list[datetime]:
        times, t = [], self.clock.add(self.start, self.rng.uniform(0, every_h) * 3600)
        while t < self.now:
            times.append(t)
            t = self.clock.add(t, every_h * 3600 * self.rng.uniform(0.6, 1.4))
        return times

    def _promote(self) -> None:
        events: list[tuple[datetime, int, str]] = []
        for i, t in enumerate(self._schedule(self.p.staging_every_h)):
            events.append((t, i, "staging"))
        for i, t in enumerate(self._schedule(self.p.production_every_h)):
            events.append((t, i, "production"))
        heapq.heapify(events)
        blocked_until = self.start
        test_deployments = sorted(
            (
                d
                for d in self.s.deployments
                if d.environment.canonical == "test" and d.status == "success"
            ),
            key=lambda d: d.finished_at or self.now,
        )
        while events:
            at, _, kind = heapq.heappop(events)
            if kind == "staging":
                self._promote_to_staging(at, test_deployments)
            elif at >= blocked_until:
                blocked_until = self._promote_to_production(at, test_deployments) or blocked_until

    def _newest(
        self, deployments: list[Deployment], before: datetime, env: str
    ) -> Deployment | None:
        """The finished deployment of the newest commit that `env` has not run yet (promotion
        never goes backwards; only an intended rollback does)."""
        above = self.high_water.get(env, -1.0)
        done = [
            d
            for d in deployments
            if d.finished_at and d.finished_at <= before and self.rank.get(d.sha, -1.0) > above
        ]
        return max(done, key=lambda d: (self.rank[d.sha], d.finished_at)) if done else None

    def _promote_to_staging(self, at: datetime, test_deployments: list[Deployment]) -> None:
        candidate = self._newest(test_deployments, at, "staging")
        if candidate is None:
            return
        self._promoting("staging", candidate.sha, at, untested=False)
        self._deploy("staging", candidate.sha, self.refs["staging"], candidate.digest, at)

    def _promote_to_production(
        self, at: datetime, test_deployments: list[Deployment]
    ) -> datetime | None:
        """Deploy what is new in staging (now and then: straight from test, or rebuilt); returns
        the time until which no regular deployment happens (a failure being remedied)."""
        rng = self.rng
        current = self.current.get("production")
        staging = [
            d
            for d in self.s.deployments
            if d.environment.canonical == "staging"
            and d.status == "success"
            and d.ref == self.refs["staging"]
        ]
        candidate = self._newest(staging, at, "production")
        untested = rng.random() < self.p.untested_share
        if untested:
            candidate = self._newest(test_deployments, at, "production")
        if candidate is None or candidate.finished_at is None:
            return None
        rebuilt = not untested and rng.random() < self.p.rebuilt_share
        digest = candidate.digest
        was_tested = digest in self.ever["staging"]
        self._promoting("production", candidate.sha, at, untested=untested)
        deployment = self._deploy(
            "production",
            candidate.sha,
            self.refs["production"],
            digest,
            at,
            rebuild=rebuilt,
            untested=untested and not was_tested,
            rebuilt=rebuilt,
        )
        if deployment is None or rng.random() >= self.p.change_failure:
            return None
        return self._fail(deployment, previous=current)

    def _promoting(self, canonical: str, sha: str, at: datetime, *, untested: bool) -> None:
        """Called before `sha` is promoted to `canonical` at `at` (from test when `untested`);
        deploying from the default branch needs nothing."""

    # -- failures ----------------------------------------------------------------------------

    def _fail(self, failed: Deployment, previous: Deployment | None) -> datetime | None:
        """Make `failed` a failed change and remedy it; returns when the remedy is done."""
        rng = self.rng
        assert failed.finished_at is not None
        remedy = rng.choices(("rollback", "hotfix", "incident"), weights=(0.4, 0.3, 0.3))[0]
        if remedy == "rollback" and previous is None:
            remedy = "incident"
        with_incident = remedy == "incident" or rng.random() < 0.5
        opened = ms(failed.finished_at + timedelta(minutes=rng.uniform(10, 90)))
        done: datetime | None
        reasons: list[str] = []
        if remedy == "rollback":
            assert previous is not None
            at = max(opened, failed.finished_at) + timedelta(minutes=rng.uniform(5, 90))
            # rolling back to a hotfix deployment re-runs its hotfix ref: by definition a hotfix too
            to_hotfix = previous.ref.startswith("hotfix/")
            fix = self._deploy(
                "production",
                previous.sha,
                previous.ref,
                previous.digest,
                at,
                rollback=True,
                hotfix=to_hotfix,
            )
            done = fix.finished_at if fix else None
            reasons.extend(("rollback", "hotfix") if to_hotfix else ("rollback",))
        elif remedy == "hotfix":
            fix = self._hotfix(failed, max(opened, failed.finished_at) + timedelta(minutes=20))
            done = fix.finished_at if fix else None
            reasons.append("hotfix")
        else:
            done = ms(
                failed.finished_at
                + timedelta(hours=min(lognormal(rng, self.p.restore_h, 1.2), 120))
            )
        if with_incident and opened < self.now:
            closed = (
                done + timedelta(minutes=rng.uniform(5, 60))
                if done and remedy != "incident"
                else done
            )
            self._incident(failed, opened, closed)
            reasons.append("incident")
        failed.failed_change = tuple(sorted(reasons))
        if done is None:
            return self.now
        return max(done, opened) + timedelta(minutes=1)

    def _hotfix(self, failed: Deployment, at: datetime) -> Deployment | None:
        """A hotfix branch from the failed commit, built, then deployed to staging and production."""
        rng = self.rng
        author = rng.choice(self.team.developers)
        number = len(self.s.commits) + 1
        name = f"hotfix/{failed.iid}-{rng.choice(('timeout', 'null-check', 'config', 'rollback-guard'))}"
        sha = make_sha(f"{self.s.name}/hotfix", number)
        commit = Commit(
            sha,
            (failed.sha,),
            author,
            ms(at),
            ms(at + timedelta(minutes=2)),
            f"Hotfix for deployment {failed.iid}",
            12,
            3,
            name,
        )
        self.s.commits[sha] = commit
        self.rank[sha] = self.rank.get(failed.sha, -1.0) + 0.5
        self.s.branches[name] = Branch(name, commit.committed_at, [(commit.committed_at, sha)])
        build = self.pipelines.build(
            name, sha, author, commit.committed_at, main=False, fail=False, package=True
        )
        self.s.pipelines.append(build)
        digest = self._image(build, sha)
        finished = max(j.finished_at for j in build.jobs if j.finished_at)
        staged = self._deploy("staging", sha, name, digest, finished + timedelta(minutes=2))
        if staged is None or staged.finished_at is None:
            return None
        return self._deploy(
            "production", sha, name, digest, staged.finished_at + timedelta(minutes=10), hotfix=True
        )

    def _incident(self, failed: Deployment, opened: datetime, closed: datetime | None) -> None:
        self.issue_iid += 1
        reporter: Developer = self.rng.choice(self.team.developers)
        self.s.incidents.append(
            Incident(
                self.ids.next("issue"),
                self.issue_iid,
                f"{self.s.name}: errors after deployment {failed.iid}",
                reporter,
                opened,
                closed if closed and closed < self.now else None,
                self.rng.choice(SEVERITIES),
                failed.id,
            )
        )
