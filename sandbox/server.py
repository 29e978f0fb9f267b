"""A small HTTP framework for the API simulators: routing, faults, rate limits, pagination.

A raw ASGI application (`SimulatorApp`) served by uvicorn in a daemon thread (`SimulatorServer`).
Handlers are plain functions run on the event loop, which suits simulators answering from memory;
a request costs one regex match, one dataclass and one `json.dumps`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import threading
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from importlib.util import find_spec
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import uvicorn

log = logging.getLogger(__name__)

# httptools when installed: measured ~0.03 ms of server time per request against ~0.18 ms for h11.
HTTP_IMPL = "httptools" if find_spec("httptools") else "h11"


@dataclass(slots=True)
class Request:
    """One request as a handler sees it."""

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    query_multi: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str]
    base_url: str

    def json(self) -> Any:
        """The body parsed as JSON (400 when it is not JSON)."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise HTTPError(400, f"400 Bad request - body is not JSON ({exc})") from None


@dataclass(slots=True)
class Response:
    """A handler's answer: a JSON-serialisable body, or bytes/str sent as they are.

    A body of None sends no body (204, DELETE).
    """

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


class HTTPError(Exception):
    """Raised by a handler: the app answers `{"message": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message)
        self.status, self.message, self.headers = status, message, headers or {}


def parse_param_time(value: str, name: str) -> datetime:
    """An ISO 8601 query parameter as GitLab accepts it; 400 otherwise."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPError(400, f"{name} is invalid") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


Handler = Callable[[Request], Any]
_PARAM = re.compile(r"\{(\w+)(:path)?\}")


@dataclass(slots=True)
class _Route:
    pattern: str
    handler: Handler
    methods: frozenset[str]
    regex: str  # the pattern as a regex over the raw path, one group per parameter
    names: tuple[str, ...]


def _compile_pattern(pattern: str) -> tuple[str, tuple[str, ...]]:
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern {pattern!r} must start with '/'")
    parts, names, pos = [], [], 0
    for m in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[pos : m.start()]))
        parts.append("(.+)" if m.group(2) else "([^/]+)")
        names.append(m.group(1))
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    if len(set(names)) != len(names):
        raise ValueError(f"route pattern {pattern!r} repeats a parameter name")
    return "".join(parts), tuple(names)


class Router:
    """Routes (pattern, methods) to handlers; the first matching route in order of adding wins.

    `{name}` matches one segment of the raw (percent-encoded) path and is percent-decoded once;
    `{name:path}` matches the rest, slashes included. GET routes answer HEAD too.
    """

    def __init__(self) -> None:
        self.routes: list[_Route] = []
        self._tables: dict[str, tuple[re.Pattern[str], dict[int, tuple[_Route, int]]]] | None = None

    def route(
        self, pattern: str, methods: tuple[str, ...] = ("GET",)
    ) -> Callable[[Handler], Handler]:
        """Decorator form of `add`."""

        def register(handler: Handler) -> Handler:
            self.add(pattern, handler, methods)
            return handler

        return register

    def add(self, pattern: str, handler: Handler, methods: tuple[str, ...] = ("GET",)) -> None:
        """Register `handler` for `pattern` and `methods`."""
        regex, names = _compile_pattern(pattern)
        verbs = frozenset(m.upper() for m in methods)
        self.routes.append(_Route(pattern, handler, verbs, regex, names))
        self._tables = None

    def mount(self, prefix: str, other: Router) -> None:
        """Copy `other`'s routes (as they are now) under `prefix`."""
        for r in other.routes:
            self.add(prefix.rstrip("/") + r.pattern, r.handler, tuple(r.methods))

    def _compile(self) -> dict[str, tuple[re.Pattern[str], dict[int, tuple[_Route, int]]]]:
        # One alternation per method; the outer group of the route that matched is m.lastindex.
        tables = {}
        for method in {m for r in self.routes for m in r.methods} | {"HEAD"}:
            alts, index, group = [], {}, 1
            for r in self.routes:
                if method in r.methods or (method == "HEAD" and "GET" in r.methods):
                    alts.append(f"({r.regex})")
                    index[group] = (r, group)
                    group += 1 + len(r.names)
            tables[method] = (re.compile("|".join(alts) or r"(?!)"), index)
        self._tables = tables
        return tables

    def match(self, method: str, raw_path: str) -> tuple[_Route, dict[str, str]] | None:
        """The route for `method` and `raw_path` and its decoded parameters, or None."""
        tables = self._tables or self._compile()
        table = tables.get(method)
        m = table[0].fullmatch(raw_path) if table else None
        if m is None:
            return None
        route, outer = table[1][m.lastindex]  # type: ignore[index]
        return route, {n: unquote(m.group(outer + i)) for i, n in enumerate(route.names, 1)}

    def allowed(self, raw_path: str) -> list[str]:
        """The methods some route answers for `raw_path` (for 405's Allow header)."""
        tables = self._tables or self._compile()
        return sorted(m for m, (rx, _) in tables.items() if rx.fullmatch(raw_path))


