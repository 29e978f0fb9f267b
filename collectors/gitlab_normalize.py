"""GitLab REST v4 payloads into warehouse rows: pure functions, no I/O.

Each `normalize_*` takes a payload as python-gitlab's `obj.attributes` gives it (a plain dict) and
returns rows keyed by `warehouse.schema` column names, timestamps as aware UTC datetimes. A payload
that cannot become a row raises `RejectedPayload` naming the field and why (never KeyError or
TypeError), so the sync stores it as rejected (`external_id_of` names it) and goes on.

Decisions where DESIGN.md is silent:
- A key is left out of a row when the payload cannot know its value, so an upsert keeps what another
  payload set: branch `merged_at`; merge_request `approvals` / `first_review_at` unless approvals /
  notes are passed; pipeline timings (started_at, finished_at, duration_s, queued_s) are written
  only when the payload has the key, even as null (the list payload has none); deployment image
  fields; commit `is_merge` when a payload has no `parent_ids`.
- First review: user notes, and the system notes "approved this merge request" and "requested
  changes", by someone other than the author, at or after the MR's creation.
- Approvals count distinct approvers, from `/approvals` (`approved_by[].user`) or from
  `/approval_state` (`rules[].approved_by[]`; one person approving for two rules counts once), or
  (the REST fallback, `approvals_from_notes`) from the system notes GitLab writes on each approval
  ("approved this merge request") and withdrawal ("unapproved this merge request"), replayed in
  order: an author's approval stands when their last such note approves.
- Deployment status comes from `status`, else (older GitLab) the deployable job's status. A
  deployment "finishes" at its job's finish; without one, at its last update when its status is
  success, failed or canceled (never for skipped: a skipped deployment did not run).
- Schema version from a schema job's name: Flyway's `V42__name` / `V1_2__name` (-> "42", "1.2"),
  else a trailing number with an optional `v` (`migrate-db-v42`, `migrate-1.4.0`); a parallel
  suffix (`migrate 1/2`) is not a version.
- Incident severity: GitLab's `severity` field, except its default UNKNOWN yields to a
  `severity::<x>` label; lower-cased. Whether an issue is an incident is the caller's choice (the
  collector asks for `issue_type=incident`); the normaliser does not second-guess it.
- Test summaries: suites sharing a name are summed into one row (the natural key is per suite).
- Registry tags: `revision` (a config digest) is ignored; a digest must look like `algo:hex`; a tag
  without `created_at` is rejected because `image_tag.seen_at` is part of the natural key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from collectors.payload import (
    Fields,
    Payload,
    RejectedPayload,
    Row,
    external_id_of,
    parse_time,
    rejects,
    require,
    short,
)
from warehouse.references import incident_mentions
from warehouse.vocabulary import (
    CANCELED,
    FAILED,
    SUCCESS,
    CanonicalEnvironment,
    EnvironmentMapper,
    gitlab_status,
)

__all__ = ["RejectedPayload", "external_id_of", "parse_time", "require"]


# --- source code ----------------------------------------------------------------------------


@rejects("project")
def normalize_project(p: Payload, source_id: int) -> Row:
    """The repo row of a GitLab project."""
    f = Fields(p)
    return {
        "source_id": source_id,
        "external_id": f.ident("id"),
        "path": f.required("path_with_namespace"),
        "default_branch": f.string("default_branch"),
        "web_url": f.string("web_url"),
    }


@rejects("commit")
def normalize_commit(c: Payload, repo_id: int) -> tuple[Row, list[Row]]:
    """(commit row, commit_parent rows, position = index in parent_ids); stats only with_stats."""
    f = Fields(c)
    sha = f.required("id")
    stats = f.obj("stats")
    row: Row = {
        "repo_id": repo_id,
        "sha": sha,
        "author_name": f.string("author_name"),
        "author_email": f.string("author_email"),
        "authored_at": f.time("authored_date"),
        "committed_at": f.time("committed_date"),
        "title": f.string("title"),
        "additions": stats.integer("additions"),
        "deletions": stats.integer("deletions"),
    }
    if not f.has("parent_ids"):
        return row, []
    parent_ids = f.array("parent_ids")
    for i, parent in enumerate(parent_ids):
        if not isinstance(parent, str) or not parent:
            raise RejectedPayload(f"parent_ids[{i}] is not a sha: {short(parent)}")
    row["is_merge"] = len(parent_ids) > 1
    parents = [
        {"repo_id": repo_id, "sha": sha, "parent_sha": parent, "position": i}
        for i, parent in enumerate(parent_ids)
    ]
    return row, parents


def normalize_mr_commits(commits: Sequence[Payload], repo_id: int) -> list[Row]:
    """Commit rows for a merge request's commits, without parents or line counts: GitLab's merge
    request commits carry no parents, and a squash-merged request whose source branch was deleted
    leaves them on no branch, so this is the only place they are seen (lead time starts at the
    first of them). A commit also listed by the commits stream gets its parents and stats there."""
    rows = []
    for c in _listed(commits, "commits"):
        row = {
            "repo_id": repo_id,
            "sha": c.required("id"),
            "author_name": c.string("author_name"),
            "author_email": c.string("author_email"),
            "authored_at": c.time("authored_date"),
            "title": c.string("title"),
        }
        if c.has("committed_date"):  # GraphQL's merge request commits have none
            row["committed_at"] = c.time("committed_date")
        rows.append(row)
    return rows


@rejects("branch")
def normalize_branch(b: Payload, repo_id: int) -> Row:
    """The branch row; merged_at is left out (the branches API does not know it)."""
    f = Fields(b)
    head = f.obj("commit")
    return {
        "repo_id": repo_id,
        "name": f.required("name"),
        "protected": f.flag("protected"),
        "is_default": f.flag("default"),
        "head_sha": head.required("id"),
        "last_commit_at": head.time("committed_date"),
    }


# --- merge requests -------------------------------------------------------------------------

# System notes that are a review act; every other system note (pushes, label changes) is not.
_REVIEW_SYSTEM_NOTE = re.compile(r"(approved this merge request|requested changes)\b")


@rejects("merge_request")
def normalize_merge_request(
    mr: Payload,
    repo_id: int,
    *,
    commits: Sequence[Payload] | None = None,
    approvals: Payload | None = None,
    notes: Sequence[Payload] | None = None,
) -> tuple[Row, list[Row]]:
    """(merge_request row, mr_commit rows); approvals / first_review_at only when given their data."""
    f = Fields(mr)
    iid = f.integer("iid")
    if iid is None:
        raise RejectedPayload("missing iid")
    author = f.obj("author").string("username")
    created_at = f.time("created_at")
    merger = f.obj("merge_user") if f.raw("merge_user") is not None else f.obj("merged_by")
    row: Row = {
        "repo_id": repo_id,
        "iid": iid,
        "external_id": f.ident("id"),
        "title": f.string("title"),
        "author": author,
        "source_branch": f.string("source_branch"),
        "target_branch": f.string("target_branch"),
        "state": f.required("state"),
        "draft": f.flag("draft") or f.flag("work_in_progress"),
        "created_at": created_at,
        "updated_at": f.time("updated_at"),
        "merged_at": f.time("merged_at"),
        "closed_at": f.time("closed_at"),
        "merged_by": merger.string("username"),
        "merge_commit_sha": f.string("merge_commit_sha"),
        "squash_commit_sha": f.string("squash_commit_sha"),
        "head_sha": f.string("sha"),
        "squash": f.flag("squash"),
        "web_url": f.string("web_url"),
    }
    if approvals is not None:
        row["approvals"] = _approval_count(Fields(approvals, "approvals"))
    if notes is not None:
        row["first_review_at"] = _first_review_at(_listed(notes, "notes"), author, created_at)
    shas = [c.required("id") for c in _listed(commits or [], "commits")]
    mr_commits = [{"repo_id": repo_id, "iid": iid, "sha": sha} for sha in dict.fromkeys(shas)]
    return row, mr_commits


def _listed(items: Any, path: str) -> list[Fields]:
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise RejectedPayload(f"{path} is not a list: {short(items)}")
    return [Fields(item, f"{path}[{i}]") for i, item in enumerate(items)]


def _approval_count(approvals: Fields) -> int:
    """Distinct approvers, from /approvals (approved_by[].user) or /approval_state (rules[])."""
    if approvals.has("approved_by"):
        entries = approvals.objects("approved_by")
        users = [e.obj("user") if e.raw("user") is not None else e for e in entries]
    elif approvals.has("rules"):
        users = [
            user for rule in approvals.objects("rules") for user in rule.objects("approved_by")
        ]
    else:
        raise RejectedPayload("missing approvals.approved_by (or approvals.rules[].approved_by)")
    return len({_user_key(user) for user in users})


_APPROVED_NOTE = "approved this merge request"
_UNAPPROVED_NOTE = "unapproved this merge request"


def approvals_from_notes(notes: Sequence[Payload]) -> Payload:
    """The approvals a merge request's notes record, shaped as `/approvals` (`approved_by[].user`):
    each approval and withdrawal leaves a system note, replayed in (created_at, id) order."""
    listed = _listed(notes, "notes")
    acts = []
    for i, note in enumerate(listed):
        body = (note.string("body") or "").strip()
        if note.flag("system") and body in (_APPROVED_NOTE, _UNAPPROVED_NOTE):
            acts.append((note.required_time("created_at"), i, body == _APPROVED_NOTE, note))
    approvers: dict[str, Payload] = {}
    for _, _, approved, note in sorted(acts, key=lambda act: act[:2]):
        user = note.obj("author")
        key = _user_key(user)
        if approved:
            approvers[key] = dict(note.raw("author"))
        else:
            approvers.pop(key, None)
    return {"approved_by": [{"user": user} for user in approvers.values()]}


def _user_key(user: Fields) -> str:
    if user.raw("id") is not None:
        return user.ident("id")
    return user.required("username")


def _first_review_at(
    notes: list[Fields], author: str | None, created_at: datetime | None
) -> datetime | None:
    """The earliest review note by someone other than the author, not before the MR existed."""
    reviews = []
    for note in notes:
        at = note.required_time("created_at")
        if author is not None and note.obj("author").string("username") == author:
            continue
        if note.flag("system") and not _REVIEW_SYSTEM_NOTE.match(note.string("body") or ""):
            continue
        if created_at is None or at >= created_at:
            reviews.append(at)
    return min(reviews, default=None)


# --- builds ---------------------------------------------------------------------------------

# (column, payload key): present in the pipeline detail payload, absent from the list payload.
_PIPELINE_TIMINGS = (
    ("started_at", "started_at"),
    ("finished_at", "finished_at"),
    ("duration_s", "duration"),
    ("queued_s", "queued_duration"),
)


@rejects("pipeline")
def normalize_pipeline(p: Payload, source_id: int, repo_id: int) -> Row:
    """The pipeline row; timing columns only for keys the payload has (the list payload has none)."""
    f = Fields(p)
    status, raw_status = f.status("status", gitlab_status)
    row: Row = {
        "source_id": source_id,
        "external_id": f.ident("id"),
        "repo_id": repo_id,
        "ref": f.string("ref"),
        "sha": f.string("sha"),
        "status": status,
        "raw_status": raw_status,
        "trigger": f.string("source"),
        "created_at": f.time("created_at"),
        "updated_at": f.time("updated_at"),
        "web_url": f.string("web_url"),
    }
    for column, key in _PIPELINE_TIMINGS:
        if f.has(key):
            row[column] = f.number(key) if column.endswith("_s") else f.time(key)
    return row


@rejects("job")
def normalize_job(j: Payload, source_id: int) -> Row:
    """The job row, naming its pipeline by external id."""
    f = Fields(j)
    status, raw_status = f.status("status", gitlab_status)
    return {
        "source_id": source_id,
        "external_id": f.ident("id"),
        "pipeline_external_id": f.obj("pipeline").ident("id"),
        "name": f.required("name"),
        "stage": f.string("stage"),
        "status": status,
        "raw_status": raw_status,
        "allow_failure": f.flag("allow_failure"),
        "created_at": f.time("created_at"),
        "started_at": f.time("started_at"),
        "finished_at": f.time("finished_at"),
        "duration_s": f.number("duration"),
        "queued_s": f.number("queued_duration"),
        "web_url": f.string("web_url"),
    }


@rejects("test_report_summary")
def normalize_test_summary(s: Payload, source_id: int, pipeline_external_id: str) -> list[Row]:
    """One test_run row per suite of a pipeline's test_report_summary ([] when it has none)."""
    rows: dict[str, Row] = {}
    for suite in Fields(s).objects("test_suites"):
        name = suite.required("name")
        row = rows.setdefault(
            name,
            {
                "source_id": source_id,
                "pipeline_external_id": pipeline_external_id,
                "suite": name,
                "total": 0,
                "failed": 0,
                "skipped": 0,
                "errors": 0,
                "duration_s": None,
            },
        )
        for column, key in _SUITE_COUNTS:
            row[column] += suite.integer(key) or 0
        seconds = suite.number("total_time")
        if seconds is not None:
            row["duration_s"] = (row["duration_s"] or 0.0) + seconds
    return list(rows.values())


