"""GitLab REST v4 payloads for the generated organisation, as they looked at an instant `at`.

Shapes follow GitLab's API documentation and its own JSON schemas (checked by a test against
../shared/fixtures/gitlabhq). An object created after `at` does not exist; one that changed after
`at` is shown as it was (a pipeline still running, a merge request still open).
"""

from __future__ import annotations

import zlib
from bisect import bisect_right
from datetime import datetime
from typing import Any

from sandbox.image_repos import ImageRepo
from sandbox.model import (
    Branch,
    Commit,
    Deployment,
    Developer,
    Environment,
    Image,
    Incident,
    Job,
    MergeRequest,
    Note,
    Pipeline,
    Service,
)
from sandbox.pipelines import digest_of


def ts(value: datetime | None) -> str | None:
    """GitLab's timestamp form: UTC with milliseconds and Z."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def user(dev: Developer, base: str) -> dict[str, Any]:
    return {
        "id": dev.id,
        "username": dev.username,
        "name": dev.name,
        "state": "active",
        "locked": False,
        "avatar_url": f"https://www.gravatar.com/avatar/{dev.id:032x}?s=80&d=identicon",
        "web_url": f"{base}/{dev.username}",
    }


def project(s: Service, base: str, at: datetime) -> dict[str, Any]:
    namespace = s.path.rsplit("/", 1)[0]
    return {
        "id": s.project_id,
        "description": f"The {s.name} service",
        "name": s.name,
        "name_with_namespace": namespace.replace("/", " / ") + f" / {s.name}",
        "path": s.name,
        "path_with_namespace": s.path,
        "created_at": ts(s.created_at),
        "default_branch": s.default_branch,
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": f"git@sandbox.test:{s.path}.git",
        "http_url_to_repo": f"{base}/{s.path}.git",
        "web_url": f"{base}/{s.path}",
        "readme_url": None,
        "avatar_url": None,
        "forks_count": 0,
        "star_count": 0,
        "last_activity_at": ts(at),
        "visibility": "private",
        "archived": False,
        "empty_repo": False,
        "container_registry_image_prefix": s.image_repository,
        "namespace": {
            "id": zlib.crc32(namespace.encode()) % 100_000,
            "name": namespace.rsplit("/", 1)[-1],
            "path": namespace.rsplit("/", 1)[-1],
            "kind": "group",
            "full_path": namespace,
            "parent_id": None,
            "avatar_url": None,
            "web_url": f"{base}/groups/{namespace}",
        },
    }


def commit(s: Service, c: Commit, base: str, stats: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": c.sha,
        "short_id": c.sha[:8],
        "created_at": ts(c.committed_at),
        "parent_ids": list(c.parents),
        "title": c.title,
        "message": c.title + "\n",
        "author_name": c.author.name,
        "author_email": c.author.email,
        "authored_date": ts(c.authored_at),
        "committer_name": c.author.name,
        "committer_email": c.author.email,
        "committed_date": ts(c.committed_at),
        "trailers": {},
        "extended_trailers": {},
        "web_url": f"{base}/{s.path}/-/commit/{c.sha}",
    }
    if stats:
        body["stats"] = {
            "additions": c.additions,
            "deletions": c.deletions,
            "total": c.additions + c.deletions,
        }
    return body


def mr_commit(s: Service, c: Commit, base: str) -> dict[str, Any]:
    """A commit as a merge request's commits list it: GitLab reads them from the merge request's
    diff, which keeps no parents (`parent_ids` is empty)."""
    return {**commit(s, c, base), "parent_ids": []}


def branch_head(b: Branch, at: datetime) -> str | None:
    """The branch's head commit at `at` (None before its first push)."""
    index = bisect_right(b.heads, (at, "\uffff"))
    return b.heads[index - 1][1] if index else None


def branch(s: Service, b: Branch, base: str, at: datetime) -> dict[str, Any] | None:
    head = branch_head(b, at)
    if head is None or (b.deleted_at and b.deleted_at <= at):
        return None
    return {
        "name": b.name,
        "commit": commit(s, s.commits[head], base),
        "merged": bool(b.merged_at and b.merged_at <= at),
        "protected": b.protected,
        "developers_can_push": False,
        "developers_can_merge": False,
        "can_push": True,
        "default": b.name == s.default_branch,
        "web_url": f"{base}/{s.path}/-/tree/{b.name}",
    }


