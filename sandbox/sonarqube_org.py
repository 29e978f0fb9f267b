"""The SonarQube side of a generated organisation: analyses of built commits with their quality
gates, and the ground truth of the quality-gate policies.

Built from an `Organisation` after the fact with a random stream of its own (`Random(seed *
SALT)`), so generating it changes no other part of the sandbox or its truth. What it seeds:
- an analysis for most builds (pipelines on a branch, 90 %), at the build's finish, on its branch;
- a few red gates (ERROR) on commits later deployed to production, analysed on the default branch
  before the deployment started;
- one commit whose only analysis was made after its production deployment (and is red): it does
  not count for that deployment (the policy's "missing", not "failed");
- one project on a key that is not its repository's path (`LEGACY_PREFIX` + name), mapped by
  config (`SonarOrg.repositories`);
- one analysis without a revision (a manual scan): the collector keeps it and counts it.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sandbox.model import Deployment, Organisation, Service

SALT = 7919  # the SonarQube stream's own seed: seed * SALT
LEGACY_PREFIX = "legacy-"
ANALYSED = 0.9  # share of builds analysed
RED_DEPLOYED = 3  # production deployments whose commit's gate was red before they started
PASSING = [
    {"metricKey": "new_reliability_rating", "comparator": "GT", "errorThreshold": "1"},
    {"metricKey": "new_coverage", "comparator": "LT", "errorThreshold": "80"},
    {"metricKey": "new_duplicated_lines_density", "comparator": "GT", "errorThreshold": "3"},
]


@dataclass
class Analysis:
    key: str
    project: str
    branch: str
    revision: str | None
    date: datetime  # whole seconds, as SonarQube dates are
    version: str
    status: str  # OK | ERROR | WARN
    conditions: list[dict[str, str]]
    task_id: str


@dataclass
class Project:
    key: str
    name: str
    repo_path: str
    default_branch: str
    analyses: list[Analysis] = field(default_factory=list)  # oldest first

    def branches(self) -> list[str]:
        """The branches with analyses, the main one first."""
        names = sorted({a.branch for a in self.analyses} - {self.default_branch})
        return [self.default_branch, *names]


@dataclass
class SonarOrg:
    projects: list[Project]
    repositories: dict[str, str]  # project key -> repository path, for keys that are not paths
    red_deployed: set[int] = field(default_factory=set)  # seeded: deployment ids
    late_analysed: int | None = None  # the deployment whose commit was analysed only after it

    def project(self, key: str) -> Project:
        """The project with key `key`."""
        return next(p for p in self.projects if p.key == key)

    def analyses(self) -> list[Analysis]:
        """Every analysis, by project and date."""
        return [a for p in self.projects for a in p.analyses]

    def analysis(self, key: str) -> Analysis:
        """The analysis with key `key`."""
        return next(a for a in self.analyses() if a.key == key)


def conditions(status: str, rnd: random.Random) -> list[dict[str, str]]:
    """A gate's conditions: all OK, or coverage (and maybe duplication) failing."""
    out = []
    for c in PASSING:
        actual = {"new_reliability_rating": "1", "new_coverage": f"{rnd.uniform(80, 99):.1f}",
                  "new_duplicated_lines_density": f"{rnd.uniform(0, 3):.1f}"}[c["metricKey"]]  # fmt: skip
        out.append({"status": "OK", **c, "actualValue": actual})
    if status == "ERROR":
        out[1] |= {"status": "ERROR", "actualValue": f"{rnd.uniform(20, 79):.1f}"}
        if rnd.random() < 0.5:
            out[2] |= {"status": "ERROR", "actualValue": f"{rnd.uniform(4, 30):.1f}"}
    return out


def _seconds(at: datetime) -> datetime:
    return at.replace(microsecond=0)


def build_sonar(org: Organisation) -> SonarOrg:
    """The organisation's SonarQube server: one project per service (see the module docstring)."""
    rnd = random.Random(org.seed * SALT)
    services = sorted(org.services, key=lambda s: s.name)
    legacy = services[1 % len(services)].name if services else None
    projects, repositories = [], {}
    counter = iter(range(1, 10**9))
    for s in services:
        key = f"{LEGACY_PREFIX}{s.name}" if s.name == legacy else s.path
        if key != s.path:
            repositories[key] = s.path
        project = Project(key, s.name, s.path, s.default_branch)
        taken: set[datetime] = set()
        for p in s.pipelines:
            if p.tag or p.finished_at is None or rnd.random() >= ANALYSED:
                continue
            status = "ERROR" if p.ref != s.default_branch and rnd.random() < 0.05 else "OK"
            _add(project, p.ref, p.sha, p.finished_at, status, rnd, counter, taken)
        projects.append(project)
    sonar = SonarOrg(projects, repositories)
    _seed_red(sonar, org, rnd, counter)
    _seed_unrevisioned(sonar, rnd, counter)
    for project in sonar.projects:
        project.analyses.sort(key=lambda a: a.date)
    return sonar


