"""The generated delivery organisation: plain objects the generator builds and the simulators serve.

Ids follow GitLab's: projects, merge requests, pipelines, jobs, deployments, environments, notes and
issues have instance-wide ids; merge requests, pipelines, deployments and issues also have a
per-project `iid`. Times are aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class Developer:
    id: int
    username: str
    name: str
    email: str
    team: str


@dataclass(slots=True)
class Team:
    name: str
    profile: str  # elite | high | medium | low: how often it ships and how often that fails
    timezone: str
    env_style: str  # plain | ctrip | short: how its environments are named
    developers: list[Developer] = field(default_factory=list)
    services: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    author: Developer
    authored_at: datetime
    committed_at: datetime
    title: str
    additions: int
    deletions: int
    branch: str  # where it was first pushed


@dataclass(slots=True)
class Branch:
    name: str
    created_at: datetime
    heads: list[tuple[datetime, str]]  # (pushed at, sha): the branch head over time
    protected: bool = False
    merged_at: datetime | None = None  # when its merge request merged it
    deleted_at: datetime | None = None  # GitLab deleted it on merge ("delete source branch")

    @property
    def head(self) -> str:
        return self.heads[-1][1]


@dataclass(slots=True)
class Note:
    id: int
    author: Developer
    created_at: datetime
    body: str
    system: bool = False


@dataclass(slots=True)
class MergeRequest:
    id: int
    iid: int
    title: str
    author: Developer
    source_branch: str
    target_branch: str
    created_at: datetime
    first_commit_at: datetime
    commits: list[str]  # the branch's commits, oldest first
    state: str = "opened"  # opened | merged | closed
    updated_at: datetime | None = None
    merged_at: datetime | None = None
    closed_at: datetime | None = None
    merged_by: Developer | None = None
    squash: bool = False
    merge_commit_sha: str | None = None
    squash_commit_sha: str | None = None
    approvers: list[Developer] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    first_review_at: datetime | None = None

    @property
    def head_sha(self) -> str:
        return self.commits[-1]


@dataclass(slots=True)
class Job:
    id: int
    name: str
    stage: str
    status: str  # GitLab job status
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    allow_failure: bool = False
    environment: str | None = None  # raw environment name for deploy jobs
    retried_at: datetime | None = None  # when a retry replaced it (GitLab marks it `retried`)

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def queued_duration(self) -> float | None:
        if self.started_at:
            return (self.started_at - self.created_at).total_seconds()
        return None


@dataclass(slots=True)
class TestSuite:
    name: str
    total: int
    failed: int
    skipped: int
    errors: int
    seconds: float


@dataclass(slots=True)
class Pipeline:
    id: int
    iid: int
    ref: str
    sha: str
    source: str  # push | merge_request_event | web | schedule
    user: Developer
    created_at: datetime
    jobs: list[Job] = field(default_factory=list)
    test_suites: list[TestSuite] = field(default_factory=list)
    tag: bool = False

    @property
    def latest_jobs(self) -> list[Job]:
        """Its jobs but the retried ones: what its status and duration follow, as in GitLab."""
        return [j for j in self.jobs if j.retried_at is None]

    @property
    def started_at(self) -> datetime | None:
        starts = [j.started_at for j in self.jobs if j.started_at]
        return min(starts) if starts else None

    @property
    def finished_at(self) -> datetime | None:
        if self.status in ("running", "pending", "created"):
            return None
        ends = [j.finished_at for j in self.jobs if j.finished_at]
        return max(ends) if ends else None

    @property
    def updated_at(self) -> datetime:
        return self.finished_at or self.started_at or self.created_at

    @property
    def status(self) -> str:
        statuses = [
            j.status for j in self.latest_jobs if not (j.allow_failure and j.status == "failed")
        ]
        for status in ("running", "pending", "created"):
            if status in statuses:
                return "running" if status != "created" else "pending"
        if "failed" in statuses:
            return "failed"
        if "canceled" in statuses:
            return "canceled"
        if statuses and all(s in ("skipped", "manual") for s in statuses):
            return "skipped"
        return "success"

    @property
    def duration(self) -> float | None:
        runs = [j.duration for j in self.latest_jobs if j.duration is not None]
        return sum(runs) if runs and self.finished_at else None

    @property
    def queued_duration(self) -> float | None:
        started = self.started_at
        return (started - self.created_at).total_seconds() if started else None


@dataclass(slots=True)
class Image:
    digest: str
    repository: str
    revision: str  # the commit it was built from
    pushed_at: datetime
    pipeline_id: int
    tag: str


@dataclass(slots=True)
class Environment:
    id: int
    name: str  # as the project names it (FAT, uat, production, ...)
    canonical: str  # test | staging | production
    tier: str  # what GitLab reports
    created_at: datetime


@dataclass(slots=True)
class Deployment:
    id: int
    iid: int
    environment: Environment
    sha: str
    ref: str
    status: str  # GitLab deployment status
    created_at: datetime
    job: Job
    pipeline: Pipeline
    user: Developer
    digest: str | None  # the image it rolled out (ground truth)
    kind: str = "app"  # app | schema (a database migration: sandbox.migrations)
    schema_version: str | None = None  # kind schema: the migration version, as a collector reads it
    # ground truth, for tests
    rollback: bool = False
    hotfix: bool = False
    untested: bool = False
    rebuilt: bool = False
    failed_change: tuple[str, ...] = ()  # intended failure reasons: incident, rollback, hotfix
    skipped_env: bool = False  # kind schema: its version never ran in the upstream environment

    @property
    def finished_at(self) -> datetime | None:
        return self.job.finished_at

    @property
    def updated_at(self) -> datetime:
        return self.job.finished_at or self.job.started_at or self.created_at


@dataclass(slots=True)
class Incident:
    id: int
    iid: int
    title: str
    author: Developer
    created_at: datetime
    closed_at: datetime | None
    severity: str
    deployment_id: int | None  # the deployment that caused it (ground truth)
    tracked_in: str = ""  # its description's line naming its tracker records (`sandbox.trackers`)

    @property
    def updated_at(self) -> datetime:
        return max(self.closed_at or self.created_at, self.created_at)


@dataclass(slots=True)
class Service:
    name: str
    team: str
    project_id: int
    path: str  # group/team/name
    builder: str = "gitlab"  # gitlab | jenkins
    merge_method: str = "merge"  # merge | squash | mixed
    default_branch: str = "main"
    flow: str = "trunk"  # branch strategy (ground truth): trunk | git-flow | gitlab-flow
    deploy_name: str | None = (
        None  # the name its deploy jobs and workloads know it by, if not its own
    )
    created_at: datetime | None = None
    commits: dict[str, Commit] = field(default_factory=dict)  # in push order
    branches: dict[str, Branch] = field(default_factory=dict)
    merge_requests: list[MergeRequest] = field(default_factory=list)
    pipelines: list[Pipeline] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    tag_history: list[tuple[str, str, datetime]] = field(default_factory=list)  # (tag, digest, at)
    environments: dict[str, Environment] = field(default_factory=dict)  # by canonical name
    deployments: list[Deployment] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)

    @property
    def deployed_as(self) -> str:
        """The service name its deployments (deploy jobs, cluster workloads) give."""
        return self.deploy_name or self.name

    @property
    def image_repository(self) -> str:
        return f"registry.sandbox.test/{self.path}"


@dataclass(slots=True)
class JenkinsBuild:
    """One build of a Jenkins job: a build pipeline's stages, or a deployment (its jobs)."""

    number: int
    queued_at: datetime
    stages: list[Job]  # the build runs from the first stage's start to the last one's finish
    result: str  # once finished: SUCCESS, FAILURE, UNSTABLE or ABORTED
    sha: str
    ref: str
    cause: str  # branch (multibranch event) | scm | user | upstream
    user: Developer | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    checkouts: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # BuildData: (repo path, sha, branch)
    changes: list[str] = field(default_factory=list)  # the commits of its changeSet
    test_suites: list[TestSuite] = field(default_factory=list)
    upstream: tuple[str, int] | None = None  # (job full name, build number) that triggered it
    pipeline: Pipeline | None = None  # what it builds or deploys (ground truth)
    deployment: Deployment | None = None
    # when a declarative pipeline set its result while still building (post steps run on until
    # its finish); None: its result shows at its finish
    result_at: datetime | None = None
    # a Subversion checkout (sandbox.svn_jenkins): the module URL built at revision `sha` (`r<n>`),
    # and the changelog's revisions since the previous build: (revision, author, date, message)
    svn_module: str | None = None
    svn_changes: list[tuple[int, str, datetime, str]] = field(default_factory=list)

    @property
    def started_at(self) -> datetime:
        return min(j.started_at for j in self.stages if j.started_at)

    @property
    def finished_at(self) -> datetime:
        return max(j.finished_at for j in self.stages if j.finished_at)