def _deleted_at(s: Service, name: str) -> datetime | None:
    branch = s.branches.get(name)
    return branch.deleted_at if branch else None


def unlisted_commits(s: Service, at: datetime) -> set[str]:
    """Commits that no branch reaches at `at`: those of a squash-merged merge request whose source
    branch was deleted on merge (they live on only in the merge request's commits)."""
    return {
        sha
        for mr in s.merge_requests
        if mr.squash and (deleted := _deleted_at(s, mr.source_branch)) and deleted <= at
        for sha in mr.commits
    }


def mr_state(mr: MergeRequest, at: datetime) -> tuple[str, datetime]:
    """(state, updated_at) of a merge request at `at`."""
    if mr.merged_at and mr.merged_at <= at:
        return "merged", mr.merged_at
    if mr.closed_at and mr.closed_at <= at:
        return "closed", mr.closed_at
    notes = [n.created_at for n in mr.notes if mr.created_at <= n.created_at <= at]
    return "opened", max([mr.created_at, *notes])


def merge_request(s: Service, mr: MergeRequest, base: str, at: datetime) -> dict[str, Any]:
    state, updated = mr_state(mr, at)
    merged = state == "merged"
    author = user(mr.author, base)
    merger = user(mr.merged_by, base) if merged and mr.merged_by else None
    return {
        "id": mr.id,
        "iid": mr.iid,
        "project_id": s.project_id,
        "title": mr.title,
        "description": f"Closes the {mr.title.lower()} work.",
        "state": state,
        "created_at": ts(mr.created_at),
        "updated_at": ts(updated),
        "merged_by": merger,
        "merge_user": merger,
        "merged_at": ts(mr.merged_at) if merged else None,
        "closed_by": author if state == "closed" else None,
        "closed_at": ts(mr.closed_at) if state == "closed" else None,
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "user_notes_count": sum(1 for n in mr.notes if n.created_at <= at and not n.system),
        "upvotes": 0,
        "downvotes": 0,
        "author": author,
        "assignees": [author],
        "assignee": author,
        "reviewers": [user(a, base) for a in mr.approvers],
        "source_project_id": s.project_id,
        "target_project_id": s.project_id,
        "labels": [],
        "draft": False,
        "work_in_progress": False,
        "milestone": None,
        "merge_when_pipeline_succeeds": False,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "mergeable" if not merged else "not_open",
        "sha": [sha for sha in mr.commits if s.commits[sha].committed_at <= at][-1],
        "merge_commit_sha": mr.merge_commit_sha if merged else None,
        "squash_commit_sha": mr.squash_commit_sha if merged else None,
        "discussion_locked": None,
        "should_remove_source_branch": None,
        "force_remove_source_branch": _deleted_at(s, mr.source_branch) is not None,
        "reference": f"!{mr.iid}",
        "references": {
            "short": f"!{mr.iid}",
            "relative": f"!{mr.iid}",
            "full": f"{s.path}!{mr.iid}",
        },
        "web_url": f"{base}/{s.path}/-/merge_requests/{mr.iid}",
        "time_stats": {
            "time_estimate": 0,
            "total_time_spent": 0,
            "human_time_estimate": None,
            "human_total_time_spent": None,
        },
        "squash": mr.squash,
        "squash_on_merge": mr.squash,
        "has_conflicts": False,
        "approvals_before_merge": None,
        "blocking_discussions_resolved": True,
        "task_completion_status": {"count": 0, "completed_count": 0},
    }


