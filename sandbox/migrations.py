"""Database schema migrations (DESIGN.md section 7): some services change their database now and
then, and a `migrate-db` job applies the migration before the application is deployed, in each
environment, promoted like the application; in a few cases one skips test.

A post-pass over a generated organisation, with random streams of its own, so every other object
(commits, pipelines' jobs, app deployments, images, incidents, Jenkins builds) stays exactly as the
generator made it, ids included: the migration jobs and deployments take the instance-wide ids after
all others (in time order among themselves), and per-project deployment iids after the project's
app deployments. GitLab allocates ids in creation order, so a migration's ids are higher than those
of later objects: the simulators still list by id as GitLab does, and the collectors' cursors are
update times, not ids.

- Which services: about a third of the GitLab-built and of the Jenkins-built ones (none in `tiny`).
- Versions: the first commit brings the initial schema, and a default-branch commit introduces a
  new migration now and then (the first deployment to an environment applies what it carries); a
  commit carries the newest version introduced at or before it on the default branch's
  first-parent line (a hotfix commit: its base's). Styles alternate between the chosen services:
  numbered (`0042`), Flyway (`V42__add_index`, version `42`).
- A `migrate-db` job runs in the pipeline of an app deployment (successful or not) whose commit
  carries a version newer than the environment's; rollbacks carry older versions and migrate
  nothing. It runs in the deploy job's queue time (before the deploy job starts) and succeeds.
  GitLab: the job name carries the version (`migrate-db 0042`, `migrate-db V42__add_index`):
  neither the deployments nor the jobs API expose CI variables, so the name is where a collector
  can read it. Jenkins: a deploy job `<team>/db-migrations/deploy-<service>` (the default
  `deploy_jobs` pattern finds it, the folder name makes it kind schema) with the parameters `ENV`,
  `MIGRATION_VERSION`, `GIT_COMMIT` and `BRANCH`.
- Seeded violations: a few versions that staging applies are never applied in test (someone skipped
  the job); `Deployment.skipped_env` marks every successful schema deployment whose version never
  ran (successfully, finished before it started) in the environment before it on the promotion path.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sandbox.clock import ms
from sandbox.model import Deployment, JenkinsBuild, JenkinsJob, Job, Organisation, Service
from sandbox.pipelines import Ids

PATH = ("test", "staging", "production")
SHARE = {"tiny": 0.0, "small": 1 / 3, "demo": 1 / 3, "large": 1 / 3}
NEW_VERSION = 0.1  # share of default-branch commits that add a migration
SKIP_TEST = 0.06  # share of the versions staging applies that test never applied
JOB = "migrate-db"
FOLDER = "db-migrations"
DESCRIPTIONS = ("add_index", "add_column", "backfill", "create_table", "drop_default", "rename")


@dataclass
class _Planned:
    """A migration to add before `before` (an app deployment)."""

    service: Service
    before: Deployment
    number: int
    label: str  # the version as the collector reads it
    name: str  # the job name


def add_migrations(org: Organisation, ids: Ids) -> None:
    """Add schema migrations to a deterministic subset of the services (see the module doc)."""
    share = SHARE.get(org.size, 1 / 3)
    chosen: list[Service] = []
    for builder in ("gitlab", "jenkins"):
        services = [s for s in org.services if s.builder == builder]
        wanted = math.ceil(len(services) * share)
        pick = random.Random(f"{org.seed}/schema/{org.size}/{builder}")
        chosen += sorted(pick.sample(services, wanted), key=org.services.index)
    plans: list[list[_Planned]] = []
    seeded = False
    for i, s in enumerate(chosen):
        rng = random.Random(f"{org.seed}/schema/{s.name}")
        plan, skipped = _plan(s, rng, flyway=i % 2 == 1, force=False)
        seeded = seeded or bool(skipped)
        plans.append(plan)
    if chosen and not seeded:  # every organisation with migrations shows the violation
        for i, s in enumerate(chosen):
            rng = random.Random(f"{org.seed}/schema/{s.name}")
            plan, skipped = _plan(s, rng, flyway=i % 2 == 1, force=True)
            if skipped:
                plans[i] = plan
                break
    _materialise([p for plan in plans for p in plan], ids)
    for s in chosen:
        _mark_skips(s)
    _jenkins_jobs(org, [s for s in chosen if s.builder == "jenkins"])


def _versions(
    s: Service, rng: random.Random, flyway: bool
) -> tuple[dict[str, int], dict[int, str]]:
    """(commit -> the version number it carries, number -> version label) for default-branch
    commits."""
    number = rng.randint(1, 60)
    carried: dict[str, int] = {}
    labels: dict[int, str] = {}
    current: int | None = None
    for i, (_, sha) in enumerate(s.branches[s.default_branch].heads):
        if i == 0 or rng.random() < NEW_VERSION:  # the first commit has the schema it started with
            number += 1
            current = number
            labels[number] = f"V{number}__{rng.choice(DESCRIPTIONS)}" if flyway else f"{number:04d}"
        if current is not None:
            carried[sha] = current
    return carried, labels


def _carried(s: Service, carried: dict[str, int], sha: str) -> int | None:
    """The version a commit carries: a commit off the default branch (a hotfix) its base's."""
    seen = 0
    while sha not in carried and sha in s.commits and s.commits[sha].parents and seen < 100:
        if s.commits[sha].branch == s.default_branch:
            return None  # on the default branch before the first migration
        sha, seen = s.commits[sha].parents[0], seen + 1
    return carried.get(sha)