@dataclass
class FaultRule:
    """An injected failure for requests whose path matches `path` (a regex, searched).

    Of the matching requests, the first `after` pass; then every `every`-th one fires, at most
    `times` times. `kind`: "500", "502", "503", "drop" (the connection closes mid-body), "delay"
    (sleep `seconds`, then answer normally), "429" (Too Many Requests with `Retry-After: seconds`,
    as an HTTP date `seconds` from now when `http_date`, RFC 9110 §10.2.3) or "short" (a list
    page answered with its last `items` items left out and its pagination headers unchanged; a
    page without items is answered whole and does not count as fired).
    """

    path: str
    kind: str
    times: int | None = None
    every: int = 1
    after: int = 0
    seconds: float = 0.0
    method: str | None = None
    http_date: bool = False
    items: int = 1
    matched: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in ("429", "500", "502", "503", "drop", "delay", "short"):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        self._rx = re.compile(self.path)

    def retry_after(self) -> str:
        """The Retry-After value a "429" answers with: whole seconds, or an HTTP date."""
        if not self.http_date:
            return str(math.ceil(self.seconds))
        return format_datetime(datetime.now(UTC) + timedelta(seconds=self.seconds), usegmt=True)

    def shorten(self, response: Response) -> bool:
        """Make `response` a "short" answer: its list body without its last `items` items, headers
        as they were; False when it has no item to leave out (answered whole)."""
        if not (isinstance(response.body, list) and response.status == 200 and response.body):
            return False
        response.body = response.body[: max(0, len(response.body) - self.items)]
        return True

    def _fires(self, method: str, path: str) -> bool | None:
        """None when the request does not match; else whether the rule fires (and count it)."""
        if (self.method and self.method.upper() != method) or not self._rx.search(path):
            return None
        self.matched += 1
        n = self.matched - self.after
        return n > 0 and n % self.every == 0 and (self.times is None or self.fired < self.times)


