"""The HTTP policy every collector shares: a timeout on every request, one rate limiter per source
shared by all its threads, request counting for the sync summary, and URLs with secrets masked
(`config.redaction.redact_url`) before they reach an error message (log records are masked by
`config.redaction.install_log_redaction`, called by each entry point at start-up).

Retries: one `RetryPolicy` for every client (429, 5xx and dropped connections; backoff with
jitter; Retry-After in seconds or as an HTTP date, capped at `[sync] max_retry_after_s`), applied
by `PolicySession` (requests: python-gitlab, python-jenkins), `PolicyTransport` (httpx: registries)
and `PolicyRetry` (urllib3: the Kubernetes client). python-gitlab's own retries are switched off:
they parse Retry-After with `int()`, which an HTTP date crashes, and wait uncapped.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import requests
import urllib3

from config.redaction import redact_url


class RateLimiter:
    """A token bucket shared by every thread of one source; `per_second <= 0` means no limit."""

    def __init__(self, per_second: float, burst: int | None = None) -> None:
        self.per_second = per_second
        self.capacity = float(burst or max(1, int(per_second)))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        """Block until a request may be sent."""
        if self.per_second <= 0:
            return
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(
                    self.capacity, self.tokens + (now - self.updated) * self.per_second
                )
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.per_second
            time.sleep(wait)


class RequestCounter:
    """A thread-safe count of requests sent (retries included)."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n


# what is retried: rate limiting and the server errors a retry can cure (never another 4xx: a
# 413 or a 404 answers the same again)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRIES = 6  # retries after the first attempt, for every client of every source
MAX_RETRY_AFTER = 60.0  # seconds; a larger Retry-After would park a worker thread for its length
R = TypeVar("R")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The wait a Retry-After header asks for, in seconds (>= 0): its delay-seconds, or the time
    until its HTTP date (RFC 9110 §10.2.3, `Fri, 04 Dec 2026 17:00:05 GMT`); None when absent or
    unreadable."""
    text = (value or "").strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": a date without a zone is UTC (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class RetryPolicy:
    """The one retry policy of every client: 429, 5xx and dropped connections are retried up to
    `retries` times, after exponential backoff with full jitter or the Retry-After the server asked
    for, whichever is longer, Retry-After capped at `max_retry_after` seconds. `sleep` waits (a
    test may record instead)."""

    retries: int = MAX_RETRIES
    max_retry_after: float = MAX_RETRY_AFTER
    base: float = 0.1
    backoff_cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based) of a request."""
        backoff = random.uniform(0, min(self.backoff_cap, self.base * 2**attempt))
        asked = retry_after_seconds(retry_after)
        return backoff if asked is None else max(backoff, min(asked, self.max_retry_after))

    def call(
        self,
        send: Callable[[], R],
        answer: Callable[[R], tuple[int, str | None]],
        transient: tuple[type[BaseException], ...],
        discard: Callable[[R], None] = lambda _: None,
    ) -> R:
        """The result of `send()`, retried while it raises one of `transient` or `answer` gives a
        retriable (status, Retry-After); the last attempt's result or exception once the retries
        are spent. `discard` releases a result that is retried."""
        attempt = 0
        while True:
            try:
                result = send()
            except transient:
                if attempt >= self.retries:
                    raise
                self.sleep(self.delay(attempt))
                attempt += 1
                continue
            status, retry_after = answer(result)
            if status not in RETRY_STATUSES or attempt >= self.retries:
                return result
            discard(result)
            self.sleep(self.delay(attempt, retry_after))
            attempt += 1


REQUESTS_TRANSIENT = (
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.Timeout,
)


class ShortPage(requests.RequestException):
    """A list page holding fewer items than its pagination headers promise: items would be lost
    without a trace, so the stream fails (and keeps its old cursor) instead."""


def promised_items(per_page: int, page: int, total: int | None, has_next: bool) -> int | None:
    """How many items page `page` (1-based) of `per_page` must hold: a full page when another
    follows, else what `total` leaves for it; None when the headers promise nothing."""
    if has_next:
        return per_page
    if total is None:
        return None
    return max(0, min(per_page, total - (page - 1) * per_page))


def _header_int(headers: Any, name: str) -> int | None:
    value = (headers.get(name) or "").strip()
    return int(value) if value.isdigit() else None


def gitlab_page_shortfall(response: requests.Response) -> str | None:
    """What a GitLab list page lacks against its headers (X-Per-Page with X-Next-Page,
    X-Total-Pages or X-Total under offset pagination, rel="next" under keyset pagination), as an
    error message naming the URL; None for a complete page or a response that is not one."""
    per_page = _header_int(response.headers, "X-Per-Page")
    if response.status_code != 200 or not per_page:
        return None
    page = _header_int(response.headers, "X-Page")
    total_pages = _header_int(response.headers, "X-Total-Pages")
    has_next = bool(response.headers.get("X-Next-Page")) or (
        page is not None and total_pages is not None and page < total_pages
    )
    if page is None:  # keyset pagination: a Link to the next page promises a full one
        has_next, page = "next" in response.links, 1
    promised = promised_items(per_page, page, _header_int(response.headers, "X-Total"), has_next)
    if promised is None:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, list) or len(body) >= promised:
        return None
    return (
        f"short page: {len(body)} of the {promised} items its headers promise "
        f"(page {page}, {per_page} a page) from {redact_url(response.url)}"
    )


