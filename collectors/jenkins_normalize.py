"""Jenkins JSON API payloads into warehouse rows: pure functions, no I/O.

Each function takes a payload as Jenkins' `/api/json` gives it (a plain dict, selected with a
`tree`) and returns rows keyed by `warehouse.schema` column names, times as aware UTC datetimes. A
payload that cannot become a row raises `RejectedPayload` naming the field and why.

Decisions where DESIGN.md is silent:
- A build's external id is `<job full name>#<number>` (`team/app/main#12`), stable across renames
  of the server's URL; its stages are `<build>/stage/<node id>`.
- Times: Jenkins' `timestamp` is the build's start; it finishes at `timestamp + duration`; it was
  queued `TimeInQueueAction.queuingDurationMillis` (else `buildableDurationMillis`) before its start,
  which is its `created_at`. A build still `building` has no finish (its duration reads 0).
- Status: `result`, normalised by `warehouse.vocabulary.jenkins_status` (UNSTABLE is failed with the
  raw UNSTABLE kept, ABORTED canceled); no result is pending. A build still `building` is running
  with no finish whatever its `result`: declarative pipelines set an interim result (FAILURE when
  a stage failed) before their post steps finish; the raw result is kept. Stage
  statuses (`wfapi/describe`): FAILED is failed, NOT_EXECUTED skipped, IN_PROGRESS running,
  PAUSED_PENDING_INPUT manual, the others as build results.
- Trigger: the first cause: SCM, branch events and indexing, and GitLab/GitHub pushes are `push`,
  a user `web`, an upstream build `pipeline`, a timer `schedule`; others their class's last word.
- Git revisions: every git BuildData action of the build (`lastBuiltRevision.SHA1` and its first
  branch, `remoteUrls`); which one is the service's is the collector's choice (it knows the
  repositories). A branch name loses `refs/remotes/origin/`, `origin/` or `refs/heads/`.
- Subversion revisions: a Subversion changelog (`hudson.scm.SubversionChangeLogSet`, or `kind`
  "svn") names each checked-out module and its revision (`revisions: [{module, revision}]`);
  each is a checkout of commit `r<revision>` (the Subversion collector's ids) whose branch is
  the module's line (`trunk`; `x` of `branches/x`; `refs/tags/x` of `tags/x`, which the
  non-release-ref policy reads as a tag). Without a changelog, the
  `SVN_REVISION` (and `SVN_URL`) parameters name it. Changelog items of such a set are commits
  `r<revision>`.
- Deployments: the environment is the `ENV` parameter (config `env_parameter`; a deploy build
  without it is rejected); the image is the `IMAGE` parameter: `repo@sha256:...` gives the digest,
  resolution `explicit`; a tag is kept as `image_ref` for tag resolution (`none` until then). The
  sha comes from the chosen revision, else a `GIT_COMMIT`/`COMMIT`/`SHA` parameter; the ref
  likewise from the revision's branch, else `BRANCH`/`GIT_BRANCH`/`REF`. A deploy job whose full
  name matches `schema_jobs` is kind schema, its version from the name, else a `SCHEMA_VERSION`/
  `MIGRATION_VERSION`/`DB_VERSION` parameter (a Jenkins job name seldom carries one).
- Test reports: one row per suite name, counting its cases by status (FAILED and REGRESSION are
  failed, SKIPPED skipped); a report may come summarised as per-status counts (`statuses`), the
  form the collector keeps, since a verbatim report costs about 60 bytes per test case.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from collectors.gitlab_normalize import deployment_kind
from collectors.payload import Fields, Payload, RejectedPayload, Row, rejects, short
from warehouse.vocabulary import (
    FAILED,
    FINISHED,
    MANUAL,
    PENDING,
    RUNNING,
    SKIPPED,
    UnknownStatusError,
    jenkins_status,
)

__all__ = ["RejectedPayload"]

BUILD_DATA = "hudson.plugins.git.util.BuildData"
SVN_CHANGELOG = "hudson.scm.SubversionChangeLogSet"
SHA_PARAMETERS = ("GIT_COMMIT", "COMMIT", "SHA", "GIT_SHA")
REF_PARAMETERS = ("BRANCH", "GIT_BRANCH", "REF", "BRANCH_NAME")
SCHEMA_PARAMETERS = ("SCHEMA_VERSION", "MIGRATION_VERSION", "DB_VERSION")  # as the webhooks read
_SHA = re.compile(r"[0-9a-f]{7,64}|r[1-9][0-9]*")  # git, or a Subversion revision `r<n>`
_BRANCH_PREFIXES = ("refs/remotes/origin/", "origin/", "refs/heads/")
_STAGE_STATUS = {
    "FAILED": FAILED,
    "IN_PROGRESS": RUNNING,
    "NOT_EXECUTED": SKIPPED,
    "PAUSED_PENDING_INPUT": MANUAL,
    "QUEUED": PENDING,
}
_TRIGGERS = (
    (re.compile(r"(SCMTrigger|Branch(Event|Indexing)Cause|GitLab|GitHub|Push)"), "push"),
    (re.compile(r"UserIdCause|UserCause"), "web"),
    (re.compile(r"UpstreamCause"), "pipeline"),
    (re.compile(r"TimerTrigger"), "schedule"),
)


@dataclass(frozen=True)
class Revision:
    """One git checkout of a build (a BuildData action)."""

    urls: tuple[str, ...]
    sha: str
    branch: str | None


def build_id(job: str, number: int) -> str:
    """The external id of build `number` of job `job` (its full name)."""
    return f"{job}#{number}"


def millis(value: Any, field: str) -> datetime | None:
    """Epoch milliseconds as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RejectedPayload(f"{field} is not epoch milliseconds: {short(value)}")
    return datetime.fromtimestamp(value / 1000, UTC)