class Faults:
    """Thread-safe set of fault rules. Delays add up; the first failure that fires answers."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.fired: dict[str, int] = Counter()
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        """Add a rule; returns it (its `matched` and `fired` counters are live)."""
        with self._lock:
            self.rules = [*self.rules, rule]
        return rule

    def clear(self) -> None:
        """Remove every rule and reset the counters."""
        with self._lock:
            self.rules = []
            self.fired = Counter()

    def unfire(self, rule: FaultRule) -> None:
        """Take back a firing of `rule` that changed nothing (a "short" page without items)."""
        with self._lock:
            rule.fired -= 1
            self.fired[rule.kind] -= 1

    def check(self, method: str, path: str) -> tuple[float, FaultRule | None]:
        """(seconds to delay, the failing rule that fired or None) for one request."""
        delay, failure = 0.0, None
        with self._lock:
            for rule in self.rules:
                if failure is not None and rule.kind != "delay":
                    continue
                if rule._fires(method, path):
                    rule.fired += 1
                    self.fired[rule.kind] += 1
                    if rule.kind == "delay":
                        delay += rule.seconds
                    else:
                        failure = rule
        return delay, failure


class RateLimit:
    """A token bucket: `per_second` tokens a second, `burst` at most; <= 0 disables it."""

    def __init__(self, per_second: float, burst: int | None = None, retry_after: int = 1) -> None:
        self.per_second = per_second
        self.burst = burst if burst is not None else max(1, math.ceil(per_second))
        self.retry_after = retry_after
        self._tokens, self._stamp = float(self.burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """Take a token: None when allowed, else the Retry-After seconds (whole, >= retry_after)."""
        if self.per_second <= 0:
            return None
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.per_second)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return None
            return max(self.retry_after, math.ceil((1 - self._tokens) / self.per_second))


class Stats:
    """Thread-safe counters of what the server answered (status 0: connection dropped)."""

    def __init__(self, keep_log: bool = False) -> None:
        self.keep_log = keep_log
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter and empty the log."""
        with self._lock:
            self.requests = 0
            self.rate_limited = 0
            self.by_route: Counter[str] = Counter()
            self.by_status: Counter[int] = Counter()
            self.log: list[tuple[float, str, str, int]] | None = [] if self.keep_log else None

    def record(self, t: float, method: str, target: str, route: str, status: int) -> None:
        """Count one answered request that arrived at monotonic time `t`."""
        with self._lock:
            self.requests += 1
            self.by_route[route] += 1
            self.by_status[status] += 1
            if self.log is not None:
                self.log.append((t, method, target, status))


class _Dropped(Exception):
    """Raised after a partial body so that uvicorn closes the connection."""


_DROP = Response(status=0)  # sentinel: the "drop" fault fired
_DROP_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return json_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_default).encode
_REASONS = {401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}  # fmt: skip