def _plan(
    s: Service, rng: random.Random, flyway: bool, force: bool
) -> tuple[list[_Planned], set[int]]:
    """The migrations of one service, and the versions test skipped."""
    carried, labels = _versions(s, rng, flyway)
    by_env: dict[str, list[Deployment]] = {env: [] for env in PATH}
    for d in s.deployments:
        # a second production region (sandbox.regions) applies no migrations of its own
        if (
            d.kind == "app"
            and d.status in ("success", "failed")
            and d.environment.canonical in by_env
        ):
            by_env[d.environment.canonical].append(d)

    def walk(env: str, skip: set[int]) -> list[_Planned]:
        applied = -1
        out = []
        for d in sorted(by_env[env], key=lambda d: (d.job.created_at, d.id)):
            number = _carried(s, carried, d.sha)
            if number is None or number <= applied or number in skip:
                continue
            label = labels[number]
            out.append(_Planned(s, d, number, label, f"{JOB} {label}"))
            applied = number
        return out

    staging = walk("staging", set())
    candidates = [p.number for p in staging]
    skip = {n for n in candidates if rng.random() < SKIP_TEST}
    if force and candidates and not skip:
        skip = {candidates[len(candidates) // 2]}
    return walk("test", skip) + staging + walk("production", set()), skip


def _materialise(plans: list[_Planned], ids: Ids) -> None:
    """Jobs and deployments for the planned migrations, ids in time order."""
    plans.sort(key=lambda p: (p.before.job.created_at, p.before.id))
    iids = {id(p.service): max((d.iid for d in p.service.deployments), default=0) for p in plans}
    for p in plans:
        app = p.before
        rng = random.Random(f"{app.id}/{p.label}")
        created = app.job.created_at
        started = ms(created + timedelta(seconds=rng.uniform(2, 8)))
        finished = ms(started + timedelta(seconds=rng.uniform(8, 20)))
        assert app.job.started_at is None or finished < app.job.started_at
        job = Job(
            ids.next("job"),
            p.name,
            "migrate",
            "success",
            created,
            started,
            finished,
            environment=app.job.environment,
        )
        jobs = app.pipeline.jobs
        jobs.insert(jobs.index(app.job), job)
        iids[id(p.service)] += 1
        p.service.deployments.append(
            Deployment(
                ids.next("deployment"),
                iids[id(p.service)],
                app.environment,
                app.sha,
                app.ref,
                "success",
                created,
                job,
                app.pipeline,
                app.user,
                None,
                kind="schema",
                schema_version=p.label.removeprefix("V").split("__")[0],
            )
        )


def _mark_skips(s: Service) -> None:
    """`skipped_env`: the version never ran in the environment before on the promotion path."""
    ran: dict[str, list[tuple[str, datetime]]] = {env: [] for env in PATH}
    schema = [d for d in s.deployments if d.kind == "schema" and d.status == "success"]
    for d in schema:
        assert d.finished_at is not None and d.schema_version is not None
        ran[d.environment.canonical].append((d.schema_version, d.finished_at))
    for d in schema:
        env = d.environment.canonical
        if env == PATH[0]:
            continue
        upstream = PATH[PATH.index(env) - 1]
        start = d.job.started_at or d.created_at
        d.skipped_env = not any(v == d.schema_version and f <= start for v, f in ran[upstream])


def _jenkins_jobs(org: Organisation, services: list[Service]) -> None:
    """Jenkins-built services run their migrations as builds of their own deploy job."""
    folders = {item.path: item for item in org.jenkins if item.kind == "folder"}
    for s in services:
        team = folders.get((s.team,))
        if team is None:
            team = JenkinsJob((s.team,), "folder")
            folders[team.path] = team
            org.jenkins.append(team)
        folder = JenkinsJob((s.team, FOLDER), "folder")
        name = s.deployed_as
        job = JenkinsJob((s.team, FOLDER, f"deploy-{name}"), "freestyle", name, deploy=True)
        folder.children.append(job)
        team.children.append(folder)
        team.children.sort(key=lambda j: j.path)
        for d in s.deployments:
            if d.kind != "schema":
                continue
            assert d.schema_version is not None
            job.builds.append(
                JenkinsBuild(
                    0,
                    d.job.created_at,
                    [d.job],
                    "SUCCESS",
                    d.sha,
                    d.ref,
                    "user",
                    user=d.user,
                    parameters={
                        "ENV": d.environment.name,
                        "MIGRATION_VERSION": d.schema_version,
                        "GIT_COMMIT": d.sha,
                        "BRANCH": d.ref,
                    },
                    pipeline=d.pipeline,
                    deployment=d,
                )
            )
        job.builds.sort(key=lambda b: (b.started_at, b.stages[0].id))
        for number, b in enumerate(job.builds, 1):
            b.number = number
    org.jenkins.sort(key=lambda j: j.path)