_SUITE_COUNTS = (
    ("total", "total_count"),
    ("failed", "failed_count"),
    ("skipped", "skipped_count"),
    ("errors", "error_count"),
)


# --- environments and deployments -----------------------------------------------------------


@rejects("environment")
def normalize_environment(e: Payload, mapper: EnvironmentMapper) -> CanonicalEnvironment:
    """The canonical environment of a GitLab environment (its name, with its tier when it has one)."""
    f = Fields(e)
    return mapper.canonical(f.required("name"), f.string("tier"))


_FINISHED_DEPLOYMENT = frozenset({SUCCESS, FAILED, CANCELED})


@rejects("deployment")
def normalize_deployment(
    d: Payload,
    source_id: int,
    *,
    repo_id: int,
    service_id: int | None,
    environment_id: int | None,
    schema_jobs: str,
) -> Row:
    """The deployment row, finished at its job's finish; image columns are left to image resolution."""
    f = Fields(d)
    job = f.obj("deployable")
    if f.raw("status") is not None:
        status, raw_status = f.status("status", gitlab_status)
    elif job.raw("status") is not None:
        status, raw_status = job.status("status", gitlab_status)
    else:
        raise RejectedPayload("missing status (and deployable.status)")
    updated_at = f.time("updated_at")
    finished_at = job.time("finished_at")
    if finished_at is None and status in _FINISHED_DEPLOYMENT:
        finished_at = updated_at
    pipeline = job.obj("pipeline")
    kind, schema_version = deployment_kind(job.string("name"), schema_jobs)
    return {
        "source_id": source_id,
        "external_id": f.ident("id"),
        "service_id": service_id,
        "environment_id": environment_id,
        "raw_environment": f.obj("environment").required("name"),
        "repo_id": repo_id,
        "pipeline_external_id": pipeline.ident("id") if pipeline.raw("id") is not None else None,
        "status": status,
        "raw_status": raw_status,
        "created_at": f.time("created_at"),
        "updated_at": updated_at,
        "started_at": job.time("started_at"),
        "finished_at": finished_at,
        "sha": f.string("sha"),
        "ref": f.string("ref"),
        "deployer": f.obj("user").string("username"),
        "url": job.string("web_url"),
        "kind": kind,
        "schema_version": schema_version,
    }


