"""Jenkins JSON API payloads for the generated organisation, as they looked at an instant `at`.

Objects are `Exported` beans whose properties may be computed lazily (`sandbox.jenkins_api.export`
renders them as Stapler does, with or without `tree`). Shapes follow Jenkins core, the git plugin
(BuildData, GitChangeSet), the JUnit plugin (TestResult) and the pipeline stage view
(`wfapi/describe`); ../shared/fixtures/jenkins-rest holds recorded samples. What a build shows
at an instant (running, its stages, its test report) is `sandbox.jenkins_org`'s to say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sandbox.jenkins_org import (
    building,
    millis,
    published_suites,
    shown_result,
    stage_status,
    visible_builds,
)
from sandbox.model import JenkinsBuild, JenkinsJob, Service

BUILDS_CAP = 100  # Job.getBuilds() as exported: the newest 100 (allBuilds has them all)

JOB_CLASSES = {
    "folder": "com.cloudbees.hudson.plugins.folder.Folder",
    "multibranch": "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
    "pipeline": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
    "freestyle": "hudson.model.FreeStyleProject",
}
BUILD_CLASSES = {
    "pipeline": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
    "freestyle": "hudson.model.FreeStyleBuild",
}


@dataclass(slots=True)
class Exported:
    """A bean as Stapler exports it: `_class`, properties (values, beans, lists, or callables
    computing them), the properties shown when it is nested in an answer without `tree` (None:
    all), properties shown only when a `tree` asks, and a key for injected corruption."""

    cls: str
    fields: dict[str, Any]
    summary: tuple[str, ...] | None = None
    hidden: frozenset[str] = frozenset()
    key: Any = None


# -- URLs ---------------------------------------------------------------------------------------


def job_url(base: str, job: JenkinsJob) -> str:
    """`<base>/job/a/job/b/`: every name percent-encoded once more (`feature%2Fx` -> `%252F`)."""
    return base + "/" + "".join(f"job/{quote(name, safe='')}/" for name in job.path)


def remote_url(path: str, form: str, gitlab_url: str | None) -> str:
    """A repository as git names it: GitLab's http_url_to_repo, or its ssh URL."""
    if form == "http" and gitlab_url:
        return f"{gitlab_url}/{path}.git"
    return f"git@sandbox.test:{path}.git"


# -- beans --------------------------------------------------------------------------------------