def _error(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response({"message": f"{status} {_REASONS[status]}"}, status, headers or {})


class SimulatorApp:
    """The ASGI application: stats, auth, rate limit, faults, route, handler, in that order."""

    def __init__(
        self,
        router: Router,
        *,
        auth: Callable[[Request], bool] | None = None,
        rate_limit: RateLimit | None = None,
        faults: Faults | None = None,
        keep_log: bool = False,
        max_body: int = 10 * 1024 * 1024,
    ) -> None:
        self.router, self.auth, self.rate_limit = router, auth, rate_limit
        self.faults = faults if faults is not None else Faults()
        self.stats = Stats(keep_log)
        self.max_body = max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        t0 = time.monotonic()
        method, path, qs = scope["method"], scope["path"], scope["query_string"]
        raw_path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else path
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        found = self.router.match(method, raw_path)
        body: bytes | None = b""
        if "content-length" in headers or "transfer-encoding" in headers:
            body = await self._read_body(receive)
        query_multi: dict[str, list[str]] = {}
        if qs:
            for k, v in parse_qsl(qs.decode("latin-1"), keep_blank_values=True):
                query_multi.setdefault(k, []).append(v)
        host = headers.get("host") or "{}:{}".format(*scope["server"])
        request = Request(
            method, path, raw_path, {k: v[-1] for k, v in query_multi.items()}, query_multi,
            headers, body or b"", found[1] if found else {}, f"http://{host}",
        )  # fmt: skip
        response = _error(413) if body is None else await self._answer(request, found)
        # counted before the client can see the answer, so that tests can read the stats at once
        target = f"{path}?{qs.decode('latin-1')}" if qs else path
        route = found[0].pattern if found else "<unmatched>"
        self.stats.record(t0, method, target, route, response.status)
        if response is _DROP:
            await send(_DROP_START)  # promise 4 KiB, send a few bytes, then close
            if method != "HEAD":
                await send({"type": "http.response.body", "body": b'[{"id":', "more_body": True})
            raise _Dropped
        await _send(send, response, method == "HEAD")

    async def _read_body(self, receive: Any) -> bytes | None:
        """The request body, or None when it is over max_body."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return None
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _answer(
        self, request: Request, found: tuple[_Route, dict[str, str]] | None
    ) -> Response:
        try:
            if self.auth is not None and not self.auth(request):
                return _error(401)
            if self.rate_limit is not None and (wait := self.rate_limit.take()) is not None:
                with self.stats._lock:
                    self.stats.rate_limited += 1
                return _error(429, {"Retry-After": str(wait)})
            failure = None
            if self.faults.rules:
                delay, failure = self.faults.check(request.method, request.path)
                if delay:
                    await asyncio.sleep(delay)
                if failure is not None and failure.kind == "drop":
                    return _DROP
                if failure is not None and failure.kind == "429":
                    return _error(429, {"Retry-After": failure.retry_after()})
                if failure is not None and failure.kind != "short":
                    return _error(int(failure.kind))
            if found is None:
                allowed = self.router.allowed(request.raw_path)
                return _error(405, {"Allow": ", ".join(allowed)}) if allowed else _error(404)
            result = found[0].handler(request)
            response = result if isinstance(result, Response) else Response(result)
            if failure is not None and not failure.shorten(response):
                self.faults.unfire(failure)  # nothing to leave out: the next page takes it
            return response
        except HTTPError as exc:
            return Response({"message": exc.message}, exc.status, exc.headers)
        except Exception:
            log.exception("handler for %s %s failed", request.method, request.raw_path)
            return _error(500)


async def _send(send: Any, response: Response, head: bool) -> None:
    body, ctype = response.body, response.content_type
    if isinstance(body, bytes | bytearray | memoryview):
        data, ctype = bytes(body), ctype or "application/octet-stream"
    elif isinstance(body, str):
        data, ctype = body.encode(), ctype or "text/plain; charset=utf-8"
    elif body is None:
        data = b""
    else:
        data, ctype = _dumps(body).encode(), ctype or "application/json"
    headers = [
        (k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in response.headers.items()
    ]
    if ctype and not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", ctype.encode("latin-1")))
    if response.status >= 200 and response.status not in (204, 304):
        headers.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else data})


def _quiet_drops(record: logging.LogRecord) -> bool:
    """Hide uvicorn's error line for the connections a "drop" fault closes on purpose."""
    return not (record.exc_info and isinstance(record.exc_info[1], _Dropped))


class SimulatorServer:
    """Serve a `SimulatorApp` with uvicorn in a daemon thread on `host` (port 0: a free one)."""

    def __init__(self, app: SimulatorApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Bind (the same port again on a restart), serve, and return the base URL once up."""
        if self._thread is not None:
            raise RuntimeError(f"simulator server {self.url} is already running")
        logging.getLogger("uvicorn.error").addFilter(_quiet_drops)  # idempotent
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(
            self.app, http=HTTP_IMPL, ws="none", lifespan="off", interface="asgi3", access_log=False,
            log_level="warning", log_config=None, proxy_headers=False, server_header=False,
            timeout_keep_alive=65, timeout_graceful_shutdown=5,
        )  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, args=([sock],), daemon=True,
                                  name=f"simulator-{self.port}")  # fmt: skip
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(5)
                sock.close()
                raise RuntimeError(f"simulator server on {self.url} did not start")
            time.sleep(0.002)
        self._server, self._thread, self._sock = server, thread, sock
        return self.url

    def stop(self) -> None:
        """Shut down gracefully and release the port; `start()` may follow."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join()
        self._sock.close()
        self._server = self._thread = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def json_time(dt: datetime) -> str:
    """An aware datetime as GitLab writes it: "2016-08-11T11:32:35.145Z" (UTC, milliseconds)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"json_time needs an aware datetime, got naive {dt.isoformat()}")
    u = dt.astimezone(UTC)
    return f"{u:%Y-%m-%dT%H:%M:%S}.{u.microsecond // 1000:03d}Z"


def _int_arg(query: dict[str, str], name: str, default: int) -> int:
    try:
        value = int(query.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def _page_url(request: Request, replace: dict[str, object], drop: tuple[str, ...] = ()) -> str:
    """The request's URL with the parameters in `replace` set and those in `drop` removed."""
    skip = {*replace, *drop}
    pairs = [(k, v) for k, vs in request.query_multi.items() if k not in skip for v in vs]
    pairs += [(k, str(v)) for k, v in replace.items()]
    return f"{request.base_url}{request.raw_path}?{urlencode(pairs)}"


def paginate_offset(
    request: Request,
    items: Sequence[Any],
    *,
    default_per_page: int = 20,
    max_per_page: int = 100,
    count_limit: int = 10_000,
) -> Response:
    """One page of `items` with GitLab's offset-pagination headers (Link, X-Page, X-Total, ...).

    Over `count_limit` items X-Total, X-Total-Pages and rel="last" are left out, as GitLab does.
    """
    page = _int_arg(request.query, "page", 1)
    per_page = min(_int_arg(request.query, "per_page", default_per_page), max_per_page)
    start = (page - 1) * per_page
    counted = len(items) <= count_limit
    total_pages = max(1, math.ceil(len(items) / per_page))
    has_next = start + per_page < len(items)
    headers = {"X-Page": str(page), "X-Per-Page": str(per_page),
               "X-Next-Page": str(page + 1) if has_next else "",
               "X-Prev-Page": str(page - 1) if page > 1 else ""}  # fmt: skip
    links = []
    if page > 1:
        links.append(f'<{_page_url(request, {"page": page - 1})}>; rel="prev"')
    if has_next:
        links.append(f'<{_page_url(request, {"page": page + 1})}>; rel="next"')
    links.append(f'<{_page_url(request, {"page": 1})}>; rel="first"')
    if counted:
        links.append(f'<{_page_url(request, {"page": total_pages})}>; rel="last"')
        headers["X-Total"], headers["X-Total-Pages"] = str(len(items)), str(total_pages)
    headers["Link"] = ", ".join(links)
    return Response(list(items[start : start + per_page]), headers=headers)


def paginate_keyset(
    request: Request,
    items: Sequence[Any],
    *,
    key: Callable[[Any], int],
    default_per_page: int = 20,
    max_per_page: int = 100,
    default_sort: str = "asc",
    by_key: bool = True,
) -> Response:
    """One page of `items` (sorted by the caller as `sort` asks) under GitLab keyset pagination.

    The cursor is `id_after` (sort=asc) or `id_before` (sort=desc); rel="next" carries the next
    one; the last page has no Link header. `by_key=False`: the items are in serving order but not
    by `key` (the cursor is then found by its position, an unknown one ending the listing).
    """
    per_page = min(_int_arg(request.query, "per_page", default_per_page), max_per_page)
    desc = request.query.get("sort", default_sort).lower() == "desc"
    cursor_name = "id_before" if desc else "id_after"
    start = 0
    if (raw := request.query.get(cursor_name)) is not None:
        try:
            cursor = int(raw)
        except ValueError:
            raise HTTPError(400, f"400 Bad request - {cursor_name} is invalid") from None
        if not by_key:
            start = next((i + 1 for i, item in enumerate(items) if key(item) == cursor), len(items))
        elif desc:
            start = bisect_right(items, -cursor, key=lambda item: -key(item))
        else:
            start = bisect_right(items, cursor, key=key)
    page = list(items[start : start + per_page])
    headers = {"X-Per-Page": str(per_page)}
    if start + per_page < len(items):
        other = "id_after" if desc else "id_before"
        url = _page_url(request, {cursor_name: key(page[-1])}, drop=(other,))
        headers["Link"] = f'<{url}>; rel="next"'
    return Response(page, headers=headers)