def ref_name(branch: str | None) -> str | None:
    """A git plugin branch name as a ref: `origin/main` and `refs/remotes/origin/main` -> `main`."""
    if not branch:
        return None
    for prefix in _BRANCH_PREFIXES:
        if branch.startswith(prefix):
            return branch[len(prefix) :]
    return branch


def repo_key(url: str) -> tuple[str, str]:
    """(host, path) of a git remote: `git@host:group/app.git`, `https://host/group/app(.git)`,
    `ssh://git@host:22/group/app.git`; the path lower-cased without `.git`."""
    text = url.strip()
    scp = re.fullmatch(r"(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)", text)
    if scp and "://" not in text:
        host, path = scp.group(1), scp.group(2)
    else:
        parts = urlsplit(text)
        host, path = parts.hostname or "", parts.path
    path = path.strip("/").removesuffix(".git").lower()
    return host.lower(), path


# --- reading a build -------------------------------------------------------------------------


def _actions(build: Fields) -> list[Fields]:
    """The build's actions (Jenkins lists `null` for some), as Fields."""
    return [
        Fields(action, f"actions[{i}]")
        for i, action in enumerate(build.array("actions"))
        if action is not None
    ]


@rejects("build")
def revisions(build: Payload) -> list[Revision]:
    """Every git checkout of a build, in the order of its actions, then its Subversion ones."""
    found = []
    for action in _actions(Fields(build)):
        if action.raw("_class") != BUILD_DATA and not action.has("lastBuiltRevision"):
            continue
        last = action.obj("lastBuiltRevision")
        sha = last.string("SHA1")
        if not sha:
            continue
        branches = last.objects("branch")
        branch = branches[0].string("name") if branches else None
        urls = tuple(str(u) for u in action.array("remoteUrls") if isinstance(u, str))
        found.append(Revision(urls, sha, branch))
    return found + _svn_revisions(build)


def _change_sets(f: Fields) -> list[Fields]:
    """A build's changelogs: `changeSets` (pipelines), else `changeSet` (freestyle)."""
    return f.objects("changeSets") or ([f.obj("changeSet")] if f.raw("changeSet") else [])


def _is_svn(change_set: Fields) -> bool:
    return change_set.raw("_class") == SVN_CHANGELOG or change_set.raw("kind") == "svn"


def svn_line(module: str) -> str | None:
    """The ref of a Subversion module URL's line: `trunk`, `x` for `branches/x`, `refs/tags/x`
    for `tags/x` (so a deployment from a tag reads as one); None when the URL names no line."""
    parts = urlsplit(module).path.strip("/").split("/")
    for i, part in enumerate(parts):
        if part == "trunk":
            return "trunk"
        if part in ("branches", "tags") and i + 1 < len(parts):
            return parts[i + 1] if part == "branches" else f"refs/tags/{parts[i + 1]}"
    return None


