"""A bounded fault-injecting HTTP proxy for tests (issue #22's fault-injection suite).

`FaultProxy` listens on 127.0.0.1 (an ephemeral port) in front of one upstream simulator and
forwards every request to it. While `faults` is on, it injects failures by a seeded schedule:

- "429-seconds" / "429-date": Too Many Requests with Retry-After in seconds / as an HTTP date;
- "5xx-storm": `storm` answers 500, 502, 503... in a row to the same request;
- "drop": the connection closes before any answer;
- "truncated": the upstream's status and headers, then part of the body, then the connection
  closes (fewer bytes than Content-Length);
- "malformed": status 200 with the JSON body cut in half and a Content-Length that matches it;
- "short": a GitLab list page (X-Per-Page) with its last item removed, pagination headers
  (X-Total, X-Next-Page, Link) kept;
- "stall": the answer is held back `stall_s` seconds (longer than the client's read timeout).

Bounded: at most `per_run` faults while faults are on, and at most `per_target` on one request
(method, path and query), so a client that retries always gets through. `fired` counts the
faults injected by kind; `requests` counts the requests seen. The simulators write URLs from the
Host header they receive; the proxy sends them the upstream's host and rewrites every upstream
origin it knows (`rewrites`, shared by a group of proxies) to its proxy in response headers and
bodies, as a reverse proxy must, so clients following Link headers or payload URLs stay behind
the proxies.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

KINDS = (
    "429-seconds",
    "429-date",
    "5xx-storm",
    "drop",
    "truncated",
    "malformed",
    "short",
    "stall",
)
STORM_STATUSES = (500, 502, 503)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultProxy:
    """A reverse proxy on loopback for one upstream, injecting bounded seeded faults."""

    def __init__(
        self,
        upstream: str,
        rewrites: dict[str, str],
        *,
        rate: float = 0.2,
        per_run: int = 30,
        per_target: int = 2,
        storm: int = 3,
        stall_s: float = 1.5,
        retry_after_s: float = 1.0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "", parts.port or 80
        self.upstream = upstream.rstrip("/")
        self.rewrites = rewrites  # upstream origin -> proxy origin, shared with the other proxies
        self.rate, self.per_run, self.per_target = rate, per_run, per_target
        self._max_per_run = per_run
        self.storm, self.stall_s, self.retry_after_s = storm, stall_s, retry_after_s
        self.faults = False
        self.requests = 0
        self.fired: Counter[str] = Counter()
        self.offered: set[str] = set()  # kinds some faulted request could have had
        self.on_request: Any = None  # called with the request count (outside the lock)
        self._lock = threading.Lock()
        self._rng = random.Random(0)
        self._per_target: Counter[str] = Counter()
        self._reserved = 0  # faults decided in this run
        self._storms: dict[str, int] = {}
        self._forcing: dict[str, str] = {}  # path part -> kind to inject once (`force`)
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        rewrites[self.upstream] = self.url
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def inject(self, seed: int | None, per_run: int | None = None) -> None:
        """Start a run: faults on by the schedule of `seed` (None: faults off), at most `per_run`
        of them (default: as constructed), counters zeroed."""
        with self._lock:
            self.faults = seed is not None
            self.per_run = per_run or self._max_per_run
            self._rng = random.Random(seed)
            self.requests = 0
            self.fired = Counter()
            self.offered = set()
            self._per_target = Counter()
            self._reserved = 0
            self._storms = {}
            self._forcing = {}
            self.on_request = None

    def force(self, path: str, kind: str) -> None:
        """Inject `kind` once, outside the schedule, into the first GET whose path contains
        `path` and to which `kind` applies (faults on or off)."""
        with self._lock:
            self._forcing[path] = kind

    def _forced(self, path: str, applicable: list[str]) -> str | None:
        with self._lock:
            part = next(
                (p for p, k in self._forcing.items() if p in path and k in applicable), None
            )
            if part is None:
                return None
            kind = self._forcing.pop(part)
            self.fired[kind] += 1
            return kind

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the schedule ------------------------------------------------------------------------

    def _decide(self, target: str) -> tuple[int, str | None]:
        """(the request's number, "storm" when a storm on `target` goes on, "fault" when this
        request gets a fault whose kind is chosen once the upstream answered, else None)."""
        with self._lock:
            self.requests += 1
            count = self.requests
            if self._storms.get(target):
                self._storms[target] -= 1
                return count, "storm"
            if (
                not self.faults
                or self._reserved >= self.per_run
                or self._per_target[target] >= self.per_target
                or self._rng.random() >= self.rate
            ):
                return count, None
            self._reserved += 1  # counted now: concurrent requests cannot pass the bounds
            self._per_target[target] += 1
            return count, "fault"

    def _choose(self, target: str, applicable: list[str]) -> str:
        """The kind to inject: the least fired of `applicable` (every kind fires early in a run),
        ties broken by the seeded generator; counted."""
        with self._lock:
            self.offered.update(applicable)
            least = min(self.fired[k] for k in applicable)
            kind = self._rng.choice([k for k in applicable if self.fired[k] == least])
            self.fired[kind] += 1
            if kind == "5xx-storm":
                self._storms[target] = self.storm - 1
            return kind

    def rewrite(self, data: bytes) -> bytes:
        for upstream, proxy in self.rewrites.items():
            data = data.replace(upstream.encode(), proxy.encode())
        return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients gone (a killed sync, a client that timed out on a stall)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _is_list_page(headers: list[tuple[str, str]], body: bytes) -> bool:
    if not any(k.lower() == "x-per-page" for k, _ in headers):
        return False
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, list) and len(parsed) > 0


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the test reads `fired`

        def do_GET(self) -> None:
            self._proxy()

        do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        def _proxy(self) -> None:
            target = f"{self.command} {self.path}"
            count, decision = proxy._decide(target)
            if proxy.on_request is not None:
                proxy.on_request(count)
            if decision == "storm":
                return self._answer(STORM_STATUSES[count % len(STORM_STATUSES)], [], b"")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, data = self._forward(body)
            if self.command != "GET":
                return self._answer(status, headers, data)
            applicable = ["429-seconds", "429-date", "5xx-storm", "drop", "stall"]
            if status == 200 and data:
                applicable += ["truncated", "malformed"]
                if _is_list_page(headers, data):
                    applicable.append("short")
            if forced := proxy._forced(self.path, applicable):
                return self._inject(forced, status, headers, data)
            if decision is None:
                return self._answer(status, headers, data)
            self._inject(proxy._choose(target, applicable), status, headers, data)

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                kept = [
                    (k, proxy.rewrite(v.encode("latin-1")).decode("latin-1"))
                    for k, v in response.getheaders()
                    if k.lower() not in HOP_BY_HOP
                ]
                return response.status, kept, proxy.rewrite(data)
            finally:
                conn.close()

        def _inject(
            self, kind: str, status: int, headers: list[tuple[str, str]], data: bytes
        ) -> None:
            if kind == "429-seconds":
                retry = [("Retry-After", str(int(proxy.retry_after_s)))]
                return self._answer(429, retry, b'{"message":"429 Too Many Requests"}')
            if kind == "429-date":
                when = datetime.now(UTC) + timedelta(seconds=proxy.retry_after_s)
                retry = [("Retry-After", format_datetime(when, usegmt=True))]
                return self._answer(429, retry, b'{"message":"429 Too Many Requests"}')
            if kind == "5xx-storm":
                return self._answer(STORM_STATUSES[0], [], b'{"message":"500 Internal"}')
            if kind == "drop":
                return self._close()
            if kind == "truncated":
                self._head(status, headers, len(data))
                self.wfile.write(data[: len(data) // 2])
                return self._close()
            if kind == "malformed":
                return self._answer(200, headers, data[: len(data) // 2])
            if kind == "short":
                return self._answer(status, headers, json.dumps(json.loads(data)[:-1]).encode())
            time.sleep(proxy.stall_s)  # "stall": the client has given up by now
            try:
                self._answer(status, headers, data)
            except OSError:
                self.close_connection = True

        def _head(self, status: int, headers: list[tuple[str, str]], length: int) -> None:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self._head(status, headers, len(data))
            if self.command != "HEAD":
                self.wfile.write(data)

        def _close(self) -> None:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    return Handler