_FLYWAY_VERSION = re.compile(r"(?:^|[^A-Za-z0-9])V(\d+(?:_\d+)*)__")
_TRAILING_VERSION = re.compile(r"(?:^|[^A-Za-z0-9])[vV]?(\d+(?:\.\d+)*)$")
_PARALLEL_SUFFIX = re.compile(r"\s+\d+/\d+$")


def deployment_kind(job_name: str | None, schema_jobs: str) -> tuple[str, str | None]:
    """("schema", version or None) when the job name matches `schema_jobs`, else ("app", None)."""
    if not job_name or not re.search(schema_jobs, job_name):
        return "app", None
    flyway = _FLYWAY_VERSION.search(job_name)
    if flyway:
        return "schema", flyway.group(1).replace("_", ".")
    trailing = _TRAILING_VERSION.search(_PARALLEL_SUFFIX.sub("", job_name))
    return "schema", trailing.group(1) if trailing else None


# --- images and incidents -------------------------------------------------------------------

_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


@rejects("registry_tag")
def normalize_registry_tag(t: Payload, repository: str) -> tuple[Row, Row]:
    """(image row, image_tag row) of a single-tag payload; GitLab's `revision` is never used."""
    f = Fields(t)
    tag = f.required("name")
    digest = f.required("digest")
    if not _DIGEST.fullmatch(digest):
        raise RejectedPayload(f"digest is not an algorithm:hex digest: {digest!r}")
    created_at = f.required_time("created_at")
    image = {"digest": digest, "repository": repository, "pushed_at": created_at}
    image_tag = {
        "repository": repository,
        "tag": tag,
        "digest": digest,
        "seen_at": created_at,
        "last_seen_at": created_at,
    }
    return image, image_tag