def _svn_revisions(build: Payload) -> list[Revision]:
    """The Subversion checkouts of a build: its changelogs' module revisions, else the
    `SVN_REVISION` parameter (with `SVN_URL`)."""
    f = Fields(build)
    found = []
    for change_set in filter(_is_svn, _change_sets(f)):
        for info in change_set.objects("revisions"):
            module, number = info.required("module"), info.integer("revision")
            if number:
                found.append(Revision((module,), f"r{number}", svn_line(module)))
    params = _parameters(build)
    given, url = params.get("SVN_REVISION"), params.get("SVN_URL")
    if not found and isinstance(given, str | int) and str(given).isdigit() and int(given):
        where = url if isinstance(url, str) and url else None
        urls = (where,) if where else ()
        found.append(Revision(urls, f"r{int(given)}", svn_line(where) if where else None))
    return found


@rejects("build")
def parameters(build: Payload) -> dict[str, Any]:
    """The build's parameters by name (null values as None)."""
    return _parameters(build)


def _parameters(build: Payload) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for action in _actions(Fields(build)):
        for p in action.objects("parameters"):
            out[p.required("name")] = p.raw("value")
    return out


def causes(build: Payload) -> list[Fields]:
    """The build's causes, in order."""
    return [c for action in _actions(Fields(build)) for c in action.objects("causes")]


def trigger(build: Payload) -> str | None:
    """What started the build (push, web, pipeline, schedule, ...) from its first cause."""
    found = causes(build)
    if not found:
        return None
    name = found[0].string("_class") or ""
    for pattern, kind in _TRIGGERS:
        if pattern.search(name):
            return kind
    if not name and found[0].raw("userName") is not None:
        return "web"
    return re.split(r"[.$]", name)[-1] or None


def upstream(build: Payload) -> str | None:
    """The external id of the build that triggered this one, if any."""
    for cause in causes(build):
        project, number = cause.string("upstreamProject"), cause.integer("upstreamBuild")
        if project and number is not None:
            return build_id(project, number)
    return None


def deployer(build: Payload) -> str | None:
    """The user who started the build (user id, else name)."""
    for cause in causes(build):
        if cause.raw("userId") is not None or cause.raw("userName") is not None:
            return cause.string("userId") or cause.string("userName")
    return None


def change_commits(build: Payload) -> list[Row]:
    """The commits of a build's changelog: sha, author email, time and title."""
    out = []
    for change_set in _change_sets(Fields(build)):
        svn = _is_svn(change_set)
        for item in change_set.objects("items"):
            sha = item.string("commitId") or item.required("id")
            if svn and (item.raw("revision") is not None or sha.isdigit()):
                sha = f"r{item.integer('revision') or int(sha)}"
            message = item.string("msg") or (item.string("comment") or "").split("\n")[0]
            out.append(
                {
                    "sha": sha,
                    "author_email": item.string("authorEmail"),
                    "author_name": item.obj("author").string("fullName"),
                    "committed_at": millis(item.raw("timestamp"), item.name("timestamp")),
                    "title": message or None,
                }
            )
    return out


def _queued_ms(build: Fields) -> float | None:
    for action in _actions(build):
        for key in ("queuingDurationMillis", "buildableDurationMillis"):
            if action.raw(key) is not None:
                return action.number(key)
    return None


@dataclass(frozen=True)
class _Timing:
    status: str
    raw_status: str | None
    created_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    queued_s: float | None


def _timing(f: Fields) -> _Timing:
    if f.integer("number") is None:
        raise RejectedPayload("missing number")
    started = millis(f.raw("timestamp"), "timestamp")
    if started is None:
        raise RejectedPayload("missing timestamp")
    running = f.flag("building")
    result = f.string("result")
    try:
        status = jenkins_status(result, building=running)
    except UnknownStatusError as exc:
        raise RejectedPayload(f"unknown status in result: {result!r}") from exc
    duration = f.number("duration")
    finished = None
    if status in FINISHED:  # never while building, whatever interim result it shows
        if duration is None:
            raise RejectedPayload("missing duration")
        finished = started + timedelta(milliseconds=duration)
    queued = _queued_ms(f)
    return _Timing(
        status,
        result,
        started - timedelta(milliseconds=queued) if queued is not None else started,
        started,
        finished,
        duration / 1000 if finished and duration is not None else None,
        queued / 1000 if queued is not None else None,
    )


