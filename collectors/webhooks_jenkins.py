"""Jenkins Notification-plugin payloads (JSON format) into warehouse rows: pure functions.

Decisions where DESIGN.md is silent (ids and parameter semantics follow the Jenkins collector):
- A build is `<job full name>#<number>`, the full name read from the job URL (`job/a/job/b/` ->
  `a/b`; the notification's `name` lacks folders). The branch loses `origin/`.
- The plugin's status of a STARTED build is the previous build's, so only COMPLETED/FINALIZED
  carry a result. COMPLETED's timestamp is start + duration (the finish); FINALIZED's is the time
  of finalisation, so its times are only written for a build not seen before.
- A job matching `deploy_jobs` is also a deployment: service from the pattern's `service` group,
  environment and image from the configured parameters, finished at start + duration; a deploy
  build without the environment parameter is rejected. A test summary is one `test_run` row.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from collectors.events import Event, Fact, parse_image
from collectors.gitlab_normalize import deployment_kind
from collectors.payload import Fields, RejectedPayload, Row, parse_time, rejects
from collectors.refs import EnvironmentRef, Ref, ServiceRef, SourceRef
from collectors.webhooks import external_id, known
from config.settings import DEPLOY_JOBS, ENV_PARAMETER, IMAGE_PARAMETER, SCHEMA_JOBS
from warehouse.schema import Deployment, Pipeline, TestRun
from warehouse.vocabulary import PENDING, RUNNING, jenkins_status

JENKINS_WEBHOOKS = SourceRef("jenkins-webhooks", "jenkins")


def jenkins_full_name(job_url: str | None, name: str) -> str:
    """`job/folder/job/name/` -> `folder/name` (the notification's `name` lacks folders)."""
    if job_url:
        parts = job_url.strip("/").split("/")
        names = [parts[i + 1] for i in range(len(parts) - 1) if parts[i] == "job"]
        if names:
            return "/".join(names)
    return name


def _jenkins_time(value: Any, field: str) -> datetime | None:
    """The plugin's timestamp: epoch milliseconds (current) or `2015-05-04T10:20:30.0+00:00`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    return parse_time(value, field)


@rejects("jenkins notification")
def jenkins_event(
    payload: Any,
    source: SourceRef = JENKINS_WEBHOOKS,
    *,
    deploy_jobs: str = DEPLOY_JOBS,
    env_parameter: str = ENV_PARAMETER,
    image_parameter: str = IMAGE_PARAMETER,
    schema_jobs: str = SCHEMA_JOBS,
) -> Event:
    """The event of one Notification-plugin JSON payload: the build (a pipeline row), its test
    summary, and a deployment when the job is a deploy job."""
    f = Fields(payload)
    build = f.obj("build")
    job = jenkins_full_name(f.string("url"), f.required("name"))
    number = build.integer("number")
    if number is None:
        raise RejectedPayload("missing build.number")
    phase = build.required("phase").upper()
    build_id = f"{job}#{number}"
    at = _jenkins_time(build.raw("timestamp"), build.name("timestamp"))
    duration = build.number("duration")
    seconds = duration / 1000 if duration is not None else None
    finished = phase in ("COMPLETED", "FINALIZED")
    if finished:
        status, raw_status = build.status("status", jenkins_status)
    else:
        status, raw_status = (RUNNING if phase == "STARTED" else PENDING), phase
    times = _build_times(phase, at, seconds)
    scm = build.obj("scm")
    ref = _ref_name(scm.string("branch"))
    row: Row = {"source_id": source, "external_id": build_id, "job_name": job}
    row.update(status=status, raw_status=raw_status)
    row.update(known(ref=ref, sha=scm.string("commit"), web_url=build.string("full_url")))
    if finished and seconds is not None:
        row["duration_s"] = seconds
    facts = _with_times(Pipeline, row, times, phase)
    tests = build.obj("test_summary")
    if build.raw("test_summary") is not None:
        facts.append(Fact(TestRun, _test_row(source, build_id, tests)))
    match = re.search(deploy_jobs, job)
    service_name = (match.groupdict().get("service") or job) if match else None
    dimensions: list[Ref] = []
    if match and service_name:
        parameters = build.obj("parameters")
        deployment = _jenkins_deployment(row, parameters, env_parameter, image_parameter)
        service = ServiceRef(service_name)
        kind, version = deployment_kind(job, schema_jobs)
        deployment.update(service_id=service, kind=kind)
        deployment.update(known(schema_version=version or _schema_version(parameters)))
        facts.extend(_with_times(Deployment, deployment, times, phase))
        dimensions.append(service)
    return Event(
        "webhook:jenkins",
        external_id(f"{build_id}:{phase}", payload),
        payload,
        facts,
        dimensions,
    )


def _ref_name(branch: str | None) -> str | None:
    """`origin/main`, `refs/remotes/origin/main`, `refs/heads/main` -> `main` (as the collector)."""
    for prefix in ("refs/remotes/origin/", "origin/", "refs/heads/"):
        if branch and branch.startswith(prefix):
            return branch[len(prefix) :]
    return branch or None


def _build_times(phase: str, at: datetime | None, seconds: float | None) -> Row:
    if at is None:
        return {}
    if phase == "STARTED":
        return {"started_at": at}
    if phase in ("COMPLETED", "FINALIZED") and seconds is not None:
        return {"started_at": at - timedelta(seconds=seconds), "finished_at": at}
    return {"created_at": at} if phase == "QUEUED" else {}


def _with_times(table: Any, row: Row, times: Row, phase: str) -> list[Fact]:
    """FINALIZED's timestamp is not the finish: its times only fill a build not seen before."""
    if phase == "FINALIZED":
        return [Fact(table, {**row, **times}, mode="insert"), Fact(table, row)]
    return [Fact(table, {**row, **times})]


def _jenkins_deployment(
    build_row: Row, parameters: Fields, env_parameter: str, image_parameter: str
) -> Row:
    environment = parameters.string(env_parameter)
    if not environment:
        raise RejectedPayload(f"deploy job without build.parameters.{env_parameter}")
    image = parse_image(parameters.string(image_parameter))
    row: Row = {
        "source_id": build_row["source_id"],
        "external_id": build_row["external_id"],
        "environment_id": EnvironmentRef(environment),
        "raw_environment": environment,
        "status": build_row["status"],
        "raw_status": build_row["raw_status"],
        "image_resolution": "explicit" if image.digest else "none",
    }
    row.update(known(image_digest=image.digest, image_ref=image.reference or None))
    row.update(known(sha=build_row.get("sha"), ref=build_row.get("ref")))
    row.update(known(url=build_row.get("web_url")))
    return row


def _schema_version(parameters: Fields) -> str | None:
    for name in ("SCHEMA_VERSION", "MIGRATION_VERSION", "DB_VERSION"):
        if parameters.string(name):
            return parameters.string(name)
    return None


def _test_row(source: SourceRef, pipeline_id: str, tests: Fields) -> Row:
    return {
        "source_id": source,
        "pipeline_external_id": pipeline_id,
        "suite": "all",
        "total": tests.integer("total") or 0,
        "failed": tests.integer("failed") or 0,
        "skipped": tests.integer("skipped") or 0,
        "errors": 0,
    }


__all__ = ["JENKINS_WEBHOOKS", "jenkins_event", "jenkins_full_name"]