@rejects("incident")
def normalize_incident(i: Payload, source_id: int, service_id: int | None) -> Row:
    """The incident row of a GitLab incident issue; resolved only when closed."""
    f = Fields(i)
    closed = f.string("state") == "closed"
    return {
        "source_id": source_id,
        "external_id": f.ident("id"),
        "service_id": service_id,
        "title": f.string("title"),
        "severity": _severity(f),
        "opened_at": f.required_time("created_at"),
        "resolved_at": f.time("closed_at") if closed else None,
        "url": f.string("web_url"),
        "mentions": " ".join(incident_mentions(f.string("title"), f.string("description"))) or None,
    }


def _severity(issue: Fields) -> str | None:
    """GitLab's severity, unless it is the default UNKNOWN and a `severity::<x>` label says more."""
    given = issue.string("severity")
    labelled = None
    for i, label in enumerate(issue.array("labels")):
        name = label.get("name") if isinstance(label, Mapping) else label
        if not isinstance(name, str):
            raise RejectedPayload(f"labels[{i}] is not a label: {short(label)}")
        if name.lower().startswith("severity::") and labelled is None:
            labelled = name.split("::", 1)[1].strip()
    if given and (given.upper() != "UNKNOWN" or not labelled):
        return given.lower()
    return labelled.lower() if labelled else None
