"""The simulator HTTP framework over real HTTP: routing, pagination with python-gitlab, faults,
rate limiting, auth and server restarts."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import gitlab
import pytest
import requests

from collectors.http import gitlab_page_shortfall
from sandbox.server import (
    FaultRule,
    HTTPError,
    RateLimit,
    Request,
    Response,
    Router,
    SimulatorApp,
    SimulatorServer,
    json_time,
    paginate_keyset,
    paginate_offset,
)

VERSION = {"version": "17.0.0", "revision": "abc"}
THINGS: list[dict[str, Any]] = [{"id": i, "name": f"thing-{i}"} for i in range(1, 51)]


def build_router() -> Router:
    router = Router()
    api = Router()

    @api.route("/things")
    def things(request: Request) -> Response:
        limit = int(request.query.get("count_limit", "10000"))
        return paginate_offset(request, THINGS, count_limit=limit)

    @api.route("/keyset")
    def keyset(request: Request) -> Response:
        desc = request.query.get("sort") == "desc"
        items = sorted(THINGS, key=lambda t: t["id"], reverse=desc)
        return paginate_keyset(request, items, key=lambda t: t["id"])

    @api.route("/projects/{id}/merge_requests/{iid}")
    def merge_request(request: Request) -> dict[str, Any]:
        return {"params": request.params, "raw_path": request.raw_path, "path": request.path}

    @api.route("/projects/{id}/repository/files/{file:path}")
    def file(request: Request) -> dict[str, Any]:
        return {"params": request.params}

    @api.route("/echo", methods=("GET", "POST", "PUT"))
    def echo(request: Request) -> dict[str, Any]:
        return {
            "method": request.method,
            "query": request.query,
            "query_multi": request.query_multi,
            "body": request.body.decode(),
            "token": request.headers.get("private-token"),
            "base_url": request.base_url,
        }

    @api.route("/json", methods=("POST",))
    def parse_json(request: Request) -> Any:
        return {"got": request.json()}

    @api.route("/version")
    def version(request: Request) -> dict[str, str]:
        return VERSION

    router.mount("/api/v4", api)
    router.add("/raw", lambda r: Response(b"\x00\x01", headers={"X-Kind": "bytes"}))
    router.add("/text", lambda r: Response("hello", content_type="text/plain"))
    router.add("/empty", lambda r: Response(status=204), methods=("DELETE",))
    router.add("/when", lambda r: {"at": datetime(2016, 8, 11, 11, 32, 35, 145999, tzinfo=UTC)})
    router.add("/teapot", lambda r: (_ for _ in ()).throw(HTTPError(418, "418 I'm a teapot")))
    router.add("/boom", lambda r: 1 / 0)
    return router


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[SimulatorApp, str]]:
    app = SimulatorApp(build_router(), keep_log=True, max_body=1000)
    with SimulatorServer(app) as server:
        yield app, server.url


@pytest.fixture
def sim(served: tuple[SimulatorApp, str]) -> Iterator[tuple[SimulatorApp, str]]:
    """The shared server with its state reset around each test."""
    app, url = served
    yield app, url
    app.auth, app.rate_limit = None, None
    app.faults.clear()
    app.stats.reset()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture
def gl(sim: tuple[SimulatorApp, str]) -> Iterator[gitlab.Gitlab]:
    with gitlab.Gitlab(sim[1], private_token="t", retry_transient_errors=True) as client:
        yield client


# --- routing and responses ------------------------------------------------------------------


def test_json_route_answers_and_is_counted(
    sim: tuple[SimulatorApp, str], session: requests.Session
) -> None:
    app, url = sim
    r = session.get(f"{url}/api/v4/version")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.content == b'{"version":"17.0.0","revision":"abc"}'
    assert app.stats.requests == 1
    assert app.stats.by_route == {"/api/v4/version": 1}
    assert app.stats.by_status == {200: 1}
    assert app.stats.log is not None and app.stats.log[0][1:] == ("GET", "/api/v4/version", 200)


def test_request_fields(sim: tuple[SimulatorApp, str], session: requests.Session) -> None:
    _, url = sim
    r = session.post(
        f"{url}/api/v4/echo?state=opened&labels=a&labels=b&empty=",
        data=b"payload",
        headers={"PRIVATE-TOKEN": "secret"},
    )
    assert r.json() == {
        "method": "POST",
        "query": {"state": "opened", "labels": "b", "empty": ""},
        "query_multi": {"state": ["opened"], "labels": ["a", "b"], "empty": [""]},
        "body": "payload",
        "token": "secret",
        "base_url": url,
    }


def test_json_body(sim: tuple[SimulatorApp, str], session: requests.Session) -> None:
    r = session.post(f"{sim[1]}/api/v4/json", json={"title": "Fix läuft"})
    assert r.json() == {"got": {"title": "Fix läuft"}}
    r = session.post(f"{sim[1]}/api/v4/json", data=b"{not json")
    assert r.status_code == 400
    assert r.json()["message"].startswith("400 Bad request")


def test_body_over_max_body_is_413(
    sim: tuple[SimulatorApp, str], session: requests.Session
) -> None:
    r = session.put(f"{sim[1]}/api/v4/echo", data=b"x" * 5000)
    assert r.status_code == 413


def test_percent_encoded_path_params_are_decoded_once(
    sim: tuple[SimulatorApp, str], session: requests.Session
) -> None:
    _, url = sim
    r = session.get(f"{url}/api/v4/projects/group%2Fsub%2Fproj/merge_requests/7")
    assert r.json() == {
        "params": {"id": "group/sub/proj", "iid": "7"},
        "raw_path": "/api/v4/projects/group%2Fsub%2Fproj/merge_requests/7",
        "path": "/api/v4/projects/group/sub/proj/merge_requests/7",
    }
    # Harbor double-encodes: one decoding leaves the inner encoding for the simulator
    r = session.get(f"{url}/api/v4/projects/lib%252Fnginx/merge_requests/1")
    assert r.json()["params"]["id"] == "lib%2Fnginx"
    r = session.get(f"{url}/api/v4/projects/12/repository/files/src/app%20main.py")
    assert r.json()["params"] == {"id": "12", "file": "src/app main.py"}


def test_head_is_answered_by_get_routes_without_body(
    sim: tuple[SimulatorApp, str], session: requests.Session
) -> None:
    r = session.head(f"{sim[1]}/api/v4/version")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == str(len(b'{"version":"17.0.0","revision":"abc"}'))


def test_unknown_path_is_404_and_wrong_method_405(
    sim: tuple[SimulatorApp, str], session: requests.Session
) -> None:
    app, url = sim
    r = session.get(f"{url}/api/v4/nothing")
    assert (r.status_code, r.json()) == (404, {"message": "404 Not Found"})
    r = session.delete(f"{url}/api/v4/version")
    assert (r.status_code, r.json()) == (405, {"message": "405 Method Not Allowed"})
    assert r.headers["Allow"] == "GET, HEAD"
    assert app.stats.by_route["<unmatched>"] == 2


def test_response_kinds(sim: tuple[SimulatorApp, str], session: requests.Session) -> None:
    _, url = sim
    r = session.get(f"{url}/raw")
    assert (r.content, r.headers["Content-Type"], r.headers["X-Kind"]) == (
        b"\x00\x01",
        "application/octet-stream",
        "bytes",
    )
    r = session.get(f"{url}/text")
    assert (r.text, r.headers["Content-Type"]) == ("hello", "text/plain")
    r = session.delete(f"{url}/empty")
    assert (r.status_code, r.content) == (204, b"")
    assert session.get(f"{url}/when").json() == {"at": "2016-08-11T11:32:35.145Z"}


def test_handler_errors(
    sim: tuple[SimulatorApp, str], session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = sim
    r = session.get(f"{url}/teapot")
    assert (r.status_code, r.json()) == (418, {"message": "418 I'm a teapot"})
    with caplog.at_level(logging.ERROR, logger="sandbox.server"):
        r = session.get(f"{url}/boom")
    assert (r.status_code, r.json()) == (500, {"message": "500 Internal Server Error"})
    assert any(rec.exc_info and rec.exc_info[0] is ZeroDivisionError for rec in caplog.records)


def test_auth_refuses_with_401(sim: tuple[SimulatorApp, str], gl: gitlab.Gitlab) -> None:
    app, _ = sim
    app.auth = lambda request: request.headers.get("private-token") == "right"
    with pytest.raises(gitlab.GitlabAuthenticationError) as info:
        gl.http_get("/version")
    assert info.value.response_code == 401
    assert info.value.error_message == "401 Unauthorized"
    app.auth = lambda request: request.headers.get("private-token") == "t"
    assert gl.http_get("/version") == VERSION


def test_router_rejects_bad_patterns() -> None:
    router = Router()
    with pytest.raises(ValueError, match="start with"):
        router.add("things", lambda r: None)
    with pytest.raises(ValueError, match="repeats"):
        router.add("/a/{id}/b/{id}", lambda r: None)
    assert router.match("GET", "/a") is None


def test_first_route_added_wins() -> None:
    router = Router()
    router.add("/projects/{id}/tags", lambda r: "tags")
    router.add("/projects/{rest:path}", lambda r: "rest")
    found = router.match("GET", "/projects/1/tags")
    assert found is not None and found[0].pattern == "/projects/{id}/tags"
    found = router.match("HEAD", "/projects/a/b")
    assert found is not None and found[1] == {"rest": "a/b"}


def test_json_time() -> None:
    cest = timezone(timedelta(hours=2))
    assert json_time(datetime(2016, 8, 11, 13, 32, 35, 145_678, tzinfo=cest)) == (
        "2016-08-11T11:32:35.145Z"
    )
    assert json_time(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="aware"):
        json_time(datetime(2024, 1, 1))


# --- pagination -----------------------------------------------------------------------------


def test_offset_pagination_headers(
    sim: tuple[SimulatorApp, str], session: requests.Session
) -> None:
    _, url = sim
    r = session.get(f"{url}/api/v4/things?state=opened&per_page=7&page=2")
    assert [t["id"] for t in r.json()] == list(range(8, 15))
    h = r.headers
    assert (h["X-Page"], h["X-Per-Page"], h["X-Next-Page"], h["X-Prev-Page"]) == (
        "2",
        "7",
        "3",
        "1",
    )
    assert (h["X-Total"], h["X-Total-Pages"]) == ("50", "8")
    base = f"{url}/api/v4/things?state=opened&per_page=7"
    assert h["Link"] == (
        f'<{base}&page=1>; rel="prev", <{base}&page=3>; rel="next", '
        f'<{base}&page=1>; rel="first", <{base}&page=8>; rel="last"'
    )
    last = session.get(f"{url}/api/v4/things?per_page=7&page=8")
    assert [t["id"] for t in last.json()] == [50]
    assert last.headers["X-Next-Page"] == ""
    assert 'rel="next"' not in last.headers["Link"]
    # bad values fall back to the defaults; per_page is capped
    r = session.get(f"{url}/api/v4/things?per_page=abc&page=-3")
    assert (r.headers["X-Page"], r.headers["X-Per-Page"], r.headers["X-Prev-Page"]) == (
        "1",
        "20",
        "",
    )
    assert session.get(f"{url}/api/v4/things?per_page=1000").headers["X-Per-Page"] == "100"


@pytest.mark.parametrize("count_limit", [10_000, 20])
def test_python_gitlab_reads_every_offset_page(gl: gitlab.Gitlab, count_limit: int) -> None:
    listing = gl.http_list("/things", iterator=True, per_page=7, count_limit=count_limit)
    assert isinstance(listing, gitlab.GitlabList)
    assert [t["id"] for t in listing] == [t["id"] for t in THINGS]
    if count_limit < len(THINGS):
        assert (listing.total, listing.total_pages) == (None, None)
    else:
        assert (listing.total, listing.total_pages) == (50, 8)


def test_offset_over_count_limit_has_no_totals(
    sim: tuple[SimulatorApp, str], session: requests.Session
) -> None:
    r = session.get(f"{sim[1]}/api/v4/things?count_limit=20&per_page=7")
    assert "X-Total" not in r.headers and "X-Total-Pages" not in r.headers
    assert 'rel="last"' not in r.headers["Link"] and 'rel="next"' in r.headers["Link"]


@pytest.mark.parametrize("sort", ["asc", "desc"])
def test_python_gitlab_reads_every_keyset_page(
    sim: tuple[SimulatorApp, str], gl: gitlab.Gitlab, sort: str
) -> None:
    app, _ = sim
    listing = gl.http_list(
        "/keyset", iterator=True, per_page=7, pagination="keyset", order_by="id", sort=sort
    )
    ids = [t["id"] for t in listing]
    assert ids == sorted(range(1, 51), reverse=sort == "desc")
    assert app.stats.by_route["/api/v4/keyset"] == 8
    assert app.stats.log is not None
    cursor = "id_before=44" if sort == "desc" else "id_after=7"
    assert cursor in app.stats.log[1][2]


def test_keyset_last_page_has_no_link(
    sim: tuple[SimulatorApp, str], session: requests.Session
) -> None:
    _, url = sim
    r = session.get(f"{url}/api/v4/keyset?pagination=keyset&order_by=id&sort=asc&id_after=45")
    assert [t["id"] for t in r.json()] == [46, 47, 48, 49, 50]
    assert "Link" not in r.headers and "X-Total" not in r.headers
    r = session.get(f"{url}/api/v4/keyset?pagination=keyset&sort=asc&id_after=x")
    assert r.status_code == 400


# --- faults and rate limits -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "detected"),
    [
        ("things?per_page=7&page=2", True),  # another page follows: a full one is promised
        ("things?per_page=7&page=8", True),  # the last page: what X-Total leaves (1 item)
        ("things?per_page=7&page=2&count_limit=20", True),  # X-Next-Page without totals
        (
            "things?per_page=7&page=8&count_limit=20",
            False,
        ),  # no totals: the last page promises nothing
        ("keyset?pagination=keyset&sort=asc&per_page=7", True),  # rel="next": a full page
        ("keyset?pagination=keyset&sort=asc&id_after=45", False),  # the last keyset page
    ],
)
def test_short_pages_keep_their_headers_and_are_detected(
    sim: tuple[SimulatorApp, str], session: requests.Session, target: str, detected: bool
) -> None:
    app, url = sim
    whole = session.get(f"{url}/api/v4/{target}")
    app.faults.add(FaultRule(path="/things|/keyset", kind="short", times=1))
    cut = session.get(f"{url}/api/v4/{target}")
    assert cut.json() == whole.json()[:-1]

    def pagination(r: requests.Response) -> dict[str, str]:
        return {k: v for k, v in r.headers.items() if k.startswith("X-") or k == "Link"}

    assert pagination(cut) == pagination(whole)
    assert gitlab_page_shortfall(whole) is None
    shortfall = gitlab_page_shortfall(cut)
    assert (shortfall is not None) == detected
    assert shortfall is None or shortfall.endswith(f"from {url}/api/v4/{target}")


def test_500_twice_then_success_is_retried_by_python_gitlab(
    sim: tuple[SimulatorApp, str], gl: gitlab.Gitlab
) -> None:
    app, _ = sim
    rule = app.faults.add(FaultRule(path=r"/version$", kind="500", times=2))
    assert gl.http_get("/version") == VERSION
    assert (rule.fired, app.faults.fired["500"]) == (2, 2)
    assert app.stats.by_status == {500: 2, 200: 1}


def test_fault_schedule_after_every_times_method(
    sim: tuple[SimulatorApp, str], session: requests.Session
) -> None:
    app, url = sim
    app.faults.add(FaultRule(path="/version", kind="503", after=1, every=2, times=2))
    app.faults.add(FaultRule(path="/version", kind="502", method="POST"))
    codes = [session.get(f"{url}/api/v4/version").status_code for _ in range(7)]
    assert codes == [200, 200, 503, 200, 503, 200, 200]
    assert session.get(f"{url}/api/v4/echo").status_code == 200  # path does not match
    assert app.faults.fired == {"503": 2}


def test_drop_breaks_the_response_and_python_gitlab_retries(
    sim: tuple[SimulatorApp, str], session: requests.Session, gl: gitlab.Gitlab
) -> None:
    app, url = sim
    app.faults.add(FaultRule(path="/version", kind="drop", times=1))
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        session.get(f"{url}/api/v4/version")
    assert session.get(f"{url}/api/v4/version").status_code == 200
    app.faults.add(FaultRule(path="/version", kind="drop", times=1))
    assert gl.http_get("/version") == VERSION
    assert app.faults.fired["drop"] == 2
    assert app.stats.by_status == {0: 2, 200: 2}


def test_delay(sim: tuple[SimulatorApp, str], session: requests.Session) -> None:
    app, url = sim
    app.faults.add(FaultRule(path="/version", kind="delay", seconds=0.2, times=1))
    start = time.monotonic()
    assert session.get(f"{url}/api/v4/version").status_code == 200
    assert time.monotonic() - start >= 0.2
    assert app.faults.fired["delay"] == 1


def test_429_retry_after_is_honoured_by_python_gitlab(
    sim: tuple[SimulatorApp, str], gl: gitlab.Gitlab, session: requests.Session
) -> None:
    app, url = sim
    app.rate_limit = RateLimit(per_second=1, burst=1)
    assert gl.http_get("/version") == VERSION
    assert gl.http_get("/version") == VERSION  # 429, waits Retry-After, succeeds
    assert app.stats.log is not None
    statuses = [entry[3] for entry in app.stats.log]
    assert statuses == [200, 429, 200]
    assert app.stats.log[2][0] - app.stats.log[1][0] >= 1.0
    assert app.stats.rate_limited == 1
    r = session.get(f"{url}/api/v4/version")
    assert (r.status_code, r.headers["Retry-After"]) == (429, "1")
    assert r.json() == {"message": "429 Too Many Requests"}


def test_rate_limit_bucket() -> None:
    assert RateLimit(per_second=0).take() is None  # disabled
    bucket = RateLimit(per_second=0.25, burst=2, retry_after=1)
    assert [bucket.take(), bucket.take()] == [None, None]
    assert bucket.take() == 4  # a token takes 4 s to come back


# --- the server -----------------------------------------------------------------------------


def test_server_stops_and_restarts_on_the_same_port(session: requests.Session) -> None:
    app = SimulatorApp(build_router())
    server = SimulatorServer(app)
    url = server.start()
    try:
        assert url == server.url == f"http://127.0.0.1:{server.port}"
        assert session.get(f"{url}/api/v4/version").status_code == 200
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{url}/api/v4/version")
        assert server.start() == url
        assert session.get(f"{url}/api/v4/version").status_code == 200
        assert app.stats.requests == 2
    finally:
        server.stop()
    server.stop()  # a second stop is harmless
