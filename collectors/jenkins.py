"""The Jenkins collector (python-jenkins): the job tree (folders and multibranch projects, a few
levels per request), then per job, in parallel under one rate limiter, the builds since the last
one seen: build jobs become pipelines (with their stages and test reports), deploy jobs
(`deploy_jobs`, whose `service` group names the service) deployments.

Decisions where DESIGN.md is silent:
- Bulk reads with `tree`: one request lists every job with its last build number; a job's new
  builds come 100 at a time through `allBuilds[...]{m,n}` (`builds` stops at 100) with everything a
  row needs; per build only `wfapi/describe` (pipeline builds) and the test report (builds with a
  TestResultAction) cost a request. Reads send no crumb (Jenkins checks crumbs on POST only).
- Cursor per job (stream `builds` or `deployments`, partition = the job's full name):
  `{"last": <newest build number seen>, "running": [numbers still building]}`; running builds are
  read again until they finish. A job whose last build is not newer and that had nothing running
  costs no request, so a sync with nothing new costs one request per folder level.
- The repository of a build is that of the BuildData whose remote URL names a repository the
  warehouse knows (GitLab's clone URLs, by host and path, or by path alone), preferring the repo of
  the service the job names (a shared library or deploy-config checkout is not the service's);
  else a repo row under the Jenkins source (`external_id` = host/path), whose commits come from the
  builds' changelogs, since no code source covers it.
- A deploy job is one whose full name or name matches `deploy_jobs` whole (a branch job named
  `feature%2Fdeploy-x` is not one); its `service` group is matched by name to the `service` rows
  (GitLab names them after the project), created when missing (team from `[[teams]]`). Deploy
  builds are deployments only, not pipelines: build health counts builds of build jobs.
- Jenkins runs after GitLab in `cdmetrics sync`, so builds find GitLab's repos. A repo row Jenkins
  made before a code source knew its path (GitLab added later, or its project list cut short in
  a failed sync) is folded into the code source's repo at the start of the next Jenkins sync
  (`warehouse.dimensions.merge_repo`): its builds and deployments move there, its changelog
  commits go, and derive re-derives the moved deployments. No `--full` is needed.
- python-jenkins takes no session, so the client's session is replaced by the shared
  `PolicySession`: rate limiter, request counting, timeout, and the one `RetryPolicy` (429/5xx/
  dropped connections, capped Retry-After; python-jenkins itself does not retry statuses).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jenkins
import requests
from sqlalchemy import Connection, Engine, select, update

from collectors import jenkins_normalize as norm
from collectors.frame import Collector, SyncOptions
from collectors.http import PolicySession, RequestCounter
from collectors.payload import external_id_of
from collectors.refs import EnvironmentRef, Refs, ServiceRef
from collectors.sync import Batch, SyncRun
from config.redaction import redact_url
from config.settings import JenkinsSource, Settings
from warehouse.dimensions import ensure_id, merge_repo
from warehouse.raw import Raw
from warehouse.schema import (
    Commit,
    Deployment,
    Job,
    Pipeline,
    Repo,
    Service,
    Source,
    SyncState,
    TestRun,
)

log = logging.getLogger(__name__)
PAGE = 100
FOLDER_DEPTH = 4  # job levels per listing request
BATCH_BUILDS = 200
FOLDERS = re.compile(r"(Folder|MultiBranchProject|OrganizationFolder)$")
JOB_FIELDS = "_class,name,fullName,url,lastBuild[number]"
BUILD_FIELDS = (
    "_class,number,url,result,building,timestamp,duration,"
    "actions[_class,parameters[name,value],"
    "causes[_class,shortDescription,userId,userName,upstreamProject,upstreamBuild],"
    "lastBuiltRevision[SHA1,branch[SHA1,name]],remoteUrls,"
    "failCount,skipCount,totalCount,urlName,queuingDurationMillis,buildableDurationMillis],"
    "changeSets[kind,items[commitId,revision,timestamp,authorEmail,msg,author[fullName]],"
    "revisions[module,revision]]"
)
TEST_TREE = "duration,failCount,passCount,skipCount,suites[name,duration,cases[status]]"


class PolicyJenkins(jenkins.Jenkins):  # type: ignore[misc]
    """python-jenkins on a `PolicySession`; read-only, so no crumb is ever fetched."""

    def __init__(
        self, url: str, user: str | None, token: str | None, session: PolicySession, timeout: float
    ) -> None:
        super().__init__(url, user, token, timeout=timeout)
        previous: requests.Session = vars(self)["_session"]
        session.headers.update(previous.headers)
        session.verify = previous.verify
        self._session = session
        self.crumb = False

    def get_json(self, path: str, **params: str) -> Any:
        """The JSON at `path` (relative to the server), or None when Jenkins answers 404."""
        request = requests.Request("GET", self.server + path, params=params)
        try:
            body = self.jenkins_open(request, add_crumb=False)
        except jenkins.NotFoundException:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise jenkins.JenkinsException(f"not JSON: {exc}") from None


@dataclass
class JobInfo:
    """A buildable job from the listing: build job, or deploy job (of `service`)."""

    full_name: str
    cls: str
    last: int
    service: str | None  # set for deploy jobs
    deploy: bool
    payload: dict[str, Any]

    @property
    def path(self) -> str:
        """`job/a/job/b/`: the job's path on the server, each name percent-encoded."""
        return "".join(f"job/{quote(name, safe='')}/" for name in self.full_name.split("/"))