def approvals(s: Service, mr: MergeRequest, base: str, at: datetime) -> dict[str, Any]:
    """`/approvals` as of `at`: the approvals its system notes record by then (GitLab writes one
    on each approval and withdrawal), so the endpoint and the notes always agree."""
    state, updated = mr_state(mr, at)
    approved: dict[str, Developer] = {}
    for n in sorted(mr.notes, key=lambda n: (n.created_at, n.id)):
        if n.system and n.created_at <= at and n.body == "approved this merge request":
            approved[n.author.username] = n.author
        elif n.system and n.created_at <= at and n.body == "unapproved this merge request":
            approved.pop(n.author.username, None)
    return {
        "id": mr.id,
        "iid": mr.iid,
        "project_id": s.project_id,
        "title": mr.title,
        "description": "",
        "state": state,
        "created_at": ts(mr.created_at),
        "updated_at": ts(updated),
        "merge_status": "can_be_merged",
        "approved": bool(approved),
        "approvals_required": 1,
        "approvals_left": 0 if approved else 1,
        "require_password_to_approve": False,
        "approved_by": [{"user": user(a, base)} for a in approved.values()],
        "suggested_approvers": [],
        "approvers": [],
        "approver_groups": [],
        "user_has_approved": False,
        "user_can_approve": False,
        "approval_rules_left": [],
        "has_approval_rules": False,
        "merge_request_approvers_available": False,
        "multiple_approval_rules_available": False,
    }


def note(s: Service, mr: MergeRequest, n: Note, base: str) -> dict[str, Any]:
    return {
        "id": n.id,
        "type": None,
        "body": n.body,
        "attachment": None,
        "author": user(n.author, base),
        "created_at": ts(n.created_at),
        "updated_at": ts(n.created_at),
        "system": n.system,
        "noteable_id": mr.id,
        "noteable_type": "MergeRequest",
        "project_id": s.project_id,
        "resolvable": False,
        "confidential": False,
        "internal": False,
        "noteable_iid": mr.iid,
        "commands_changes": {},
    }


# -- pipelines and jobs ---------------------------------------------------------------------


def job_state(j: Job, at: datetime) -> tuple[str, datetime | None, datetime | None]:
    """(status, started_at, finished_at) of a job at `at`."""
    if j.started_at is None or j.finished_at is None:
        return j.status, None, None  # skipped / manual: never ran
    if j.started_at > at:
        return "pending", None, None
    if j.finished_at > at:
        return "running", j.started_at, None
    return j.status, j.started_at, j.finished_at


def retried(j: Job, at: datetime) -> bool:
    """Whether a retry replaced job `j` by `at` (GitLab's `retried`)."""
    return j.retried_at is not None and j.retried_at <= at


def pipeline_state(p: Pipeline, at: datetime) -> dict[str, Any]:
    """status, started_at, finished_at, updated_at, duration and queued_duration at `at`: status
    and duration follow the latest jobs (a retried one left out), times every job."""
    jobs = [j for j in p.jobs if j.created_at <= at]
    states = [job_state(j, at) for j in jobs]
    latest = [(state, j) for state, j in zip(states, jobs, strict=True) if not retried(j, at)]
    blocking = [st for (st, _, _), j in latest if not j.allow_failure or st != "failed"]
    if any(st in ("running", "pending") for st in blocking):
        status = "running" if any(st == "running" for st in blocking) else "pending"
    elif "failed" in blocking:
        status = "failed"
    elif "canceled" in blocking:
        status = "canceled"
    elif blocking and all(st in ("skipped", "manual") for st in blocking):
        status = "skipped"
    else:
        status = "success"
    starts = [start for _, start, _ in states if start]
    ends = [end for _, _, end in states if end]
    started = min(starts) if starts else None
    finished = max(ends) if ends and status not in ("running", "pending") else None
    durations = [(end - start).total_seconds() for (_, start, end), _ in latest if start and end]
    retries = [j.retried_at for j in jobs if j.retried_at is not None and j.retried_at <= at]
    return {
        "status": status,
        "started_at": started,
        "finished_at": finished,
        "updated_at": max([p.created_at, *starts, *ends, *retries]),
        "duration": int(sum(durations)) if finished else None,
        "queued_duration": round((started - p.created_at).total_seconds(), 3) if started else None,
    }


