"""The analytics API: `GET /api/v1/metrics`, `/api/v1/drift`, `/api/v1/violations` (read scope)
and `POST /api/v1/gate` (write scope), with the scope parameters of the CLI.

Each answers the JSON of its CLI command (`metrics`, `drift`, `policy scan`, `gate` with
`--format json`; docs/METRICS.md, docs/POLICIES.md), computed by the same analytics, after deriving
what the events received so far changed. The gate answers 200 with `decision` allow or deny (the
decision is the answer; a pipeline tests `.decision`). When it cannot decide it answers
`decision: error` with the reason, as `cdmetrics gate` exits 2: 404 unknown service or
environment, 503 warehouse unavailable or timed out, 500 any other failure. Callers fail closed
unless they choose not to.

Limits: periods lie within 1970-01-01 .. 2100-01-01, `by=week|month` gives at most MAX_SLICES
slices (422 naming the limit otherwise), and a read stops when its client disconnects
(`service.cancel`).
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from analytics import drift as drift_analytics
from analytics import gate as gate_analytics
from analytics.metrics import metrics
from analytics.scope import PeriodError, Scope, parse_moment
from analytics.stats import months_between, weeks_between
from service import views
from service.answers import AUTH, BAD_REQUEST, INVALID, READ_ANSWERS
from service.auth import require_read, require_write
from service.cancel import until_disconnect
from service.state import state_of

router = APIRouter(prefix="/api/v1", tags=["analytics"])
log = logging.getLogger(__name__)


# A period (within analytics.scope's EARLIEST .. LATEST) slices into at most MAX_SLICES weeks or
# months.
MAX_SLICES = 520
# Dates and timestamps are strings the service parses (naive ones in the configured zone).
DATE_TIME = WithJsonSchema({"type": "string", "format": "date-time"})


class MetricsAnswer(BaseModel):
    """docs/METRICS.md: the scope and one object per metric; with `by`, `rows` per slice."""

    model_config = ConfigDict(extra="allow")
    scope: dict[str, Any]
    deployment_frequency: dict[str, Any]
    lead_time: dict[str, Any]
    change_failure_rate: dict[str, Any]
    recovery_time: dict[str, Any]
    rework_rate: dict[str, Any]
    deployment_failure_rate: dict[str, Any]
    build: dict[str, Any]
    requirement_lead_time: dict[str, Any] | None = None  # with trackers (Jira, Zentao)
    bug_escape_rate: dict[str, Any] | None = None
    rows: list[dict[str, Any]] | None = None


class DriftRow(BaseModel):
    service: str
    upstream: str
    downstream: str
    upstream_digest: str | None
    downstream_digest: str | None
    in_sync: bool
    commits_behind: int | None
    drift_age_hours: float | None
    downstream_ever_upstream: bool | None


class Violation(BaseModel):
    policy: str
    severity: str
    service: str | None
    environment: str | None
    subject: str
    message: str
    url: str | None
    occurred_at: str
    first_seen: str


class GateRequest(BaseModel):
    service: str = Field(min_length=1)
    image: str = Field(min_length=1, description="Image reference: repo@sha256:... or repo:tag.")
    to: str = Field(min_length=1, description="The environment to promote to.")
    ref: str | None = None


class GateReason(BaseModel):
    policy: str
    severity: str
    message: str


class GateDecision(BaseModel):
    decision: Literal["allow", "deny", "error"]
    service: str
    image: str
    digest: str | None
    environment: str
    reasons: list[GateReason]


def period_error(exc: PeriodError) -> HTTPException:
    """The 422 answer of a bad period (`analytics.scope.PeriodError` names the values)."""
    return HTTPException(422, str(exc))


def check_slices(scope: Scope, by: str | None) -> None:
    """Raise HTTPException 422 when slicing `scope` by week or month gives over MAX_SLICES."""
    between = {"week": weeks_between, "month": months_between}.get(by or "")
    if between is None:
        return
    slices = len(between(scope.since, scope.until, scope.zone))  # cheap: the period is bounded
    if slices > MAX_SLICES:
        raise HTTPException(
            422,
            f"by={by}: {slices} slices, over the limit of {MAX_SLICES}; shorten the period",
        )


@router.get(
    "/metrics",
    dependencies=[Depends(require_read)],
    responses={200: {"model": MetricsAnswer}, **READ_ANSWERS},
    summary="Delivery metrics over a scope (as `cdmetrics metrics --format json`)",
)
async def get_metrics(
    request: Request,
    since: Annotated[
        str | None,
        Query(
            description="Start: date or ISO timestamp (default: Monday 12 whole weeks before "
            "until's week)."
        ),
        DATE_TIME,
    ] = None,
    until: Annotated[
        str | None, Query(description="End, exclusive (default: tomorrow 00:00)."), DATE_TIME
    ] = None,
    team: list[str] = Query([], description="Only these teams (repeatable)."),
    service: list[str] = Query([], description="Only these services (repeatable)."),
    env: str | None = Query(None, description="Canonical environment (default: production tier)."),
    by: Literal["week", "month", "team", "service"] | None = Query(
        None, description=f"Slice (week and month: at most {MAX_SLICES} slices)."
    ),
) -> JSONResponse:
    state = state_of(request)
    zone = state.settings.sync.timezone
    try:
        scope = Scope.parse(since, until, team, service, env, zone)
    except PeriodError as exc:
        raise period_error(exc) from None
    check_slices(scope, by)
    await run_in_threadpool(state.freshness.ensure_fresh)
    figures = await until_disconnect(
        request, state.engine, lambda conn: metrics(conn, scope, by=by, rules=state.rules)
    )
    return JSONResponse(figures)


@router.get(
    "/drift",
    dependencies=[Depends(require_read)],
    response_model=list[DriftRow],
    responses=READ_ANSWERS,
    summary="Image drift between adjacent environments of the promotion path, now",
)
async def get_drift(
    request: Request,
    service: list[str] = Query([], description="Only these services (repeatable)."),
) -> list[dict[str, Any]]:
    state = state_of(request)
    await run_in_threadpool(state.freshness.ensure_fresh)
    path = state.settings.environments.promotion_path

    def drift(conn: Connection) -> list[dict[str, Any]]:
        return drift_analytics.as_json(
            drift_analytics.drift(conn, path, services=list(service) or None)
        )

    return await until_disconnect(request, state.engine, drift)


@router.get(
    "/violations",
    dependencies=[Depends(require_read)],
    response_model=list[Violation],
    responses=READ_ANSWERS,
    summary="Policy violations (unresolved unless include_resolved)",
)
async def get_violations(
    request: Request,
    service: list[str] = Query([], description="Only these services (repeatable)."),
    policy: list[str] = Query([], description="Only these policies (repeatable)."),
    severity: Literal["error", "warn", "info"] | None = Query(None),
    since: Annotated[
        str | None, Query(description="Occurred at or after (date or ISO timestamp)."), DATE_TIME
    ] = None,
    include_resolved: bool = Query(False),
) -> list[dict[str, Any]]:
    state = state_of(request)
    try:
        zone = ZoneInfo(state.settings.sync.timezone)
        start = parse_moment(since, "since", zone) if since else None
    except PeriodError as exc:
        raise period_error(exc) from None

    def violations(conn: Connection) -> list[dict[str, Any]]:
        return views.violations(
            conn,
            services=tuple(service),
            policies=tuple(policy),
            severity=severity,
            since=start,
            include_resolved=include_resolved,
        )

    return await until_disconnect(request, state.engine, violations)


_GATE_ERROR = "`decision` is error, `reasons[0].message` says why"


@router.post(
    "/gate",
    dependencies=[Depends(require_write)],
    response_model=GateDecision,
    responses={
        200: {"description": "Decided: `decision` is allow or deny, with every reason."},
        **BAD_REQUEST,
        **AUTH,
        **INVALID,
        404: {
            "model": GateDecision,
            "description": f"Cannot decide: unknown service or environment ({_GATE_ERROR}).",
        },
        500: {
            "model": GateDecision,
            "description": f"Cannot decide: unexpected error ({_GATE_ERROR}).",
        },
        503: {
            "model": GateDecision,
            "description": f"Cannot decide: the warehouse is unavailable or timed out ({_GATE_ERROR}).",
        },
    },
    summary="May this image of this service be promoted to this environment now?",
)
def post_gate(request: Request, body: GateRequest) -> JSONResponse:
    state = state_of(request)
    settings = state.settings
    try:
        state.freshness.ensure_fresh()
        with state.engine.connect() as conn:
            decision = gate_analytics.evaluate(
                conn,
                body.service,
                body.image,
                body.to,
                settings.environments.promotion_path,
                ref=body.ref,
                policy=settings.policies,
            ).as_json()
    except Exception as exc:  # the gate's contract: any failure is "cannot decide"
        status, message = _cannot_decide(exc)
        error = gate_analytics.error_decision(body.service, body.image, body.to, message)
        return JSONResponse(error.as_json(), status_code=status)
    return JSONResponse(decision)


def _cannot_decide(exc: Exception) -> tuple[int, str]:
    """(HTTP status, message) of a gate that cannot decide because of `exc`: 404 unknown service
    or environment, 503 the warehouse failed (logged), 500 anything else (logged, by reference)."""
    if isinstance(exc, gate_analytics.CannotDecide):
        return 404, str(exc)
    if isinstance(exc, DBAPIError):
        log.error("gate: warehouse unavailable: %s", str(exc.orig).strip().splitlines()[:1])
        return 503, "the warehouse is unavailable or timed out; retry later"
    reference = uuid.uuid4().hex[:12]
    log.error("gate failed (reference %s)", reference, exc_info=exc)
    return 500, f"internal error (reference {reference}; the service log has the details)"


__all__ = ["router"]