@dataclass
class Cursor:
    """A job's sync state: the newest build number seen and the builds still running then."""

    last: int = 0
    running: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(int(data.get("last", 0)), [int(n) for n in data.get("running", [])])

    def dump(self) -> str:
        return json.dumps({"last": self.last, "running": sorted(self.running)})


def job_tree(depth: int) -> str:
    """`tree` listing `depth` levels of jobs; the deepest level names its children only."""
    inner = f"{JOB_FIELDS},jobs[name]"
    for _ in range(depth - 1):
        inner = f"{JOB_FIELDS},jobs[{inner}]"
    return f"jobs[{inner}]"


class JenkinsCollector(Collector[JobInfo]):
    """Syncs one `[[sources.jenkins]]` into the warehouse; a partition is a buildable job."""

    kind = "jenkins"
    unit = "jobs"
    listing_errors = (jenkins.JenkinsException, requests.RequestException)

    def __init__(self, source: JenkinsSource, options: SyncOptions) -> None:
        super().__init__(source, options)
        self.deploy_jobs = re.compile(source.deploy_jobs)
        self.dims: Dimensions | None = None  # set by `partitions`
        self.cursors: dict[tuple[str, str], str | None] = {}

    # -- clients -------------------------------------------------------------------------------

    def make_client(self, counter: RequestCounter) -> PolicyJenkins:
        """A python-jenkins client on a `PolicySession` of its own."""
        session = PolicySession(self.limiter, counter, self.settings.sync.timeout_s, self.retry)
        user = os.environ.get(self.source.user_env) if self.source.user_env else None
        token = os.environ.get(self.source.token_env) if self.source.token_env else None
        self._local.session = session
        return PolicyJenkins(self.source.url, user, token, session, self.settings.sync.timeout_s)

    def client(self) -> PolicyJenkins:
        """This thread's python-jenkins client."""
        client: PolicyJenkins = super().client()
        return client

    def _describe(self, exc: Exception) -> str:
        """What went wrong: the HTTP status (python-jenkins words 401, 403 and 500 alike) or the
        error, and the last URL requested (without its query, secrets masked)."""
        session = getattr(self._local, "session", None)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, jenkins.JenkinsException) and session and session.last_status:
            text = session.last_status
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            text = f"HTTP {exc.response.status_code} {exc.response.reason}"
        if session and session.last_url:
            text += f" (last request: {redact_url(session.last_url.split('?')[0])})"
        return text

    # -- the sync ------------------------------------------------------------------------------

    def cannot_list(self, exc: Exception) -> str:
        return (
            f"{self.source.name}: cannot list jobs from {redact_url(self.source.url)}: "
            f"{self._describe(exc)}; check the url, and the user and API token in "
            f"${self.source.user_env} and ${self.source.token_env}"
        )

    def partitions(self, run: SyncRun) -> list[JobInfo]:
        jobs = self.discover(run)
        self.dims = Dimensions(self.engine, run, self.settings)
        self.cursors = {} if self.full else self._cursors(run)
        return jobs

    def lease_of(self, job: JobInfo) -> tuple[str, str]:
        return _stream_of(job), job.full_name  # a lease per job, on its cursor's row

    def sync_partition(self, run: SyncRun, job: JobInfo) -> None:
        assert self.dims is not None
        self.sync_job(run, self.dims, job, self.cursors)

    def discover(self, run: SyncRun) -> list[JobInfo]:
        """Every buildable job below the root, folders expanded `FOLDER_DEPTH` levels a request."""
        client = self.client()
        before = self.thread_requests()
        found: list[JobInfo] = []
        pending = [""]
        while pending:
            folder = pending.pop()
            item = "".join(f"job/{name}/" for name in folder.split("/")) if folder else ""
            info = client.get_info(item=item.rstrip("/"), query="?tree=" + job_tree(FOLDER_DEPTH))
            self._walk(info.get("jobs") or [], 1, found, pending)
        batch = Batch(raws=[Raw("jobs", j.full_name, j.payload) for j in found])
        run.write("jobs", batch)
        run.count("jobs", partitions=1, requests=self.thread_requests() - before)
        return found

    def _walk(
        self, items: list[dict[str, Any]], level: int, found: list[JobInfo], pending: list[str]
    ) -> None:
        for item in items:
            name = str(item.get("fullName") or item.get("name") or "")
            if "jobs" in item or FOLDERS.search(str(item.get("_class", ""))):
                if level < FOLDER_DEPTH:
                    self._walk(item.get("jobs") or [], level + 1, found, pending)
                elif item.get("jobs"):
                    pending.append(name)
            elif "lastBuild" in item and name:
                last = (item.get("lastBuild") or {}).get("number") or 0
                match = self.deploy_jobs.fullmatch(name) or self.deploy_jobs.fullmatch(
                    name.rsplit("/", 1)[-1]
                )
                service = match.groupdict().get("service") if match else None
                payload = {k: v for k, v in item.items() if k != "jobs"}
                found.append(
                    JobInfo(name, str(item.get("_class")), int(last), service, bool(match), payload)
                )

    def _cursors(self, run: SyncRun) -> dict[tuple[str, str], str | None]:
        """Every job's stored cursor, by (stream, job), in one query."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(SyncState.stream, SyncState.partition, SyncState.cursor).where(
                    SyncState.source_id == run.source_id,
                    SyncState.stream.in_(("builds", "deployments")),
                )
            )
            return {(stream, job): cursor for stream, job, cursor in rows}

    def sync_job(
        self,
        run: SyncRun,
        dims: Dimensions,
        job: JobInfo,
        cursors: dict[tuple[str, str], str | None],
    ) -> None:
        """One job's new (and still running) builds; a failure (HTTP, database, anything) is
        recorded and the sync goes on."""
        stream = _stream_of(job)
        self.client()
        counter: RequestCounter = self._local.counter
        before = counter.value
        try:
            run.attempt(
                stream,
                job.full_name,
                f"job {job.full_name}",
                lambda: self._job_builds(run, dims, job, stream, cursors, before),
                known=(jenkins.JenkinsException, requests.RequestException),
                describe=lambda exc: self._error(job, stream, exc),
            )
        finally:
            run.count(stream, partitions=1, requests=counter.value - before)

    def _job_builds(
        self,
        run: SyncRun,
        dims: Dimensions,
        job: JobInfo,
        stream: str,
        cursors: dict[tuple[str, str], str | None],
        before: int,
    ) -> None:
        cursor = Cursor.parse(cursors.get((stream, job.full_name)))
        since = cursor.last if job.last >= cursor.last else 0  # a job made anew restarts
        if job.last <= since and not cursor.running:
            return
        done = Cursor(max(since, job.last))
        batch = Batch()
        for build in self._builds(job, since, cursor.running):
            number = build.get("number")
            if build.get("building") and isinstance(number, int):
                done.running.append(number)
            self._collect(run, dims, job, build, batch)
            if len(batch.raws) >= BATCH_BUILDS:
                run.write(stream, batch)
                batch = Batch()
        made = self._local.counter.value - before
        run.write(stream, batch, after=run.save_cursor(stream, job.full_name, done.dump(), made))

    def _error(self, job: JobInfo, stream: str, exc: Exception) -> str:
        return (
            f"{self.source.name}: job {job.full_name}: {stream}: {self._describe(exc)}; "
            "the next sync resumes from the last saved cursor"
        )

    def _builds(self, job: JobInfo, since: int, running: list[int]) -> Iterator[dict[str, Any]]:
        """Builds newer than `since`, newest first, then the ones that were still running."""
        client = self.client()
        start, size = 0, min(PAGE, max(1, job.last - since))
        while job.last > since:
            tree = f"allBuilds[{BUILD_FIELDS}]{{{start},{start + size}}}"
            page = (client.get_json(job.path + "api/json", tree=tree) or {}).get("allBuilds") or []
            newer = [b for b in page if not (isinstance(b, dict) and _number(b) <= since)]
            yield from newer
            numbers = [_number(b) for b in page if isinstance(b, dict)]
            if len(newer) < len(page) or len(page) < size or min(numbers, default=0) <= since + 1:
                break  # reached what the last sync saw, or the first build
            start, size = start + size, PAGE
        yield from self._revisit(job, running)

    def _revisit(self, job: JobInfo, running: list[int]) -> Iterator[dict[str, Any]]:
        for number in sorted(running):
            build = self.client().get_json(f"{job.path}{number}/api/json", tree=BUILD_FIELDS)
            if build is not None:
                yield build

    def _collect(
        self, run: SyncRun, dims: Dimensions, job: JobInfo, build: Any, batch: Batch
    ) -> None:
        number = build.get("number") if isinstance(build, dict) else None
        stream = "deployments" if job.deploy else "builds"
        ext = norm.build_id(job.full_name, number) if isinstance(number, int) else None
        payload: Any = build
        try:
            if not isinstance(build, dict) or ext is None:
                raise norm.RejectedPayload("build: missing number")
            if job.deploy:
                rows = self._deployment(dims, job, build)
            else:
                payload, rows = self._pipeline(dims, job, build)
        except norm.RejectedPayload as exc:
            key = ext or external_id_of(build)
            batch.raws.append(Raw(stream, key, payload, error=str(exc)))
            batch.rejected += 1
            log.warning("%s: rejected %s %s: %s", self.source.name, stream, key, exc)
            return
        batch.raws.append(Raw(stream, ext, payload))
        for table, table_rows in rows.items():
            batch.add(table, table_rows)

    def _pipeline(
        self, dims: Dimensions, job: JobInfo, build: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[Any, list[dict[str, Any]]]]:
        revision, repo_id = dims.choose(norm.revisions(build), job.full_name, None)
        pipeline = norm.normalize_build(build, dims.source_id, job.full_name, repo_id, revision)
        ext, client = pipeline["external_id"], self.client()
        stages = report = None
        if str(build.get("_class", "")).endswith("WorkflowRun"):
            stages = client.get_json(f"{job.path}{build['number']}/wfapi/describe")
        tested = any(
            isinstance(a, dict) and a.get("urlName") == "testReport"
            for a in build.get("actions") or []
        )
        if tested and not build.get("building"):
            found = client.get_json(
                f"{job.path}{build['number']}/testReport/api/json", tree=TEST_TREE
            )
            report = norm.summarise_test_report(found) if found else None
        rows: dict[Any, list[dict[str, Any]]] = {Pipeline: [pipeline]}
        payload = {"item": build, "stages": stages, "test_report": report}
        if stages:
            rows[Job] = norm.normalize_stages(stages, dims.source_id, ext, build.get("url"))
        if report:
            rows[TestRun] = norm.normalize_test_report(report, dims.source_id, ext)
        if repo_id is not None and dims.is_own_repo(repo_id):
            commits = norm.change_commits(build)
            rows[Commit] = [
                {"repo_id": repo_id, **c, "authored_at": c["committed_at"]} for c in commits
            ]
        return payload, rows

    def _deployment(
        self, dims: Dimensions, job: JobInfo, build: dict[str, Any]
    ) -> dict[Any, list[dict[str, Any]]]:
        service_id, service_repo = dims.service(job.service) if job.service else (None, None)
        revision, repo_id = dims.choose(norm.revisions(build), job.full_name, service_repo)
        raw_env = norm.parameters(build).get(self.source.env_parameter)
        row = norm.normalize_deployment(
            build,
            dims.source_id,
            job.full_name,
            service_id=service_id,
            environment_id=dims.environment(raw_env)
            if isinstance(raw_env, str) and raw_env
            else None,
            repo_id=repo_id or service_repo,
            revision=revision,
            env_parameter=self.source.env_parameter,
            image_parameter=self.source.image_parameter,
            schema_jobs=self.settings.metrics.schema_jobs,
        )
        return {Deployment: [row]}


def _stream_of(job: JobInfo) -> str:
    """The stream (and sync_state row) of a job's builds."""
    return "deployments" if job.deploy else "builds"