def pipeline(
    s: Service, p: Pipeline, base: str, at: datetime, detail: bool = False
) -> dict[str, Any]:
    state = pipeline_state(p, at)
    body = {
        "id": p.id,
        "iid": p.iid,
        "project_id": s.project_id,
        "sha": p.sha,
        "ref": p.ref,
        "status": state["status"],
        "source": p.source,
        "created_at": ts(p.created_at),
        "updated_at": ts(state["updated_at"]),
        "web_url": f"{base}/{s.path}/-/pipelines/{p.id}",
        "name": None,
    }
    if detail:
        body.update(
            {
                "before_sha": "0" * 40,
                "tag": p.tag,
                "yaml_errors": None,
                "user": user(p.user, base),
                "started_at": ts(state["started_at"]),
                "finished_at": ts(state["finished_at"]),
                "committed_at": None,
                "duration": state["duration"],
                "queued_duration": state["queued_duration"],
                "coverage": None,
                "archived": False,
                "detailed_status": {
                    "icon": f"status_{state['status']}",
                    "text": state["status"],
                    "label": state["status"],
                    "group": state["status"],
                    "tooltip": state["status"],
                    "has_details": True,
                    "details_path": f"/{s.path}/-/pipelines/{p.id}",
                    "illustration": None,
                    "favicon": f"/assets/ci_favicons/favicon_status_{state['status']}.png",
                },
            }
        )
    return body


def job(s: Service, p: Pipeline, j: Job, base: str, at: datetime) -> dict[str, Any]:
    status, started, finished = job_state(j, at)
    duration = (finished - started).total_seconds() if started and finished else None
    queued = (started - j.created_at).total_seconds() if started else None
    body: dict[str, Any] = {
        "id": j.id,
        "status": status,
        "stage": j.stage,
        "name": j.name,
        "ref": p.ref,
        "tag": p.tag,
        "coverage": None,
        "allow_failure": j.allow_failure,
        "created_at": ts(j.created_at),
        "started_at": ts(started),
        "finished_at": ts(finished),
        "erased_at": None,
        "duration": duration,
        "queued_duration": queued,
        "user": user(p.user, base),
        "commit": commit(s, s.commits[p.sha], base),
        "pipeline": pipeline(s, p, base, at),
        "web_url": f"{base}/{s.path}/-/jobs/{j.id}",
        "project": {"ci_job_token_scope_enabled": False},
        "artifacts": [],
        "artifacts_expire_at": None,
        "tag_list": ["docker"],
        "runner": None,
        "runner_manager": None,
        "archived": False,
    }
    if status == "failed":
        body["failure_reason"] = "script_failure"
    return body


def test_report_summary(p: Pipeline, at: datetime) -> dict[str, Any]:
    # the latest test job that has finished by `at` (a retry's, once it has)
    done = [j for j in p.jobs if j.stage == "test" and j.finished_at and j.finished_at <= at]
    test = max(done, key=lambda j: j.created_at, default=None)
    suites = p.test_suites if test else []
    rows: list[dict[str, Any]] = [
        {
            "name": t.name,
            "total_time": t.seconds,
            "total_count": t.total,
            "success_count": t.total - t.failed - t.skipped - t.errors,
            "failed_count": t.failed,
            "skipped_count": t.skipped,
            "error_count": t.errors,
            "build_ids": [test.id] if test else [],
            "suite_error": None,
        }
        for t in suites
    ]
    total = {
        "time": round(sum(r["total_time"] for r in rows), 2),
        "count": sum(r["total_count"] for r in rows),
        "success": sum(r["success_count"] for r in rows),
        "failed": sum(r["failed_count"] for r in rows),
        "skipped": sum(r["skipped_count"] for r in rows),
        "error": sum(r["error_count"] for r in rows),
        "suite_error": None,
    }
    return {"total": total, "test_suites": rows}


# -- environments, deployments, registry, incidents -----------------------------------------


def environment(s: Service, e: Environment, base: str) -> dict[str, Any]:
    slug = e.name.lower()
    return {
        "id": e.id,
        "name": e.name,
        "slug": slug,
        "description": None,
        "external_url": f"https://{slug}.{s.name}.sandbox.test",
        "state": "available",
        "tier": e.tier,
        "created_at": ts(e.created_at),
        "updated_at": ts(e.created_at),
        "auto_stop_at": None,
    }


