"""GitLab webhook payloads into warehouse rows: pure functions (Jenkins notifications:
`collectors.webhooks_jenkins`).

Each function takes one payload as posted and returns an `Event` (raw payload, stream, external
id, rows with their dimensions by reference), or raises `RejectedPayload` naming the field and why.
GitLab's REST normalisers are reused where the webhook shape matches (pipeline, deployment,
deployment kind, statuses); the rest differ enough to be read here.

Decisions where DESIGN.md is silent:
- Raw payloads are kept per kind (`webhook:push`, `webhook:pipeline`, ...) under the object's id
  plus the payload's hash: a replay is the same row, a later state of the object a new one.
- A row carries only what the webhook knows: a push's commits have a commit date (GitLab's
  `timestamp` is the committed date) but no author date or parents; an MR event has no merge
  time, so `merged_at`/`closed_at` are the update time of the `merge`/`close` action; the author
  is the acting user only on `open`; a deployment finishes when its status changed
  (`status_changed_at`), its commit is read from `commit_url`.
- Webhook timestamps come as ISO 8601 or GitLab's `2016-08-12 15:23:28 UTC` / `+0200` forms.
- Job events come as `object_kind` `build` (fields `build_*`) or `job` (`job_*`).
- Other GitLab events (tag push, issue, note, release, ...) are stored raw and yield no rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from collectors.events import Event, Fact
from collectors.gitlab_normalize import normalize_deployment, normalize_pipeline
from collectors.payload import Fields, RejectedPayload, Row, parse_time, rejects
from collectors.refs import EnvironmentRef, RepoRef, ServiceRef, SourceRef
from config.settings import SCHEMA_JOBS
from warehouse.raw import payload_hash
from warehouse.schema import Branch, Commit, Deployment, Job, MergeRequest, Pipeline
from warehouse.vocabulary import gitlab_status

GITLAB_WEBHOOKS = SourceRef("gitlab-webhooks", "gitlab")
_ZERO_SHA = re.compile(r"^0+$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_GITLAB_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*(UTC|Z|[+-]\d{2}:?\d{2})$"
)


def webhook_time(value: Any, field: str) -> datetime | None:
    """The aware UTC datetime of a webhook timestamp (ISO 8601 or `2016-08-12 15:23:28 UTC`)."""
    if isinstance(value, str):
        m = _GITLAB_TIME.match(value.strip())
        if m:
            zone = "+00:00" if m.group(3) in ("UTC", "Z") else m.group(3)
            value = f"{m.group(1)}T{m.group(2)}{zone}"
    return parse_time(value, field)


def _time(f: Fields, key: str) -> datetime | None:
    return webhook_time(f.raw(key), f.name(key))


def _iso(value: Any, field: str) -> Any:
    """A webhook timestamp in the ISO form the REST normalisers read (other values unchanged)."""
    parsed = webhook_time(value, field) if isinstance(value, str) and value else None
    return parsed.isoformat() if parsed else value


def external_id(object_id: str, payload: Any) -> str:
    return f"{object_id}:{payload_hash(payload)[:16]}"


# --- GitLab -----------------------------------------------------------------------------------


def gitlab_source_for(project_url: str | None, sources: Sequence[tuple[str, str]]) -> SourceRef:
    """The configured GitLab source (name, url) a project belongs to, by its web URL, so webhook
    rows and polled rows share natural keys; else the `gitlab-webhooks` source."""
    if project_url:
        for name, url in sources:
            base = url.rstrip("/") + "/"
            if project_url.startswith(base):
                return SourceRef(name, "gitlab", url)
    return GITLAB_WEBHOOKS


@rejects("gitlab webhook")
def gitlab_event(
    payload: Any,
    sources: Sequence[tuple[str, str]] = (),
    schema_jobs: str = SCHEMA_JOBS,
) -> Event:
    """The event of one GitLab webhook payload (push, merge request, pipeline, job, deployment;
    other kinds are kept raw without rows)."""
    f = Fields(payload)
    kind = f.required("object_kind")
    if kind == "push":
        return _push(f, payload, sources)
    if kind == "merge_request":
        return _merge_request(f, payload, sources)
    if kind == "pipeline":
        return _pipeline(f, payload, sources)
    if kind in ("build", "job"):
        return _job(f, payload, sources)
    if kind == "deployment":
        return _deployment(f, payload, sources, schema_jobs)
    attributes = f.raw("object_attributes")
    object_id = attributes.get("id") if isinstance(attributes, dict) else None
    return Event(f"webhook:{kind}", external_id(str(object_id or kind), payload), payload)


def _project(f: Fields, sources: Sequence[tuple[str, str]]) -> tuple[SourceRef, ServiceRef]:
    """(the source its rows belong to, the project's service with its repository)."""
    p = f.obj("project")
    path = p.required("path_with_namespace")
    web_url = p.string("web_url")
    source = gitlab_source_for(web_url, sources)
    repo = RepoRef(source, p.ident("id"), path, p.string("default_branch"), web_url)
    parts = path.split("/")
    return source, ServiceRef(parts[-1], repo, parts[-2] if len(parts) > 1 else None)


def _push(f: Fields, payload: Any, sources: Sequence[tuple[str, str]]) -> Event:
    _, service = _project(f, sources)
    repo = service.repo
    after = f.required("after")
    facts = []
    last_commit_at = None
    for c in f.objects("commits"):
        sha = c.required("id")
        author = c.obj("author")
        committed = _time(c, "timestamp")
        row: Row = {"repo_id": repo, "sha": sha, "committed_at": committed}
        title = c.string("title") or (c.string("message") or "").split("\n", 1)[0] or None
        row.update(known(title=title, author_name=author.string("name")))
        row.update(known(author_email=author.string("email")))
        facts.append(Fact(Commit, row))
        if sha == after:
            last_commit_at = committed
    ref = f.required("ref")
    if ref.startswith("refs/heads/") and not _ZERO_SHA.match(after):
        name = ref.removeprefix("refs/heads/")
        branch: Row = {"repo_id": repo, "name": name, "head_sha": after}
        branch["is_default"] = name == f.obj("project").string("default_branch")
        if f.has("ref_protected"):
            branch["protected"] = f.flag("ref_protected")
        if last_commit_at is not None:
            branch["last_commit_at"] = last_commit_at
        facts.append(Fact(Branch, branch))
    object_id = f"{f.obj('project').ident('id')}:{after}"
    return Event("webhook:push", external_id(object_id, payload), payload, facts, [service])


def _merge_request(f: Fields, payload: Any, sources: Sequence[tuple[str, str]]) -> Event:
    _, service = _project(f, sources)
    a = f.obj("object_attributes")
    iid = a.integer("iid")
    if iid is None:
        raise RejectedPayload("missing object_attributes.iid")
    updated_at = _time(a, "updated_at")
    row: Row = {
        "repo_id": service.repo,
        "iid": iid,
        "external_id": a.ident("id"),
        "state": a.required("state"),
        "created_at": _time(a, "created_at"),
        "updated_at": updated_at,
    }
    row.update(known(title=a.string("title"), web_url=a.string("url")))
    row.update(known(source_branch=a.string("source_branch")))
    row.update(known(target_branch=a.string("target_branch")))
    row.update(known(head_sha=a.obj("last_commit").string("id")))
    row.update(known(merge_commit_sha=a.string("merge_commit_sha")))
    row.update(known(squash_commit_sha=a.string("squash_commit_sha")))
    if a.has("draft") or a.has("work_in_progress"):
        row["draft"] = a.flag("draft") or a.flag("work_in_progress")
    if a.has("squash"):
        row["squash"] = a.flag("squash")
    action, actor = a.string("action"), f.obj("user").string("username")
    if action == "open" and actor:
        row["author"] = actor
    if action == "merge":
        row.update(known(merged_at=updated_at, merged_by=actor))
    if action == "close":
        row.update(known(closed_at=updated_at))
    facts = [Fact(MergeRequest, row)]
    return Event(
        "webhook:merge_request",
        external_id(row["external_id"], payload),
        payload,
        facts,
        [service],
    )


def _pipeline(f: Fields, payload: Any, sources: Sequence[tuple[str, str]]) -> Event:
    source, service = _project(f, sources)
    a = f.obj("object_attributes")
    rest = {
        "id": a.raw("id"),
        "status": a.raw("status"),
        "ref": a.raw("ref"),
        "sha": a.raw("sha"),
        "source": a.raw("source"),
        "created_at": _iso(a.raw("created_at"), a.name("created_at")),
        "web_url": a.raw("url"),
    }
    for key in ("started_at", "finished_at", "duration", "queued_duration"):
        if a.has(key):
            rest[key] = _iso(a.raw(key), a.name(key))
    row = normalize_pipeline(rest, 0, 0)
    row.update(source_id=source, repo_id=service.repo)
    del row["updated_at"]  # a webhook does not say; the poll's value stays
    for column, key in (("web_url", "url"), ("trigger", "source")):
        if not a.has(key):
            del row[column]
    facts = [Fact(Pipeline, row)]
    jobs = f.objects("builds") if f.has("builds") else f.objects("jobs")
    facts.extend(Fact(Job, _job_row(j, source, row["external_id"], "")) for j in jobs)
    return Event(
        "webhook:pipeline", external_id(row["external_id"], payload), payload, facts, [service]
    )


# job columns and the key each is read from (after the event's prefix: `build_` in job events)
_JOB_FIELDS = (
    ("stage", "stage"),
    ("created_at", "created_at"),
    ("started_at", "started_at"),
    ("finished_at", "finished_at"),
    ("duration_s", "duration"),
    ("queued_s", "queued_duration"),
    ("allow_failure", "allow_failure"),
)


def _job_row(j: Fields, source: SourceRef, pipeline_id: str | None, prefix: str) -> Row:
    """A job row from a pipeline event's `builds[]` item or a job event (keys prefixed)."""
    status, raw_status = j.status(f"{prefix}status", gitlab_status)
    row: Row = {
        "source_id": source,
        "external_id": j.ident(f"{prefix}id"),
        "name": j.required(f"{prefix}name"),
        "status": status,
        "raw_status": raw_status,
    }
    if pipeline_id is not None:
        row["pipeline_external_id"] = pipeline_id
    for column, key in _JOB_FIELDS:
        key = prefix + key
        if not j.has(key):
            continue
        if column.endswith("_at"):
            row[column] = _time(j, key)
        elif column.endswith("_s"):
            row[column] = j.number(key)
        elif column == "allow_failure":
            row[column] = j.flag(key)
        else:
            row[column] = j.string(key)
    return row


def _job(f: Fields, payload: Any, sources: Sequence[tuple[str, str]]) -> Event:
    prefix = "build_" if f.has("build_id") else "job_"
    url = f.obj("project").string("web_url") or f.obj("repository").string("homepage")
    source = gitlab_source_for(url, sources)
    pipeline = f.ident("pipeline_id") if f.raw("pipeline_id") is not None else None
    row = _job_row(f, source, pipeline, prefix)
    return Event("webhook:job", external_id(row["external_id"], payload), payload, [Fact(Job, row)])


def _deployment(
    f: Fields, payload: Any, sources: Sequence[tuple[str, str]], schema_jobs: str
) -> Event:
    source, service = _project(f, sources)
    environment = EnvironmentRef(f.required("environment"), f.string("environment_tier"))
    commit = (f.string("commit_url") or "").rstrip("/").rsplit("/", 1)[-1]
    rest = {
        "id": f.raw("deployment_id"),
        "status": f.raw("status"),
        "updated_at": _iso(f.raw("status_changed_at"), "status_changed_at"),
        "environment": {"name": environment.raw_name},
        "ref": f.raw("ref"),
        "sha": commit if _SHA.match(commit) else None,
        "deployable": {"web_url": f.raw("deployable_url")},
        "user": f.raw("user"),
    }
    row = normalize_deployment(
        rest, 0, repo_id=0, service_id=None, environment_id=None, schema_jobs=schema_jobs
    )
    row.update(source_id=source, repo_id=service.repo, service_id=service)
    row["environment_id"] = environment
    for column in ("created_at", "started_at", "pipeline_external_id", "kind", "schema_version"):
        del row[column]  # not in a deployment event: what a poll found stays
    for column in ("finished_at", "sha", "deployer", "url", "ref"):
        if row[column] is None:
            del row[column]
    facts = [Fact(Deployment, row)]
    return Event(
        "webhook:deployment", external_id(row["external_id"], payload), payload, facts, [service]
    )


def known(**values: Any) -> Row:
    return {k: v for k, v in values.items() if v is not None}


__all__ = [
    "GITLAB_WEBHOOKS",
    "external_id",
    "gitlab_event",
    "gitlab_source_for",
    "known",
    "webhook_time",
]