def _number(build: dict[str, Any]) -> int:
    number = build.get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) else 1 << 62


class Dimensions:
    """The repos, services and environments builds refer to: read from the warehouse once per
    sync, created (in a write transaction, under the single writer's lock) when missing."""

    def __init__(self, engine: Engine, run: SyncRun, settings: Settings) -> None:
        self.run, self.settings, self.source_id = run, settings, run.source_id
        self.refs = Refs.from_settings(settings)
        self._lock = threading.Lock()
        self.by_path: dict[str, list[tuple[int, str]]] = {}  # repo path -> [(id, host)]
        self.own: set[int] = set()  # repos created from Jenkins' remote URLs
        self.code: set[int] = set()  # repos of code sources (GitLab, git, Subversion)
        self.environments: dict[str, int] = {}
        with engine.connect() as conn:
            for repo_id, source_id, kind, path, web_url in conn.execute(
                select(Repo.id, Repo.source_id, Source.kind, Repo.path, Repo.web_url).join(
                    Source, Source.id == Repo.source_id
                )
            ):
                self._index(repo_id, path, norm.repo_key(web_url)[0] if web_url else "")
                if source_id == self.source_id:
                    self.own.add(repo_id)
                elif kind != "jenkins":
                    self.code.add(repo_id)
            # Subversion repositories by their URL: a build's module URL is a folder below one
            self.svn = [
                (repo_id, *norm.repo_key(url))
                for repo_id, url in conn.execute(
                    select(Repo.id, Repo.external_id)
                    .join(Source, Source.id == Repo.source_id)
                    .where(Source.kind == "svn")
                )
            ]
            self.services = {
                name: (sid, repo) for name, sid, repo in conn.execute(
                    select(Service.name, Service.id, Service.repo_id)
                )
            }  # fmt: skip
        self._adopt()

    def _adopt(self) -> None:
        """Fold each repo this source made into the code source's repo of the same path, once
        one knows it (GitLab listed the project after Jenkins built it: a project list cut short,
        GitLab added later, the bot given access later): the builds move to it, as if it had
        been known when they were synced."""
        for path, candidates in self.by_path.items():
            own = [c for c in candidates if c[0] in self.own]
            for shadow, host in own:
                into = min(
                    (c for c in candidates if c[0] in self.code),
                    key=lambda c: c[1] != host,
                    default=None,
                )
                if into is None:
                    continue
                moved = self._write(functools.partial(merge_repo, shadow=shadow, into=into[0]))
                log.info(
                    "%s: repo %s (from build remotes) folded into the code source's repo %s "
                    "(%d deployments to derive again)",
                    self.run.summary.name,
                    path,
                    into[0],
                    moved,
                )
                candidates.remove((shadow, host))
                self.own.discard(shadow)
        self._write(self._service_repos)

    def _service_repos(self, conn: Connection) -> int:
        """Deployments this source wrote without a repo (no checkout of theirs named one) take
        their service's once it has one (a code source registered it since), as a deployment
        written now would; returns how many."""
        service_repo = select(Service.repo_id).where(Service.id == Deployment.service_id)
        return conn.execute(
            update(Deployment)
            .where(
                Deployment.source_id == self.source_id,
                Deployment.repo_id.is_(None),
                service_repo.where(Service.repo_id.is_not(None)).exists(),
            )
            .values(repo_id=service_repo.scalar_subquery(), changed_at=datetime.now(UTC))
        ).rowcount

    def _index(self, repo_id: int, path: str, host: str) -> None:
        self.by_path.setdefault(path.lower().strip("/"), []).append((repo_id, host))

    def _write(self, work: Callable[[Connection], int]) -> int:
        found: list[int] = []
        self.run.write("jobs", Batch(), after=lambda conn: found.append(work(conn)))
        return found[0]

    def resolve(self, url: str) -> int | None:
        """The warehouse repo a git remote URL names: by path, a code source's before one this
        source made, the same host before another."""
        host, path = norm.repo_key(url)
        candidates = self.by_path.get(path) or []
        best = min(candidates, key=lambda c: (c[0] in self.own, c[1] != host), default=None)
        return best[0] if best else self._svn_repo(host, path)

    def _svn_repo(self, host: str, path: str) -> int | None:
        """The Subversion repository whose URL holds module `path` (the longest; the same host
        first)."""
        holding = [
            (len(repo_path), repo_host == host, repo_id)
            for repo_id, repo_host, repo_path in self.svn
            if path.startswith(repo_path + "/") or path == repo_path
        ]
        return max(holding)[2] if holding else None

    def is_own_repo(self, repo_id: int) -> bool:
        return repo_id in self.own

    def choose(
        self, revisions: list[norm.Revision], job: str, service_repo: int | None
    ) -> tuple[norm.Revision | None, int | None]:
        """The build's own checkout and its repo (created under this source if unknown)."""
        candidates = [(r, next(filter(None, map(self.resolve, r.urls)), None)) for r in revisions]
        known = {repo for _, repo in self.services.values() if repo is not None}
        preferred = {service_repo} if service_repo is not None else {
            repo for name, (_, repo) in self.services.items()
            if repo is not None and norm.mentions(job, name)
        }  # fmt: skip
        chosen = norm.choose_revision(candidates, job, preferred, known)
        if chosen is None:
            return None, None
        revision, repo_id = chosen
        if repo_id is None and revision.urls:
            repo_id = self._ensure_repo(revision.urls[0])
        return revision, repo_id

    def _ensure_repo(self, url: str) -> int:
        host, path = norm.repo_key(url)
        with self._lock:
            if (known := self.resolve(url)) is not None:
                return known
            web = (
                f"https://{host}/{path}" if not url.startswith("http") else url.removesuffix(".git")
            )
            row = {"source_id": self.source_id, "external_id": f"{host}/{path}", "path": path}
            repo_id = self._write(lambda conn: ensure_id(conn, Repo, row | {"web_url": web}))
            self._index(repo_id, path, host)
            self.own.add(repo_id)
            return repo_id

    def service(self, name: str) -> tuple[int, int | None]:
        """(id, repo id) of service `name`, created (in the team the config gives it) when the
        warehouse has none by that name."""
        with self._lock:
            if name not in self.services:
                ref = ServiceRef(name, origin="discovered")
                self.services[name] = (self._write(lambda conn: self.refs.id(conn, ref)), None)
            return self.services[name]

    def environment(self, raw: str) -> int:
        """The id of the canonical environment of `raw` (an ENV parameter value)."""
        with self._lock:
            if raw not in self.environments:
                ref = EnvironmentRef(raw)
                self.environments[raw] = self._write(lambda conn: self.refs.id(conn, ref))
            return self.environments[raw]
