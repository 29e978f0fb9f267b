"""Events in: `POST /events/cdevents`, `POST /webhooks/gitlab`, `POST /webhooks/jenkins`,
`POST /webhooks/sonarqube`.

Routes are thin: read the body (size-limited), parse JSON, hand it to the same normalisers and
write path as the importers (`collectors.cdevents`, `collectors.webhooks`, `collectors.events`)
in a worker thread, count, answer. A malformed event is answered 422 with the reason, is not
stored and is counted (`cdmetrics_events_rejected_total`); a CDEvents batch (a JSON array) is
all or nothing, so a sender can fix it and send it again, replays being stored once.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from collectors.cdevents import ImportSummary, Incoming, Rejection, import_events
from collectors.events import Event, WriteResult
from collectors.payload import RejectedPayload
from collectors.webhooks import GITLAB_WEBHOOKS, gitlab_event
from collectors.webhooks_jenkins import jenkins_event
from collectors.webhooks_sonarqube import webhook_event as sonarqube_event
from service.answers import BAD_REQUEST, SERVER
from service.auth import require_gitlab, require_jenkins, require_sonarqube, require_write
from service.state import ServiceState, state_of
from warehouse.schema import Deployment, Image, Incident

router = APIRouter(tags=["events in"])
_DERIVED_FROM = (Deployment, Incident, Image)  # what derive reads: a change makes it due


class RejectionModel(BaseModel):
    position: int = Field(description="1-based position in the batch (1 for a single event).")
    id: str | None = Field(None, description="The event's id, when it could be read.")
    reason: str


class IngestResult(BaseModel):
    received: int
    stored: int = Field(description="Events new or changed (a replay is not stored again).")
    duplicates: int
    ignored: int = Field(0, description="Valid events of kinds that yield no rows (kept raw).")
    rejected: list[RejectionModel] = []
    rows: dict[str, int] = Field(description="Rows inserted or changed, per table.")


class Refused(BaseModel):
    detail: str
    rejected: list[RejectionModel] = []


_JSON_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
    },
}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": IngestResult, "description": "Stored (replays are counted as duplicates)."},
    401: {"model": Refused, "description": "Missing or wrong credential."},
    403: {"model": Refused, "description": "The scope's secret is not configured on the server."},
    413: {"model": Refused, "description": "The body is over the size limit."},
    422: {"model": Refused, "description": "Malformed event(s): nothing stored."},
    **BAD_REQUEST,
    **SERVER,
}


class Malformed(Exception):
    """A body or event that cannot be ingested; answered 422, counted, nothing stored."""

    def __init__(self, detail: str, rejected: list[Rejection]) -> None:
        super().__init__(detail)
        self.detail, self.rejected = detail, rejected


MAX_JSON_DEPTH = 64  # no event or webhook comes near; Python's parser overflows near 1,000
TOO_DEEP = f"the body is JSON nested deeper than {MAX_JSON_DEPTH} levels"


def json_depth(document: Any) -> int:
    """How deeply `document`'s arrays and objects nest (0 for a scalar), counted without
    recursion."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


async def json_body(request: Request) -> Any:
    """The request's JSON (the body size limit is enforced while it is read); raises Malformed
    when it is not JSON or nests deeper than MAX_JSON_DEPTH."""
    body = await request.body()
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise Malformed(f"the body is not JSON: {exc}", [Rejection(1, None, str(exc))]) from None
    except RecursionError:  # deeper than Python's parser goes
        raise Malformed(TOO_DEEP, [Rejection(1, None, TOO_DEEP)]) from None
    if json_depth(document) > MAX_JSON_DEPTH:
        raise Malformed(TOO_DEEP, [Rejection(1, None, TOO_DEEP)])
    return document


def _answer(state: ServiceState, endpoint: str, result: dict[str, Any]) -> JSONResponse:
    counters = state.counters
    counters.inc("cdmetrics_events_received_total", result.get("received", 0), endpoint=endpoint)
    counters.inc("cdmetrics_events_stored_total", result.get("stored", 0), endpoint=endpoint)
    counters.inc("cdmetrics_events_duplicate_total", result.get("duplicates", 0), endpoint=endpoint)
    return JSONResponse(result)


def refuse(state: ServiceState, endpoint: str, error: Malformed, received: int) -> JSONResponse:
    """The 422 answer for malformed input, counted."""
    state.counters.inc("cdmetrics_events_received_total", received, endpoint=endpoint)
    state.counters.inc(
        "cdmetrics_events_rejected_total", max(len(error.rejected), 1), endpoint=endpoint
    )
    content = {"detail": error.detail, "rejected": [vars(r) for r in error.rejected]}
    return JSONResponse(content, status_code=422)


# --- CDEvents ---------------------------------------------------------------------------------