@dataclass(slots=True)
class JenkinsJob:
    """A Jenkins item: a folder, a multibranch project, a pipeline or a freestyle job."""

    path: tuple[str, ...]  # names from the root; a multibranch branch job's name is encoded (%2F)
    kind: str  # folder | multibranch | pipeline | freestyle
    service: str | None = None
    display_name: str | None = None
    remote: str = "ssh"  # how its builds' BuildData name repositories: ssh | http
    deploy: bool = False
    branch: bool = False  # a multibranch project's branch job: it appears with the branch
    children: list[JenkinsJob] = field(default_factory=list)
    builds: list[JenkinsBuild] = field(default_factory=list)  # by number

    @property
    def full_name(self) -> str:
        return "/".join(self.path)

    @property
    def created_at(self) -> datetime | None:
        """When a branch job appeared (its first push); None: there from the start."""
        if self.branch and self.builds:
            return min(b.queued_at for b in self.builds)
        return None


@dataclass
class Organisation:
    seed: int
    size: str
    now: datetime
    start: datetime
    root_group: str
    teams: list[Team]
    services: list[Service]
    developers: list[Developer]
    jenkins: list[JenkinsJob] = field(default_factory=list)  # the Jenkins controller's top items
    trackers: Any = None  # sandbox.trackers.Trackers: Jira, Zentao and PagerDuty (add_trackers)

    def service(self, name: str) -> Service:
        """The service named `name` (its own name, or the one its deployments give it)."""
        for service in self.services:
            if name in (service.name, service.deploy_name):
                return service
        raise KeyError(name)