@dataclass
class Renderer:
    """Builds beans for one request: the base URL, the instant and where GitLab is."""

    base: str
    at: datetime
    gitlab_url: str | None
    services: dict[str, Service]
    cache: dict[Any, Any] = field(default_factory=dict)

    def root(self, items: list[JenkinsJob]) -> Exported:
        base = self.base
        return Exported(
            "hudson.model.Hudson",
            {
                "assignedLabels": [{"name": "built-in"}],
                "mode": "NORMAL",
                "nodeDescription": "the Jenkins controller's built-in node",
                "nodeName": "",
                "numExecutors": 0,
                "description": None,
                "jobs": lambda: [self.job(j) for j in items if self.exists(j)],
                "overallLoad": {},
                "primaryView": {"_class": "hudson.model.AllView", "name": "all", "url": base + "/"},
                "quietingDown": False,
                "slaveAgentPort": -1,
                "unlabeledLoad": {"_class": "jenkins.model.UnlabeledLoadStatistics"},
                "url": base + "/",
                "useCrumbs": True,
                "useSecurity": True,
                "views": [{"_class": "hudson.model.AllView", "name": "all", "url": base + "/"}],
            },
        )

    def exists(self, job: JenkinsJob) -> bool:
        created = job.created_at
        return created is None or created <= self.at

    def job(self, job: JenkinsJob) -> Exported:
        url = job_url(self.base, job)
        name = job.path[-1]
        display = job.display_name or name
        common: dict[str, Any] = {
            "actions": [{}, {"_class": "com.cloudbees.plugins.credentials.ViewCredentialsAction"}],
            "description": "" if job.kind != "folder" else None,
            "displayName": display,
            "displayNameOrNull": job.display_name,
            "fullDisplayName": " » ".join([*job.path[:-1], display]),
            "fullName": job.full_name,
            "name": name,
            "url": url,
        }
        if job.kind in ("folder", "multibranch"):
            common.update(
                healthReport=[],
                jobs=lambda: [self.job(c) for c in job.children if self.exists(c)],
                primaryView={"_class": "hudson.model.AllView", "name": "All", "url": url},
                views=[{"_class": "hudson.model.AllView", "name": "All", "url": url}],
            )
            return Exported(JOB_CLASSES[job.kind], common, summary=("name", "url"))
        return Exported(
            JOB_CLASSES[job.kind],
            common | self._buildable(job),
            summary=("name", "url", "color"),
            hidden=frozenset({"allBuilds"}),
        )

    def _buildable(self, job: JenkinsJob) -> dict[str, Any]:
        builds = visible_builds(job, self.at)
        newest_first = builds[::-1]

        def last(test: Callable[[JenkinsBuild], bool]) -> Exported | None:
            found = next((b for b in newest_first if test(b)), None)
            return self.build(job, found) if found else None

        def finished(b: JenkinsBuild) -> bool:
            return not building(b, self.at)

        def result(*results: str) -> Callable[[JenkinsBuild], bool]:
            return lambda b: finished(b) and b.result in results

        fields: dict[str, Any] = {
            "buildable": True,
            "builds": lambda: [self.build(job, b) for b in newest_first[:BUILDS_CAP]],
            "allBuilds": lambda: [self.build(job, b) for b in newest_first],
            "color": self._color(newest_first[0] if newest_first else None),
            "firstBuild": lambda: self.build(job, builds[0]) if builds else None,
            "healthReport": [],
            "inQueue": False,
            "keepDependencies": False,
            "lastBuild": lambda: self.build(job, builds[-1]) if builds else None,
            "lastCompletedBuild": lambda: last(finished),
            "lastFailedBuild": lambda: last(result("FAILURE")),
            "lastStableBuild": lambda: last(result("SUCCESS")),
            "lastSuccessfulBuild": lambda: last(result("SUCCESS", "UNSTABLE")),
            "lastUnstableBuild": lambda: last(result("UNSTABLE")),
            "lastUnsuccessfulBuild": lambda: last(result("FAILURE", "UNSTABLE", "ABORTED")),
            "nextBuildNumber": len(builds) + 1,
            "property": [],
            "queueItem": None,
            "concurrentBuild": job.kind == "pipeline",
        }
        if job.kind == "pipeline":
            fields["resumeBlocked"] = False
        else:
            fields.update(
                disabled=False,
                downstreamProjects=[],
                upstreamProjects=[],
                scm={"_class": "hudson.plugins.git.GitSCM"},
            )
        return fields

    def _color(self, newest: JenkinsBuild | None) -> str:
        if newest is None:
            return "notbuilt"
        if building(newest, self.at):
            return "blue_anime"
        return {"SUCCESS": "blue", "UNSTABLE": "yellow", "ABORTED": "aborted"}.get(
            newest.result, "red"
        )

    def build(self, job: JenkinsJob, b: JenkinsBuild) -> Exported:
        key = (job.full_name, b.number)
        cached = self.cache.get(key)
        if cached is None:
            cached = self.cache[key] = self._build(job, b)
        return cached  # type: ignore[no-any-return]

    def _build(self, job: JenkinsJob, b: JenkinsBuild) -> Exported:
        url = f"{job_url(self.base, job)}{b.number}/"
        running = building(b, self.at)
        start = millis(b.started_at)
        duration = 0 if running else millis(b.finished_at) - start
        fields: dict[str, Any] = {
            "actions": lambda: actions(self, job, b),
            "artifacts": [],
            "building": running,
            "description": None,
            "displayName": f"#{b.number}",
            "duration": duration,
            "estimatedDuration": millis(b.finished_at) - start,
            "executor": {} if running else None,
            "fullDisplayName": f"{' » '.join(job.path)} #{b.number}",
            "id": str(b.number),
            "keepLog": False,
            "number": b.number,
            "queueId": b.stages[0].id,
            "result": shown_result(b, self.at),
            "timestamp": start,
            "url": url,
            "changeSets": lambda: change_sets(self, job, b),
            "culprits": [],
        }
        if job.kind == "pipeline":
            fields["inProgress"] = running
        else:
            fields["builtOn"] = ""
            fields["changeSet"] = lambda: next(iter(change_sets(self, job, b)), None)
        key = (job.full_name, b.number)
        return Exported(BUILD_CLASSES[job.kind], fields, summary=("number", "url"), key=key)

    def describe(self, job: JenkinsJob, b: JenkinsBuild) -> dict[str, Any]:
        """`wfapi/describe` of a pipeline build: its stages as the stage view shows them."""
        href = "/" + job_url("", job).lstrip("/") + f"{b.number}"
        running = building(b, self.at)
        start, end = millis(b.started_at), millis(min(b.finished_at, self.at))
        stages, previous = [], start
        for i, j in enumerate(b.stages):
            status = stage_status(b, j, self.at)
            if status is None:
                continue
            node = str(6 + 6 * i)
            began = millis(j.started_at) if j.started_at else previous  # skipped: when passed
            ended = millis(min(j.finished_at, self.at)) if j.finished_at else began
            previous = ended
            stages.append(
                {
                    "_links": {"self": {"href": f"{href}/execution/node/{node}/wfapi/describe"}},
                    "id": node,
                    "name": j.name.capitalize(),
                    "execNode": "",
                    "status": status,
                    "startTimeMillis": began,
                    "durationMillis": ended - began,
                    "pauseDurationMillis": 0,
                }
            )
        result = "IN_PROGRESS" if running else {"FAILURE": "FAILED"}.get(b.result, b.result)
        return {
            "_links": {"self": {"href": f"{href}/wfapi/describe"}},
            "id": str(b.number),
            "name": f"#{b.number}",
            "status": result,
            "startTimeMillis": start,
            "endTimeMillis": end,
            "durationMillis": end - start,
            "queueDurationMillis": start - millis(b.queued_at),
            "pauseDurationMillis": 0,
            "stages": stages,
        }


