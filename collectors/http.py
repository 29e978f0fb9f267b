"""The HTTP policy every collector shares: a timeout on every request, one rate limiter per source
shared by all its threads, request counting for the sync summary, and URLs with secrets masked
before they reach a log or an error message.

Retries: python-gitlab and python-jenkins retry transient errors themselves (429 honouring
Retry-After, 5xx, dropped connections); `retry_delays` gives the same schedule, with jitter, to the
collectors that speak HTTP directly.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import requests

SECRET_PARAMS = re.compile(r"(?i)(token|secret|password|passwd|key|signature|auth)")


def redact_url(url: str) -> str:
    """`url` with user info and secret-looking query values replaced by `***`."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    query = urlencode(
        [
            (k, "***" if SECRET_PARAMS.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*:/,",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class RedactingFilter(logging.Filter):
    """Masks secrets in the URLs of log records (httpx logs every request at INFO with its full
    URL, presigned query strings included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(a))
                if isinstance(a, httpx.URL) or (isinstance(a, str) and "://" in a)
                else a
                for a in record.args
            )
        return True


def install_log_redaction() -> None:
    """Add `RedactingFilter` to the loggers of the HTTP libraries (once)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


install_log_redaction()


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


class PolicySession(requests.Session):
    """A requests session that waits for the rate limiter, counts requests and always times out."""

    def __init__(self, limiter: RateLimiter, counter: RequestCounter, timeout: float) -> None:
        super().__init__()
        self.limiter = limiter
        self.counter = counter
        self.default_timeout = timeout

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        self.limiter.acquire()
        self.counter.add()
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


def retry_delays(retries: int, base: float = 0.1, cap: float = 30.0) -> Iterator[float]:
    """Exponential backoff with full jitter: how long to wait before each retry."""
    for attempt in range(retries):
        yield random.uniform(0, min(cap, base * 2**attempt))


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # seconds; a larger Retry-After would park a worker thread for its length


class PolicyTransport(httpx.BaseTransport):
    """The shared HTTP policy for httpx clients, as a transport: every request (auth challenges
    and token requests included) waits for the rate limiter and is counted; 429, 5xx and dropped
    connections are retried on the `retry_delays` schedule, honouring Retry-After (capped at
    `MAX_RETRY_AFTER`). Bodies are read here, so a connection dropped mid-body is retried too.
    `last_url` names the last request."""

    def __init__(
        self,
        limiter: RateLimiter,
        counter: RequestCounter,
        retries: int,
        inner: httpx.BaseTransport | None = None,
    ) -> None:
        self.limiter, self.counter, self.retries = limiter, counter, retries
        self.inner = inner or httpx.HTTPTransport()
        self.last_url = ""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.last_url = str(request.url)
        delays = retry_delays(self.retries)
        while True:
            self.limiter.acquire()
            self.counter.add()
            try:
                response = self.inner.handle_request(request)
                try:
                    raw = b"".join(response.iter_raw())
                finally:
                    response.close()
            except httpx.TransportError:
                wait = next(delays, None)
                if wait is None:
                    raise
                time.sleep(wait)
                continue
            if response.status_code in RETRY_STATUSES:
                wait = next(delays, None)
                if wait is not None:
                    after = response.headers.get("Retry-After", "")
                    asked = min(float(after), MAX_RETRY_AFTER) if after.isdigit() else 0.0
                    time.sleep(max(wait, asked))
                    continue
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=httpx.ByteStream(raw),
                extensions=response.extensions,
            )

    def close(self) -> None:
        self.inner.close()