# --- rows ------------------------------------------------------------------------------------


@rejects("build")
def normalize_build(
    build: Payload, source_id: int, job: str, repo_id: int | None, revision: Revision | None
) -> Row:
    """The pipeline row of a build of job `job`; repo and commit from the chosen `revision`."""
    f = Fields(build)
    t = _timing(f)
    return {
        "source_id": source_id,
        "external_id": build_id(job, f.integer("number") or 0),
        "repo_id": repo_id,
        "job_name": job,
        "ref": ref_name(revision.branch) if revision else None,
        "sha": revision.sha if revision else None,
        "status": t.status,
        "raw_status": t.raw_status,
        "trigger": trigger(build),
        "created_at": t.created_at,
        "updated_at": t.finished_at or t.started_at,
        "started_at": t.started_at,
        "finished_at": t.finished_at,
        "duration_s": t.duration_s,
        "queued_s": t.queued_s,
        "web_url": f.string("url"),
    }


def stage_status(raw: str) -> str:
    """Normalise a `wfapi` stage status (the others are build results)."""
    return _STAGE_STATUS.get(raw.upper()) or jenkins_status(raw)


@rejects("stages")
def normalize_stages(
    describe: Payload, source_id: int, pipeline: str, url: str | None
) -> list[Row]:
    """One job row per stage of a pipeline build's `wfapi/describe`."""
    rows = []
    for stage in Fields(describe).objects("stages"):
        node = stage.ident("id")
        status, raw = stage.status("status", stage_status)
        started = millis(stage.raw("startTimeMillis"), stage.name("startTimeMillis"))
        duration = stage.number("durationMillis")
        done = status in FINISHED and status != SKIPPED and started is not None
        finished = started + timedelta(milliseconds=duration or 0) if done and started else None
        rows.append(
            {
                "source_id": source_id,
                "external_id": f"{pipeline}/stage/{node}",
                "pipeline_external_id": pipeline,
                "name": stage.required("name"),
                "stage": stage.required("name"),
                "status": status,
                "raw_status": raw,
                "created_at": started if started and status != SKIPPED else None,
                "started_at": started if started and status != SKIPPED else None,
                "finished_at": finished,
                "duration_s": (duration or 0) / 1000 if finished else None,
                "web_url": f"{url}execution/node/{node}/" if url else None,
            }
        )
    return rows


_FAILED_CASES = frozenset({"FAILED", "REGRESSION"})


@rejects("test_report")
def normalize_test_report(report: Payload, source_id: int, pipeline: str) -> list[Row]:
    """One test_run row per suite name of a build's test report (cases or `statuses` counts)."""
    rows: dict[str, Row] = {}
    for suite in Fields(report).objects("suites"):
        name = suite.required("name")
        row = rows.setdefault(
            name,
            {
                "source_id": source_id,
                "pipeline_external_id": pipeline,
                "suite": name,
                "total": 0,
                "failed": 0,
                "skipped": 0,
                "errors": 0,
                "duration_s": None,
            },
        )
        for status, n in _status_counts(suite):
            row["total"] += n
            row["failed"] += n if status in _FAILED_CASES else 0
            row["skipped"] += n if status == "SKIPPED" else 0
        seconds = suite.number("duration")
        if seconds is not None:
            row["duration_s"] = (row["duration_s"] or 0.0) + seconds
    return list(rows.values())


def _status_counts(suite: Fields) -> Iterable[tuple[str, int]]:
    """(status, cases) of a suite: from its `statuses` counts, else counted from its cases (read
    raw: a report holds hundreds of cases per suite)."""
    if suite.has("statuses"):
        counts = suite.obj("statuses")
        names = suite.raw("statuses") or {}
        return [(str(status).upper(), counts.integer(status) or 0) for status in names]
    found: Counter[str] = Counter()
    for i, case in enumerate(suite.array("cases")):
        status = case.get("status") if isinstance(case, dict) else None
        if not isinstance(status, str) or not status:
            raise RejectedPayload(f"missing {suite.name('cases')}[{i}].status")
        found[status.upper()] += 1
    return list(found.items())