def ingest_cdevents(state: ServiceState, document: Any) -> ImportSummary:
    """Store one CDEvent or a batch (all or nothing); raises Malformed listing every bad event."""
    items = document if isinstance(document, list) else [document]
    summary = import_events(
        state.engine,
        [Incoming(i + 1, item) for i, item in enumerate(items)],
        writer=state.writer,
        all_or_nothing=True,
    )
    if summary.rejected:
        detail = f"{len(summary.rejected)} of {summary.received} event(s) rejected; none stored"
        raise Malformed(detail, summary.rejected)
    if summary.changed_metrics:
        state.freshness.mark_dirty()
    return summary


@router.post(
    "/events/cdevents",
    dependencies=[Depends(require_write)],
    responses=_ANSWERS,
    openapi_extra={"requestBody": _JSON_BODY},
    summary="Receive CDEvents (v0.4, v0.5): one event, a JSON array, or a structured CloudEvent",
)
async def post_cdevents(request: Request) -> JSONResponse:
    state = state_of(request)
    document: Any = None
    try:
        document = await json_body(request)
        summary = await run_in_threadpool(ingest_cdevents, state, document)
    except Malformed as error:
        return refuse(state, "cdevents", error, _count(document))
    return _answer(state, "cdevents", summary.as_json())


def _count(document: Any) -> int:
    return len(document) if isinstance(document, list) else 1


# --- webhooks ---------------------------------------------------------------------------------


def write_webhook(state: ServiceState, raw_source: Any, event: Event) -> dict[str, Any]:
    """Store one webhook event; returns the answer's JSON."""
    result: WriteResult = state.writer.write(raw_source, [event])
    if result.changed(*_DERIVED_FROM):
        state.freshness.mark_dirty()
    ignored = int(not event.facts)
    return {**result.as_json(), "ignored": ignored, "rejected": [], "kind": event.stream}


def ingest_gitlab(state: ServiceState, payload: Any) -> dict[str, Any]:
    """Normalise and store one GitLab webhook payload."""
    try:
        event = gitlab_event(
            payload, state.gitlab_sources, schema_jobs=state.settings.metrics.schema_jobs
        )
    except RejectedPayload as exc:
        raise Malformed(str(exc), [Rejection(1, None, str(exc))]) from None
    return write_webhook(state, GITLAB_WEBHOOKS, event)


def ingest_jenkins(state: ServiceState, payload: Any) -> dict[str, Any]:
    """Normalise and store one Jenkins Notification-plugin payload."""
    build = payload.get("build") if isinstance(payload, dict) else None
    url = build.get("full_url") if isinstance(build, dict) else None
    source, config = state.jenkins_source(url if isinstance(url, str) else None)
    try:
        event = jenkins_event(
            payload,
            source,
            deploy_jobs=config.deploy_jobs,
            env_parameter=config.env_parameter,
            image_parameter=config.image_parameter,
            schema_jobs=state.settings.metrics.schema_jobs,
        )
    except RejectedPayload as exc:
        raise Malformed(str(exc), [Rejection(1, None, str(exc))]) from None
    return write_webhook(state, source, event)


def ingest_sonarqube(state: ServiceState, payload: Any) -> dict[str, Any]:
    """Normalise and store one SonarQube webhook payload (reading the analysis it reports from
    the configured server for its key: collectors.webhooks_sonarqube)."""
    try:
        source, event = sonarqube_event(payload, state.settings.sources.sonarqube, state.engine)
    except RejectedPayload as exc:
        raise Malformed(str(exc), [Rejection(1, None, str(exc))]) from None
    return write_webhook(state, source, event)


async def _webhook(request: Request, endpoint: str, ingest: Any) -> JSONResponse:
    state = state_of(request)
    try:
        payload = await json_body(request)
        answer = await run_in_threadpool(ingest, state, payload)
    except Malformed as error:
        return refuse(state, endpoint, error, 1)
    return _answer(state, endpoint, answer)


@router.post(
    "/webhooks/gitlab",
    dependencies=[Depends(require_gitlab)],
    responses=_ANSWERS,
    openapi_extra={"requestBody": _JSON_BODY},
    summary="Receive a GitLab webhook (push, merge request, pipeline, job, deployment)",
)
async def post_gitlab(request: Request) -> JSONResponse:
    return await _webhook(request, "gitlab", ingest_gitlab)


@router.post(
    "/webhooks/jenkins",
    dependencies=[Depends(require_jenkins)],
    responses=_ANSWERS,
    openapi_extra={"requestBody": _JSON_BODY},
    summary="Receive a Jenkins Notification-plugin event (JSON format)",
)
async def post_jenkins(request: Request) -> JSONResponse:
    return await _webhook(request, "jenkins", ingest_jenkins)


@router.post(
    "/webhooks/sonarqube",
    dependencies=[Depends(require_sonarqube)],
    responses=_ANSWERS,
    openapi_extra={"requestBody": _JSON_BODY},
    summary="Receive a SonarQube webhook (an analysis and its quality gate), HMAC-signed",
)
async def post_sonarqube(request: Request) -> JSONResponse:
    return await _webhook(request, "sonarqube", ingest_sonarqube)


__all__ = ["IngestResult", "Malformed", "Refused", "json_body", "refuse", "router"]
