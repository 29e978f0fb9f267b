"""The HTTP service (FastAPI): events in, metrics and gate decisions out. `create_app` builds it
on a settings object and an open warehouse; `service.server` runs it with uvicorn.

Cross-cutting decisions:
- Request bodies are limited (default 10 MiB, `serve --max-body-mb`): a larger Content-Length is
  refused before reading, a longer chunked body as soon as it passes the limit (413).
- No stack trace leaves the process: unexpected errors answer 500 with a request reference and
  are logged with their traceback; an unreachable warehouse answers 503.
- JSON bodies nested deeper than `ingest.MAX_JSON_DEPTH` answer 422, as does FastAPI's own parser
  when it hits Python's recursion limit; a read whose client disconnects stops (499, counted).
- `/healthz` (no credential) says whether the warehouse answers; `/metrics` (read token) is the
  Prometheus exposition; `/openapi.json` and `/docs` describe every endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.settings import Settings
from service import api, ingest
from service.answers import READ_ANSWERS
from service.auth import require_read
from service.cancel import ClientGone
from service.ingest import TOO_DEEP
from service.state import ServiceOptions, ServiceState, state_of
from service.telemetry import CONTENT_TYPE, exposition

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413."""

    def __init__(self, app: Any, limit: int, refused: Any = None) -> None:
        self.app, self.limit, self.refused = app, limit, refused

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            if self.refused is not None:
                self.refused()
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


class ContainErrors:
    """ASGI middleware: an unexpected error answers 500 with a reference and is logged once with
    its traceback; nothing of it reaches the client (Starlette's own handler would re-raise)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            reference = uuid.uuid4().hex[:12]
            log.error("request %s %s failed (reference %s)", scope.get("method"),
                      scope.get("path"), reference, exc_info=exc)  # fmt: skip
            if not started:
                detail = f"internal error (reference {reference}; the service log has the details)"
                await JSONResponse({"detail": detail}, status_code=500)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    detail = f"request body over the limit of {limit} bytes; send smaller batches"
    return JSONResponse({"detail": detail}, status_code=413)


def create_app(
    settings: Settings,
    engine: Engine,
    options: ServiceOptions | None = None,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    """The service app on `engine` (a warehouse at head) with `settings`; secrets are read from
    `environ` (default: the process environment) when the app is built."""
    state = ServiceState(settings, engine, options or ServiceOptions(), environ)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.create_task(state.freshness.run())
        try:
            yield
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            await run_in_threadpool(state.freshness.ensure_fresh)  # leave nothing underived

    app = FastAPI(
        title="cdmetrics",
        version=importlib.metadata.version("cdmetrics"),
        description=(
            "Delivery metrics and branch-policy analytics: events in (CDEvents, GitLab and "
            "Jenkins webhooks), metrics and gate decisions out. See docs/SERVICE.md."
        ),
        lifespan=lifespan,
    )
    app.state.service = state
    too_large = partial(state.counters.inc, "cdmetrics_requests_refused_total", reason="too_large")
    app.add_middleware(BodyLimit, limit=state.options.max_body_bytes, refused=too_large)
    app.add_middleware(ContainErrors)  # added last: outside the body limit
    _handlers(app, state)
    app.include_router(ingest.router)
    app.include_router(api.router)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["operations"],
                      responses={503: {"description": "The warehouse does not answer."}},
                      summary="Liveness and warehouse reachability (no credential)")  # fmt: skip
    app.add_api_route("/metrics", prometheus, methods=["GET"], tags=["operations"],
                      dependencies=[Depends(require_read)],
                      responses={200: {"content": {CONTENT_TYPE: {}}}, **READ_ANSWERS},
                      summary="Prometheus exposition: counters and DORA gauges per service and team",
                      response_class=Response)  # fmt: skip
    for scope in state.secrets.refused():
        log.warning(
            "the %s scope is refused (403): environment variable %s is not set",
            scope.name,
            scope.variable,
        )
    return app


def _handlers(app: FastAPI, state: ServiceState) -> None:
    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        state.counters.inc("cdmetrics_requests_refused_total", reason="too_large")
        return _too_large(exc.limit)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        state.counters.inc("cdmetrics_requests_cancelled_total", path=request.url.path)
        log.info("%s stopped: the client disconnected", request.url.path)
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's body parsing hit the limit
            return JSONResponse({"detail": TOO_DEEP}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(OperationalError)
    async def unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("warehouse unavailable: %s", str(exc.orig).strip().splitlines()[0])
        return JSONResponse({"detail": "the warehouse is unavailable; retry later"}, 503)


def healthz(request: Request) -> JSONResponse:
    """200 when the warehouse answers, 503 when not; with the derive state."""
    state = state_of(request)
    try:
        with state.engine.connect() as conn:
            conn.execute(text("select 1"))
        warehouse = "ok"
    except OperationalError:
        warehouse = "unavailable"
    fresh = state.freshness
    body = {
        "status": "ok" if warehouse == "ok" else "degraded",
        "warehouse": warehouse,
        "derive": {
            "pending": fresh.pending,
            "runs": fresh.runs,
            "failures": fresh.failures,
            "last_run": fresh.last_run.isoformat() if fresh.last_run else None,
        },
    }
    return JSONResponse(body, status_code=200 if warehouse == "ok" else 503)


def prometheus(request: Request) -> Response:
    """The Prometheus text exposition."""
    state = state_of(request)
    state.freshness.ensure_fresh()
    families = [*state.counters.families(), *state.dora.families()]
    return Response(exposition(families), media_type=CONTENT_TYPE)


__all__ = ["BodyLimit", "create_app"]
