"""The one retry policy (collectors/http.py): Retry-After in seconds or as an HTTP date, capped;
backoff with jitter; what is retried, over every client's adapter (requests, httpx, urllib3)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import requests
import urllib3

from collectors.http import (
    RETRY_STATUSES,
    PolicySession,
    PolicyTransport,
    RateLimiter,
    RequestCounter,
    RetryPolicy,
    retry_after_seconds,
    urllib3_retry,
)
from sandbox.server import FaultRule, Response, Router, SimulatorApp, SimulatorServer

NOW = datetime(2026, 12, 4, 17, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Fri, 04 Dec 2026 17:00:05 GMT", 5.0),  # RFC 9110's HTTP date
        ("Friday, 04-Dec-26 17:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Fri Dec  4 17:00:30 2026", 30.0),  # asctime form (no zone: UTC)
        ("Fri, 04 Dec 2026 16:00:00 GMT", 0.0),  # already past: retry now
        ("", None),
        (None, None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, NOW) == seconds


def test_delay_is_backoff_with_jitter_or_the_capped_retry_after() -> None:
    policy = RetryPolicy(retries=6, max_retry_after=10.0)
    backoffs = [policy.delay(3) for _ in range(200)]
    assert all(0 <= d <= 0.8 for d in backoffs) and len(set(backoffs)) > 100  # jittered
    assert policy.delay(0, "3") == 3.0
    assert policy.delay(0, "3600") == 10.0
    assert policy.delay(0, "Fri, 04 Dec 2099 17:00:05 GMT") == 10.0
    assert policy.delay(0, "not a date") <= 0.1  # unreadable: plain backoff


@pytest.fixture
def server() -> Iterator[tuple[SimulatorApp, str]]:
    router = Router()
    router.add("/ping", lambda request: {"pong": True})
    router.add(
        "/too-large",
        lambda request: Response({"message": "too large"}, 413, {"Retry-After": "1"}),
    )
    app = SimulatorApp(router)
    with SimulatorServer(app) as running:
        yield app, running.url


def test_requests_session_retries_a_date_retry_after_capped_and_counts_attempts(
    server: tuple[SimulatorApp, str],
) -> None:
    app, url = server
    app.faults.add(FaultRule("/ping", "429", times=3, seconds=3600, http_date=True))
    plain = requests.get(f"{url}/ping", timeout=5)
    header = plain.headers["Retry-After"]
    assert plain.status_code == 429 and re.fullmatch(
        r"\w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT", header
    )
    assert 3590 < (retry_after_seconds(header) or 0) <= 3600
    waits: list[float] = []
    counter = RequestCounter()
    session = PolicySession(RateLimiter(0), counter, 5, RetryPolicy(3, 0.25, sleep=waits.append))
    assert session.get(f"{url}/ping").json() == {"pong": True}
    assert waits == [0.25, 0.25] and counter.value == 3
    app.faults.add(FaultRule("/ping", "503"))
    assert session.get(f"{url}/ping").status_code == 503  # retries spent: the last answer
    assert counter.value == 3 + 4 and session.last_status == "HTTP 503 Service Unavailable"


def test_a_refused_connection_is_retried_then_raised() -> None:
    waits: list[float] = []
    session = PolicySession(RateLimiter(0), RequestCounter(), 1, RetryPolicy(2, sleep=waits.append))
    with pytest.raises(requests.ConnectionError):
        session.get("http://127.0.0.1:9/nothing")
    assert len(waits) == 2


FAMILIES = ("requests", "httpx", "urllib3")


def get(family: str, url: str, policy: RetryPolicy) -> tuple[int, bytes]:
    """(status, body) of a GET through `family`'s adapter of `policy`."""
    counter, limiter = RequestCounter(), RateLimiter(0)
    if family == "requests":
        answer = PolicySession(limiter, counter, 5, policy).get(url)
        return answer.status_code, answer.content
    if family == "httpx":
        with httpx.Client(transport=PolicyTransport(limiter, counter, policy), timeout=5) as client:
            reply = client.get(url)
        return reply.status_code, reply.content
    with urllib3.PoolManager(retries=urllib3_retry(policy, counter), timeout=5) as pool:
        raw = pool.request("GET", url)
    return raw.status, raw.data


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("ahead", "cap"), [(2.0, 60.0), (3600.0, 0.5)])
def test_every_client_honours_a_date_retry_after_capped(
    server: tuple[SimulatorApp, str], family: str, ahead: float, cap: float
) -> None:
    app, url = server
    rule = app.faults.add(FaultRule("/ping", "429", times=3, seconds=ahead, http_date=True))
    waits: list[float] = []
    status, body = get(family, f"{url}/ping", RetryPolicy(6, cap, sleep=waits.append))
    assert status == 200 and json.loads(body) == {"pong": True}
    assert rule.fired == 3 and rule.matched == 4
    assert len(waits) == 3
    if ahead > cap:
        assert waits == [cap] * 3  # the date is an hour away: the cap, not the backoff
    else:
        assert all(0.5 <= w <= ahead for w in waits), waits  # the date's wait, whole seconds


@pytest.mark.parametrize("family", FAMILIES)
def test_a_413_is_not_retried(server: tuple[SimulatorApp, str], family: str) -> None:
    app, url = server
    assert 413 not in RETRY_STATUSES
    rule = app.faults.add(FaultRule("/too-large", "delay"))  # counts the requests only
    waits: list[float] = []
    status, _ = get(family, f"{url}/too-large", RetryPolicy(6, 60, sleep=waits.append))
    assert status == 413 and rule.matched == 1 and waits == []
