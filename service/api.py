"""The analytics API: `GET /api/v1/metrics`, `/api/v1/drift`, `/api/v1/violations` (read scope)
and `POST /api/v1/gate` (write scope), with the scope parameters of the CLI.

Each answers the JSON of its CLI command (`metrics`, `drift`, `policy scan`, `gate` with
`--format json`; docs/METRICS.md, docs/POLICIES.md), computed by the same analytics, after deriving
what the events received so far changed. The gate answers 200 with `decision` allow or deny (the
decision is the answer; a pipeline tests `.decision`), and 404 with `decision: error` when it
cannot decide (unknown service or environment): callers fail closed unless they choose not to.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from analytics import drift as drift_analytics
from analytics import gate as gate_analytics
from analytics.dora import metrics
from analytics.scope import Scope
from service import views
from service.auth import require_read, require_write
from service.state import state_of

router = APIRouter(prefix="/api/v1", tags=["analytics"])


class Problem(BaseModel):
    detail: str


_INVALID = {"anyOf": [{"$ref": "#/components/schemas/HTTPValidationError"},
                      {"$ref": "#/components/schemas/Problem"}]}  # fmt: skip
_AUTH_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong token."},
    403: {"model": Problem, "description": "The scope's token is not configured on the server."},
    422: {
        "description": "A parameter is invalid; `detail` says which.",
        "content": {"application/json": {"schema": _INVALID}},
    },
}


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


def parse_period(since: str | None, until: str | None, zone: str) -> tuple[datetime, datetime]:
    """[since, until) from dates or ISO timestamps (naive ones in `zone`); until defaults to
    tomorrow 00:00, since to 90 days before until, as in the CLI."""
    tz = ZoneInfo(zone)

    def parse(value: str, name: str) -> datetime:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise HTTPException(422, f"{name}: {value!r} is not a date or ISO timestamp") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)

    end = (
        parse(until, "until")
        if until
        else datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    )
    return (parse(since, "since") if since else end - timedelta(days=90)), end


@router.get(
    "/metrics",
    dependencies=[Depends(require_read)],
    responses={200: {"model": MetricsAnswer}, **_AUTH_ANSWERS},
    summary="Delivery metrics over a scope (as `cdmetrics metrics --format json`)",
)
def get_metrics(
    request: Request,
    since: str | None = Query(
        None, description="Start: date or ISO timestamp (default: until - 90d)."
    ),
    until: str | None = Query(None, description="End, exclusive (default: tomorrow 00:00)."),
    team: list[str] = Query([], description="Only these teams (repeatable)."),
    service: list[str] = Query([], description="Only these services (repeatable)."),
    env: str | None = Query(None, description="Canonical environment (default: production tier)."),
    by: Literal["week", "month", "team", "service"] | None = Query(None, description="Slice."),
) -> JSONResponse:
    state = state_of(request)
    zone = state.settings.sync.timezone
    start, end = parse_period(since, until, zone)
    try:
        scope = Scope(start, end, tuple(team), tuple(service), env, zone)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    state.freshness.ensure_fresh()
    with state.engine.connect() as conn:
        return JSONResponse(metrics(conn, scope, by=by, rules=state.rules))


@router.get(
    "/drift",
    dependencies=[Depends(require_read)],
    response_model=list[DriftRow],
    responses=_AUTH_ANSWERS,
    summary="Image drift between adjacent environments of the promotion path, now",
)
def get_drift(
    request: Request,
    service: list[str] = Query([], description="Only these services (repeatable)."),
) -> list[dict[str, Any]]:
    state = state_of(request)
    state.freshness.ensure_fresh()
    path = state.settings.environments.promotion_path
    with state.engine.connect() as conn:
        rows = drift_analytics.drift(conn, path, services=list(service) or None)
    return drift_analytics.as_json(rows)


@router.get(
    "/violations",
    dependencies=[Depends(require_read)],
    response_model=list[Violation],
    responses=_AUTH_ANSWERS,
    summary="Policy violations (unresolved unless include_resolved)",
)
def get_violations(
    request: Request,
    service: list[str] = Query([], description="Only these services (repeatable)."),
    policy: list[str] = Query([], description="Only these policies (repeatable)."),
    severity: Literal["error", "warn", "info"] | None = Query(None),
    since: str | None = Query(None, description="Occurred at or after (date or ISO timestamp)."),
    include_resolved: bool = Query(False),
) -> list[dict[str, Any]]:
    state = state_of(request)
    start = parse_period(since, None, state.settings.sync.timezone)[0] if since else None
    with state.engine.connect() as conn:
        return views.violations(
            conn,
            services=tuple(service),
            policies=tuple(policy),
            severity=severity,
            since=start,
            include_resolved=include_resolved,
        )


@router.post(
    "/gate",
    dependencies=[Depends(require_write)],
    response_model=GateDecision,
    responses={
        200: {"description": "Decided: `decision` is allow or deny, with every reason."},
        **_AUTH_ANSWERS,
        404: {
            "model": GateDecision,
            "description": "Cannot decide (unknown service or environment): `decision` is error.",
        },
    },
    summary="May this image of this service be promoted to this environment now?",
)
def post_gate(request: Request, body: GateRequest) -> JSONResponse:
    state = state_of(request)
    settings = state.settings
    state.freshness.ensure_fresh()
    try:
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
    except gate_analytics.CannotDecide as exc:
        reason = GateReason(policy="gate", severity="error", message=str(exc))
        error = GateDecision(
            decision="error",
            service=body.service,
            image=body.image,
            digest=None,
            environment=body.to,
            reasons=[reason],
        )
        return JSONResponse(error.model_dump(), status_code=404)
    return JSONResponse(decision)


__all__ = ["router"]