@rejects("test_report")
def summarise_test_report(report: Payload) -> dict[str, Any]:
    """A test report with each suite's cases replaced by per-status counts (what is kept)."""
    suites = []
    for i, suite in enumerate(Fields(report).array("suites")):
        counts: dict[str, int] = {}
        for status, n in _status_counts(Fields(suite, f"suites[{i}]")):
            counts[status] = counts.get(status, 0) + n
        kept = {k: v for k, v in suite.items() if k != "cases"}
        suites.append({**kept, "statuses": counts})
    return {k: v for k, v in report.items() if k != "suites"} | {"suites": suites}


@rejects("deployment")
def normalize_deployment(
    build: Payload,
    source_id: int,
    job: str,
    *,
    service_id: int | None,
    environment_id: int | None,
    repo_id: int | None,
    revision: Revision | None,
    env_parameter: str,
    image_parameter: str,
    schema_jobs: str,
) -> Row:
    """The deployment row of a deploy job's build."""
    f = Fields(build)
    t = _timing(f)
    params = _parameters(build)
    environment = params.get(env_parameter)
    if not isinstance(environment, str) or not environment:
        raise RejectedPayload(f"missing parameter {env_parameter}")
    digest, image_ref, resolution = image_reference(params.get(image_parameter))
    sha = revision.sha if revision else _first(params, SHA_PARAMETERS)
    ref = ref_name(revision.branch) if revision and revision.branch else None
    kind, schema_version = deployment_kind(job, schema_jobs)
    if kind == "schema" and schema_version is None:  # a job's name seldom carries a version
        schema_version = _first(params, SCHEMA_PARAMETERS)
    return {
        "source_id": source_id,
        "external_id": build_id(job, f.integer("number") or 0),
        "service_id": service_id,
        "environment_id": environment_id,
        "raw_environment": environment,
        "repo_id": repo_id,
        "pipeline_external_id": upstream(build),
        "status": t.status,
        "raw_status": t.raw_status,
        "created_at": t.created_at,
        "updated_at": t.finished_at or t.started_at,
        "started_at": t.started_at,
        "finished_at": t.finished_at,
        "sha": sha.lower() if sha and _SHA.fullmatch(sha.lower()) else None,
        "ref": ref or ref_name(_first(params, REF_PARAMETERS)),
        "image_digest": digest,
        "image_ref": image_ref,
        "image_resolution": resolution,
        "kind": kind,
        "schema_version": schema_version,
        "deployer": deployer(build),
        "url": f.string("url"),
    }


def _first(params: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = params.get(name)
        if isinstance(value, str) and value:
            return value
    return None


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def image_reference(value: Any) -> tuple[str | None, str | None, str]:
    """(digest, image reference, resolution) of an IMAGE parameter: `repo@sha256:<64 hex>` is
    explicit; a tag (`repo:tag`) or a bare repository is left for tag resolution."""
    if not isinstance(value, str) or not value.strip():
        return None, None, "none"
    text = value.strip()
    if "@" in text:
        digest = text.rsplit("@", 1)[1]
        if not _DIGEST.fullmatch(digest):
            raise RejectedPayload(f"image digest is not sha256:<64 hex>: {short(text)}")
        return digest, text, "explicit"
    return None, text, "none"


def mentions(job: str, name: str) -> bool:
    """Whether job `job` (a full name) names `name`: a segment that is it, or starts or ends with
    it (`app`, `app-build`, `deploy-app`)."""
    name = name.lower()
    return any(
        seg == name or seg.startswith(name + "-") or seg.endswith("-" + name)
        for seg in job.lower().split("/")
    )


def choose_revision(
    candidates: Sequence[tuple[Revision, int | None]],
    job: str,
    preferred: set[int],
    known: set[int],
) -> tuple[Revision, int | None] | None:
    """The checkout that is the job's own, from (revision, its repo id or None): a `preferred`
    repo (the service's), else one of `known` (some service's), else any known repo, else one the
    job's name mentions; the first of equals."""

    def rank(candidate: tuple[Revision, int | None]) -> int:
        revision, repo = candidate
        if repo is not None:
            return 3 if repo in preferred else 2 if repo in known else 1
        name = repo_key(revision.urls[0])[1].rsplit("/", 1)[-1] if revision.urls else ""
        return 0 if name and mentions(job, name) else -1

    return max(candidates, key=rank) if candidates else None