def _add(
    project: Project,
    branch: str,
    sha: str | None,
    at: datetime,
    status: str,
    rnd: random.Random,
    counter: Iterator[int],
    taken: set[datetime],
) -> Analysis:
    date = _seconds(at)
    while date in taken:  # one analysis of a project per second
        date += timedelta(seconds=1)
    taken.add(date)
    n = next(counter)
    analysis = Analysis(
        f"AY{n:08d}", project.key, branch, sha, date, f"1.{n % 50}", status,
        conditions(status, rnd), f"AT{n:08d}",
    )  # fmt: skip
    project.analyses.append(analysis)
    return analysis


def production_deployments(org: Organisation) -> list[tuple[Service, Deployment]]:
    """Successful application deployments to a production-tier environment, oldest first."""
    found = [
        (s, d)
        for s in org.services
        for d in s.deployments
        if d.kind == "app" and d.status == "success" and d.environment.tier == "production"
    ]
    return sorted(found, key=lambda sd: (sd[1].created_at, sd[1].id))


def start_of(d: Deployment) -> datetime:
    """When a deployment started (what the warehouse reads: the job's start, else its creation)."""
    return d.job.started_at or d.created_at


def _seed_red(
    sonar: SonarOrg, org: Organisation, rnd: random.Random, counter: Iterator[int]
) -> None:
    deployed = production_deployments(org)
    if not deployed:
        return
    shas = [d.sha for _, d in deployed]
    picked = rnd.sample(range(len(deployed)), min(RED_DEPLOYED + 1, len(deployed)))
    late_s, late_d = deployed[picked[0]]
    if shas.count(late_d.sha) == 1:  # its commit went to production once: only after it
        project = sonar.project(_key(sonar, late_s))
        project.analyses = [a for a in project.analyses if a.revision != late_d.sha]
        taken = {a.date for a in project.analyses}
        when = (late_d.finished_at or start_of(late_d)) + timedelta(hours=2)
        _add(project, late_s.default_branch, late_d.sha, when, "ERROR", rnd, counter, taken)
        sonar.late_analysed = late_d.id
    for index in picked[1:]:
        s, d = deployed[index]
        project = sonar.project(_key(sonar, s))
        start = start_of(d)
        before = [
            a
            for a in project.analyses
            if a.revision == d.sha and a.branch == s.default_branch and a.date < start
        ]
        if not before:
            taken = {a.date for a in project.analyses}
            when = start - timedelta(minutes=30)
            before = [_add(project, s.default_branch, d.sha, when, "OK", rnd, counter, taken)]
        for a in before:
            a.status, a.conditions = "ERROR", conditions("ERROR", rnd)
        sonar.red_deployed.add(d.id)


def _seed_unrevisioned(sonar: SonarOrg, rnd: random.Random, counter: Iterator[int]) -> None:
    project = sonar.projects[0] if sonar.projects else None
    if project is None or not project.analyses:
        return
    taken = {a.date for a in project.analyses}
    when = project.analyses[0].date - timedelta(days=1)
    _add(project, project.default_branch, None, when, "OK", rnd, counter, taken)


def _key(sonar: SonarOrg, s: Service) -> str:
    return (
        next(key for key, path in sonar.repositories.items() if path == s.path)
        if (s.path in sonar.repositories.values())
        else s.path
    )


# -- ground truth -------------------------------------------------------------------------------


def quality_gate_failed(
    org: Organisation,
    sonar: SonarOrg,
    branches: Iterable[str] = ("main", "master", "release/*"),
    ignored: Iterable[str] = (),
) -> dict[int, str]:
    """The policy, reimplemented over the generated objects: successful production deployments
    -> the analysis key whose failed gate denies them (the latest analysis of the deployed commit
    on an allowed branch, made before the deployment started, failed on a condition not ignored;
    WARN passes)."""
    patterns, skip = list(branches), set(ignored)
    by_commit: dict[str, list[Analysis]] = {}
    for a in sonar.analyses():
        if a.revision and any(fnmatch.fnmatchcase(a.branch, p) for p in patterns):
            by_commit.setdefault(a.revision, []).append(a)
    found = {}
    for _, d in production_deployments(org):
        start = start_of(d)
        counted = [a for a in by_commit.get(d.sha, []) if a.date < start]
        if not counted:
            continue
        latest = max(counted, key=lambda a: a.date)
        failing = {c["metricKey"] for c in latest.conditions if c["status"] == "ERROR"}
        if latest.status == "ERROR" and failing - skip:
            found[d.id] = latest.key
    return found


def quality_gate_missing(
    org: Organisation, sonar: SonarOrg, branches: Iterable[str] = ("main", "master", "release/*")
) -> set[int]:
    """Successful production deployments whose commit had no analysis on an allowed branch made
    before the deployment started."""
    patterns = list(branches)
    found = set()
    for _, d in production_deployments(org):
        start = start_of(d)
        if not any(
            a.revision == d.sha
            and a.date < start
            and any(fnmatch.fnmatchcase(a.branch, p) for p in patterns)
            for a in sonar.analyses()
        ):
            found.add(d.id)
    return found