# -- build actions and change sets ------------------------------------------------------------


def actions(r: Renderer, job: JenkinsJob, b: JenkinsBuild) -> list[Any]:
    """A build's actions: parameters, causes, git BuildData, queue time, test results, and the
    actions that export nothing (`{}`), as Jenkins lists them."""
    out: list[Any] = []
    if b.parameters:
        values = [
            Exported("hudson.model.StringParameterValue", {"name": k, "value": v})
            for k, v in b.parameters.items()
        ]
        out.append(Exported("hudson.model.ParametersAction", {"parameters": values}))
    out.append(Exported("hudson.model.CauseAction", {"causes": [_cause(job, b)]}))
    if job.kind == "pipeline":
        out.append(Exported("org.jenkinsci.plugins.workflow.libs.LibrariesAction", {}))
    out.extend(_build_data(r, job, b, *checkout) for checkout in b.checkouts)
    out.append({})
    out.append(_time_in_queue(r, b))
    suites = published_suites(b, r.at)
    if suites:
        failed, skipped = sum(t.failed for t in suites), sum(t.skipped for t in suites)
        counts = {"failCount": failed, "skipCount": skipped}
        counts["totalCount"] = sum(t.total for t in suites)
        out.append(
            Exported("hudson.tasks.junit.TestResultAction", {**counts, "urlName": "testReport"})
        )
    out.append(Exported("org.jenkinsci.plugins.displayurlapi.actions.RunDisplayAction", {}))
    if job.kind == "pipeline":
        out.append(Exported("org.jenkinsci.plugins.workflow.job.views.FlowGraphAction", {}))
    return out


def _cause(job: JenkinsJob, b: JenkinsBuild) -> Exported:
    if b.cause == "user" and b.user is not None:
        return Exported(
            "hudson.model.Cause$UserIdCause",
            {
                "shortDescription": f"Started by user {b.user.name}",
                "userId": b.user.username,
                "userName": b.user.name,
            },
        )
    if b.cause == "upstream" and b.upstream is not None:
        project, number = b.upstream
        url = "".join(f"job/{quote(name, safe='')}/" for name in project.split("/"))
        return Exported(
            "hudson.model.Cause$UpstreamCause",
            {
                "shortDescription": f'Started by upstream project "{project}" build number {number}',
                "upstreamBuild": number,
                "upstreamProject": project,
                "upstreamUrl": url,
            },
        )
    if b.cause == "branch" and b.number == 1:
        return Exported(
            "jenkins.branch.BranchIndexingCause", {"shortDescription": "Branch indexing"}
        )
    if b.cause == "branch":
        return Exported(
            "jenkins.branch.BranchEventCause",
            {"shortDescription": f"Push event to branch {b.ref}"},
        )
    return Exported(
        "hudson.triggers.SCMTrigger$SCMTriggerCause",
        {"shortDescription": "Started by an SCM change"},
    )