def deployment(s: Service, d: Deployment, base: str, at: datetime) -> dict[str, Any]:
    status, _, _ = job_state(d.job, at)
    deploy_status = {
        "success": "success",
        "failed": "failed",
        "running": "running",
        "pending": "created",
        "canceled": "canceled",
    }.get(status, "created")
    return {
        "id": d.id,
        "iid": d.iid,
        "ref": d.ref,
        "sha": d.sha,
        "created_at": ts(d.created_at),
        "updated_at": ts(deployment_updated_at(d, at)),
        "status": deploy_status,
        "user": user(d.user, base),
        "environment": environment(s, d.environment, base),
        "deployable": job(s, d.pipeline, d.job, base, at),
    }


def deployment_updated_at(d: Deployment, at: datetime) -> datetime:
    _, started, finished = job_state(d.job, at)
    return finished or started or d.created_at


def registry_repository(r: ImageRepo, base: str, at: datetime, tags: bool) -> dict[str, Any]:
    s = r.service
    body: dict[str, Any] = {
        "id": r.id,
        "name": r.name,
        "path": r.path,
        "project_id": s.project_id,
        "location": r.location,
        "created_at": ts(s.created_at),
        "cleanup_policy_started_at": None,
        "status": None,
        "tags_count": len(current_tags(r, at)),
    }
    if tags:
        body["tags"] = [
            {"name": name, "path": f"{r.path}:{name}", "location": f"{r.location}:{name}"}
            for name in sorted(current_tags(r, at))
        ]
    return body


def current_tags(s: ImageRepo, at: datetime) -> dict[str, tuple[str, datetime]]:
    """tag -> (digest, pushed at) as repository `s` held them at `at`: each tag's newest push
    (`tag_history` is in generation order, and a hotfix build is generated after later builds)."""
    tags: dict[str, tuple[str, datetime]] = {}
    for tag, digest, pushed in s.tag_history:
        if pushed <= at and (tag not in tags or pushed >= tags[tag][1]):
            tags[tag] = (digest, pushed)
    return tags


def registry_tag(
    r: ImageRepo, name: str, digest: str, pushed: datetime, image: Image | None
) -> dict[str, Any]:
    config = digest_of("config", digest)  # GitLab calls the config digest "revision"
    return {
        "name": name,
        "path": f"{r.path}:{name}",
        "location": f"{r.location}:{name}",
        "revision": config.removeprefix("sha256:"),
        "short_revision": config.removeprefix("sha256:")[:9],
        "digest": digest,
        "created_at": ts(pushed),
        "total_size": 48_000_000 + (image.pipeline_id if image else 0),
    }


def incident_updated_at(i: Incident, at: datetime) -> datetime:
    """When GitLab last updated the incident as of `at` (never before its creation, even when its
    resolution reads earlier: `sandbox.incidents`)."""
    if i.closed_at is not None and i.closed_at <= at:
        return max(i.closed_at, i.created_at)
    return i.created_at


def incident(s: Service, i: Incident, base: str, at: datetime) -> dict[str, Any]:
    closed = i.closed_at is not None and i.closed_at <= at
    author = user(i.author, base)
    return {
        "id": i.id,
        "iid": i.iid,
        "project_id": s.project_id,
        "title": i.title,
        "description": "Error rate above the SLO after the last production deployment."
        + (f" {i.tracked_in}" if i.tracked_in else ""),
        "state": "closed" if closed else "opened",
        "created_at": ts(i.created_at),
        "updated_at": ts(incident_updated_at(i, at)),
        "closed_at": ts(i.closed_at) if closed else None,
        "closed_by": author if closed else None,
        "labels": [f"severity::{i.severity}"],
        "milestone": None,
        "assignees": [author],
        "assignee": author,
        "author": author,
        "type": "INCIDENT",
        "issue_type": "incident",
        "user_notes_count": 0,
        "merge_requests_count": 0,
        "upvotes": 0,
        "downvotes": 0,
        "due_date": None,
        "confidential": False,
        "discussion_locked": None,
        "web_url": f"{base}/{s.path}/-/issues/{i.iid}",
        "time_stats": {
            "time_estimate": 0,
            "total_time_spent": 0,
            "human_time_estimate": None,
            "human_total_time_spent": None,
        },
        "severity": i.severity.upper(),
        "health_status": None,
    }