KEPT_BODY = 65_536  # characters of a malformed body kept as its raw payload


class MalformedBody(requests.RequestException):
    """A 200 answer announcing JSON whose body does not parse (cut or corrupted on the way): the
    stream fails and keeps its old cursor, and the body is kept as a rejected raw payload
    (`SyncRun.fail`), so the next sync re-reads it and the record shows what came."""

    def __init__(self, url: str, body: bytes, error: ValueError) -> None:
        self.url = redact_url(url)
        self.body = body.decode("utf-8", "replace")[:KEPT_BODY]
        super().__init__(
            f"malformed JSON in a 200 answer ({len(body)} bytes: {error}) from {self.url}"
        )


def check_json(status: int, content_type: str | None, body: bytes, url: str) -> None:
    """Raise `MalformedBody` for a 200 answer whose JSON content type its body belies."""
    if status != 200 or "json" not in (content_type or "") or not body:
        return
    try:
        json.loads(body)
    except ValueError as exc:
        raise MalformedBody(url, body, exc) from None


class PolicySession(requests.Session):
    """A requests session under the shared HTTP policy: every attempt waits for the rate limiter
    and is counted, times out (`timeout` unless the caller gives one) and is retried by `retry`;
    a GitLab list page short of what its headers promise raises `ShortPage`, a JSON body that
    does not parse `MalformedBody`.
    `last_url` and `last_status` describe the last answer, for error messages."""

    def __init__(
        self, limiter: RateLimiter, counter: RequestCounter, timeout: float, retry: RetryPolicy
    ) -> None:
        super().__init__()
        self.limiter, self.counter, self.retry = limiter, counter, retry
        self.default_timeout = timeout
        self.last_url, self.last_status = "", ""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.last_url = request.url or ""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout

        def attempt() -> requests.Response:
            self.limiter.acquire()
            self.counter.add()
            response = super(PolicySession, self).send(request, **kwargs)
            self.last_status = f"HTTP {response.status_code} {response.reason}"
            return response

        response = self.retry.call(
            attempt,
            lambda r: (r.status_code, r.headers.get("Retry-After")),
            REQUESTS_TRANSIENT,
            lambda r: r.close(),
        )
        if not kwargs.get("stream"):
            content_type = response.headers.get("Content-Type")
            check_json(response.status_code, content_type, response.content, response.url)
        if request.method == "GET" and (shortfall := gitlab_page_shortfall(response)):
            raise ShortPage(shortfall, response=response)
        return response


def urllib3_retry(policy: RetryPolicy, counter: RequestCounter) -> urllib3.Retry:
    """A urllib3 `Retry` (for clients built on urllib3, like Kubernetes') that retries GETs as
    `policy` does, waits `policy`'s delays, and counts each retry as a request."""

    class PolicyRetry(urllib3.Retry):
        # urllib3 retries a 413 that names a Retry-After; the policy never retries a 413
        RETRY_AFTER_STATUS_CODES = RETRY_STATUSES

        def increment(self, *args: Any, **kwargs: Any) -> urllib3.Retry:  # type: ignore[override]
            counter.add()  # each retry is one more request
            return super().increment(*args, **kwargs)

        def sleep(self, response: urllib3.BaseHTTPResponse | None = None) -> None:
            after = response.headers.get("Retry-After") if response is not None else None
            policy.sleep(policy.delay(max(0, len(self.history) - 1), after))

    return PolicyRetry(
        total=policy.retries,
        status_forcelist=RETRY_STATUSES,
        respect_retry_after_header=True,
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
    )


class PolicyTransport(httpx.BaseTransport):
    """The shared HTTP policy for httpx clients, as a transport: every request (auth challenges
    and token requests included) waits for the rate limiter, is counted and retried by `retry`.
    Bodies are read here, so a connection dropped mid-body is retried too, and a JSON body that
    does not parse raises `MalformedBody`. `last_url` names the last request."""

    def __init__(
        self,
        limiter: RateLimiter,
        counter: RequestCounter,
        retry: RetryPolicy,
        inner: httpx.BaseTransport | None = None,
    ) -> None:
        self.limiter, self.counter, self.retry = limiter, counter, retry
        self.inner = inner or httpx.HTTPTransport()
        self.last_url = ""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.last_url = str(request.url)

        def attempt() -> httpx.Response:
            self.limiter.acquire()
            self.counter.add()
            response = self.inner.handle_request(request)
            try:
                raw = b"".join(response.iter_raw())
            finally:
                response.close()
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=httpx.ByteStream(raw),
                extensions=response.extensions,
            )

        response = self.retry.call(
            attempt,
            lambda r: (r.status_code, r.headers.get("Retry-After")),
            (httpx.TransportError,),
        )
        content_type = response.headers.get("Content-Type")
        check_json(response.status_code, content_type, response.read(), str(request.url))
        return response

    def close(self) -> None:
        self.inner.close()