def _build_data(
    r: Renderer, job: JenkinsJob, b: JenkinsBuild, path: str, sha: str, branch: str
) -> Exported:
    """The git plugin's BuildData of one checkout."""

    def revision() -> Exported:
        head = Exported("hudson.plugins.git.Branch", {"SHA1": sha, "name": branch})
        return Exported("hudson.plugins.git.Revision", {"SHA1": sha, "branch": [head]})

    marked = {"SHA1": sha, "branch": [{"SHA1": sha, "name": branch}]}
    built = {
        "_class": "hudson.plugins.git.util.Build",
        "buildNumber": b.number,
        "buildResult": None,
        "marked": marked,
        "revision": marked,
    }
    return Exported(
        "hudson.plugins.git.util.BuildData",
        {
            "buildsByBranchName": {branch: built},
            "lastBuiltRevision": revision,
            "remoteUrls": [remote_url(path, job.remote, r.gitlab_url)],
            "scmName": "",
        },
    )


def _time_in_queue(r: Renderer, b: JenkinsBuild) -> Exported:
    queued = millis(b.started_at) - millis(b.queued_at)
    ran = 0 if building(b, r.at) else millis(b.finished_at) - millis(b.started_at)
    return Exported(
        "jenkins.metrics.impl.TimeInQueueAction",
        {
            "blockedDurationMillis": 0,
            "blockedTimeMillis": 0,
            "buildableDurationMillis": queued,
            "buildableTimeMillis": queued,
            "buildingDurationMillis": ran,
            "executingTimeMillis": ran,
            "executorUtilization": 1.0,
            "queuingDurationMillis": queued,
            "subTaskCount": 0,
            "waitingDurationMillis": 0,
            "waitingTimeMillis": 0,
        },
    )


def change_sets(r: Renderer, job: JenkinsJob, b: JenkinsBuild) -> list[Exported]:
    """The git plugin's changelog of a build (empty when it has no changes); the Subversion
    plugin's for a Subversion checkout."""
    if b.svn_module:
        return [svn_change_set(b.svn_module, b)]
    s = r.services.get(job.service or "")
    if s is None or not b.changes:
        return []
    items = []
    for sha in b.changes:
        c = s.commits[sha]
        items.append(
            Exported(
                "hudson.plugins.git.GitChangeSet",
                {
                    "affectedPaths": ["src/main/app.py"],
                    "commitId": sha,
                    "timestamp": millis(c.committed_at),
                    "author": {
                        "absoluteUrl": f"{r.base}/user/{c.author.username}",
                        "fullName": c.author.name,
                    },
                    "authorEmail": c.author.email,
                    "comment": c.title + "\n",
                    "date": c.committed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000"),
                    "id": sha,
                    "msg": c.title,
                    "paths": [{"editType": "edit", "file": "src/main/app.py"}],
                },
            )
        )
    return [Exported("hudson.plugins.git.GitChangeSetList", {"items": items, "kind": "git"})]


def svn_change_set(module: str, b: JenkinsBuild) -> Exported:
    """The Subversion plugin's changelog (`hudson.scm.SubversionChangeLogSet`): the module's
    revision built and the revisions since the previous build (`LogEntry`, `revision` an int,
    `commitId` its string)."""
    items = [
        Exported(
            "hudson.scm.SubversionChangeLogSet$LogEntry",
            {
                "affectedPaths": ["src/app.py"],
                "author": {"absoluteUrl": f"/user/{author}", "fullName": author},
                "commitId": str(revision),
                "timestamp": millis(date),
                "date": date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "msg": message,
                "paths": [{"editType": "edit", "file": "/trunk/src/app.py"}],
                "revision": revision,
                "user": author,
            },
        )
        for revision, author, date, message in b.svn_changes
    ]
    revision = int(b.sha.removeprefix("r"))
    return Exported(
        "hudson.scm.SubversionChangeLogSet",
        {
            "items": items,
            "kind": "svn",
            "revisions": [
                Exported("hudson.scm.SubversionChangeLogSet$RevisionInfo",
                         {"module": module, "revision": revision})
            ],
        },
    )  # fmt: skip
