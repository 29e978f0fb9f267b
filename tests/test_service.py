"""The HTTP service over real HTTP: authentication, limits, errors, the analytics API, the
Prometheus exposition, the derive debounce, and schemathesis against its OpenAPI spec."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NOT_SET
from sqlalchemy import Engine, insert, text

import service.ingest
from analytics.metrics import metrics
from analytics.scope import Scope
from collectors.cdevents import import_events, read_events
from config.settings import Settings
from service.state import ServiceOptions
from tests.service_helpers import (
    FIXTURES,
    GITLAB,
    READ,
    WRITE,
    Running,
    count,
    prometheus_samples,
    running_service,
)
from warehouse.engine import open_warehouse
from warehouse.schema import Deployment, PolicyViolation, RawPayload

STORY = (FIXTURES / "cdevents" / "story.jsonl").read_text(encoding="utf-8")
EVENT = json.loads(STORY.splitlines()[0])
MARCH = {"since": "2026-03-01", "until": "2026-04-01"}


@pytest.fixture
def story(engine: Engine) -> Iterator[Running]:
    """The service on a warehouse holding the CDEvents story (not derived yet)."""
    import_events(engine, read_events(STORY))
    with running_service(engine) as svc:
        svc.state.freshness.mark_dirty()
        yield svc


# --- authentication ---------------------------------------------------------------------------

READS = ["/api/v1/metrics", "/api/v1/drift", "/api/v1/violations", "/metrics"]


@pytest.mark.parametrize("path", READS)
def test_reads_need_the_read_token(story: Running, path: str) -> None:
    client = story.client
    assert client.get(path, headers=READ).status_code == 200
    assert client.get(path).status_code == 401
    assert client.get(path, headers=WRITE).status_code == 401  # scopes are separate
    assert client.get(path, headers={"Authorization": "Bearer read-secre"}).status_code == 401


def test_writes_need_the_write_token(engine: Engine) -> None:
    with running_service(engine) as svc:
        assert svc.client.post("/events/cdevents", json=EVENT, headers=READ).status_code == 401
        assert svc.client.post("/events/cdevents", json=EVENT).status_code == 401
        assert svc.client.post("/events/cdevents", json=EVENT, headers=WRITE).status_code == 200
    assert count(engine, RawPayload) == 1


def test_unset_token_variables_refuse_their_scope(engine: Engine) -> None:
    with running_service(engine, environ={"CDMETRICS_READ_TOKEN": "read-secret"}) as svc:
        assert svc.client.get("/api/v1/drift", headers=READ).status_code == 200
        refused = svc.client.post("/events/cdevents", json=EVENT, headers=WRITE)
        health = svc.client.get("/healthz")
    assert refused.status_code == 403 and "CDMETRICS_WRITE_TOKEN" in refused.json()["detail"]
    assert health.status_code == 200 and health.json()["warehouse"] == "ok"


def test_an_empty_variable_name_opens_the_scope_on_purpose(engine: Engine) -> None:
    settings = Settings(service={"read_token_env": ""})
    with running_service(engine, settings) as svc:
        assert svc.client.get("/api/v1/drift").status_code == 200
        assert svc.client.post("/events/cdevents", json=EVENT).status_code == 401


# --- limits and errors ------------------------------------------------------------------------


def test_bodies_over_the_limit_are_refused_with_413(engine: Engine) -> None:
    options = ServiceOptions(max_body_bytes=2048)
    big = json.dumps([EVENT] * 20).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    with running_service(engine, options=options) as svc:
        declared = svc.client.post("/events/cdevents", content=big, headers=WRITE)
        streamed = svc.client.post("/events/cdevents", content=chunks(), headers=WRITE)
        small = svc.client.post("/events/cdevents", json=EVENT, headers=WRITE)
        samples = prometheus_samples(svc.client.get("/metrics", headers=READ).text)
    assert (declared.status_code, streamed.status_code, small.status_code) == (413, 413, 200)
    assert "over the limit of 2048 bytes" in streamed.json()["detail"]
    assert samples['cdmetrics_requests_refused_total{reason="too_large"}'] == 2
    assert count(engine, RawPayload) == 1


def test_no_stack_trace_leaves_the_service(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service.ingest, "ingest_gitlab", broken)
    with running_service(engine) as svc:
        answer = svc.client.post("/webhooks/gitlab", json={}, headers=GITLAB)
        after = svc.client.get("/healthz")
    assert answer.status_code == 500 and after.status_code == 200
    assert set(answer.json()) == {"detail"} and "reference" in answer.json()["detail"]
    assert "secret internals" not in answer.text and "Traceback" not in answer.text


# --- the analytics API ------------------------------------------------------------------------


def test_metrics_are_the_cli_json_after_deriving_what_arrived(
    story: Running, engine: Engine
) -> None:
    answer = story.client.get("/api/v1/metrics", params={**MARCH, "by": "week"}, headers=READ)
    assert answer.status_code == 200
    scope = Scope(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    with engine.connect() as conn:
        expected = json.loads(json.dumps(metrics(conn, scope, by="week"), default=str))
    assert answer.json() == expected
    assert answer.json()["deployment_frequency"]["deployments"] == 4


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"since": "2026-04-01", "until": "2026-03-01"}, "reversed period: since 2026-04-01"),
        ({"since": "last tuesday"}, "since: 'last tuesday' is not a date"),
        ({"by": "year"}, "Input should be 'week', 'month', 'team' or 'service'"),
        ({"until": "9999-12-31"}, "until: 9999-12-31 is outside 1970-01-01 .. 2100-01-01"),
        ({"since": "0001-01-02", "by": "week"}, "since: 0001-01-02 is outside"),
        ({"since": "2000-01-01", "until": "2020-01-01", "by": "week"}, "over the limit of 520"),
        ({"since": "1970-01-01", "until": "2099-01-01", "by": "month"}, "1548 slices, over the"),
    ],
)
def test_bad_scope_parameters_are_422(story: Running, params: dict[str, str], detail: str) -> None:
    answer = story.client.get("/api/v1/metrics", params=params, headers=READ)
    assert answer.status_code == 422 and detail in json.dumps(answer.json())


def test_the_slice_limit_is_520_weeks(story: Running) -> None:
    """2016-04-11 .. 2026-03-30 is 520 ISO weeks (Mondays both); a week earlier is one too many."""
    sliced = {"until": "2026-03-30", "by": "week"}
    most = story.client.get(
        "/api/v1/metrics", params={**sliced, "since": "2016-04-11"}, headers=READ
    )
    over = story.client.get(
        "/api/v1/metrics", params={**sliced, "since": "2016-04-04"}, headers=READ
    )
    assert most.status_code == 200 and most.json()["deployment_frequency"]["deployments"] == 4
    assert over.status_code == 422
    assert over.json()["detail"] == "by=week: 521 slices, over the limit of 520; shorten the period"


def test_violations_since_outside_the_bounds_is_422(story: Running) -> None:
    answer = story.client.get("/api/v1/violations", params={"since": "0001-01-02"}, headers=READ)
    assert answer.status_code == 422 and "outside 1970-01-01" in answer.json()["detail"]


DEEP = "[" * 100_000 + "]" * 100_000  # past Python's parser (RecursionError)
DEEPER_THAN_ALLOWED = '{"service": ' + "[" * 65 + "]" * 65 + ', "image": "x", "to": "test"}'


@pytest.mark.parametrize(
    ("path", "credential"),
    [
        ("/events/cdevents", WRITE),
        ("/webhooks/gitlab", GITLAB),
        ("/webhooks/jenkins", WRITE),
        ("/api/v1/gate", WRITE),
    ],
)
def test_deeply_nested_json_is_422(engine: Engine, path: str, credential: dict[str, str]) -> None:
    headers = {**credential, "Content-Type": "application/json"}
    with running_service(engine) as svc:
        answers = [
            svc.client.post(path, content=b, headers=headers) for b in (DEEP, DEEPER_THAN_ALLOWED)
        ]
        assert svc.client.get("/healthz").status_code == 200
    assert [a.status_code for a in answers] == [422, 422]
    assert "nested deeper than 64 levels" in answers[0].json()["detail"]
    assert count(engine, RawPayload) == 0


def test_drift_now_per_service_and_pair(story: Running) -> None:
    rows = story.client.get("/api/v1/drift", params={"service": "myapp"}, headers=READ).json()
    assert {(r["upstream"], r["downstream"]) for r in rows} == {
        ("test", "staging"),
        ("staging", "production"),
    }
    assert set(rows[0]) == {
        "service", "upstream", "downstream", "upstream_digest", "downstream_digest", "in_sync",
        "commits_behind", "drift_age_hours", "downstream_ever_upstream",
    }  # fmt: skip


def test_violations_as_recorded_by_policy_scans(story: Running, engine: Engine) -> None:
    seen = datetime(2026, 3, 4, tzinfo=UTC)
    happened = datetime(2026, 2, 20, tzinfo=UTC)  # a scan finds what happened before it
    with engine.begin() as conn:
        conn.execute(
            insert(PolicyViolation).values(
                policy="untested-image", subject="deployment:1", severity="error",
                message="deploy it to staging first", occurred_at=happened, first_seen_at=seen,
            )
        )  # fmt: skip
    rows = story.client.get("/api/v1/violations", headers=READ).json()
    assert rows == [
        {
            "policy": "untested-image", "severity": "error", "service": None, "environment": None,
            "subject": "deployment:1", "message": "deploy it to staging first", "url": None,
            "occurred_at": happened.isoformat(), "first_seen": seen.isoformat(),
        }
    ]  # fmt: skip
    # `since` is when it happened, not when a scan found it
    later = story.client.get("/api/v1/violations", params={"since": "2026-02-21"}, headers=READ)
    assert later.json() == []
    since = story.client.get("/api/v1/violations", params={"since": "2026-02-20"}, headers=READ)
    assert len(since.json()) == 1


def test_the_gate_decides_with_reasons(story: Running) -> None:
    image = "registry.example.com/shop/myapp@sha256:" + "c" * 64
    body = {"service": "myapp", "image": image, "to": "production"}
    denied = story.client.post("/api/v1/gate", json=body, headers=WRITE)
    unknown = story.client.post("/api/v1/gate", json={**body, "service": "nope"}, headers=WRITE)
    assert story.client.post("/api/v1/gate", json=body, headers=READ).status_code == 401
    assert denied.status_code == 200
    decision = denied.json()
    assert decision["decision"] == "deny" and decision["digest"] == "sha256:" + "c" * 64
    assert "untested-image" in {r["policy"] for r in decision["reasons"]}  # never in staging
    assert unknown.status_code == 404 and unknown.json()["decision"] == "error"


# --- long or blocked reads on PostgreSQL ------------------------------------------------------


@pytest.fixture
def story_on_postgres(pg_schema_url: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """(url, schema): the story in a fresh PostgreSQL schema."""
    url, schema = pg_schema_url
    engine = engine_on(url, schema)
    import_events(engine, read_events(STORY))
    engine.dispose()
    yield url, schema


def engine_on(url: str, schema: str, lock_timeout_s: float = 10) -> Engine:
    """An engine on `schema` whose connections carry the schema as application name."""
    args = {"options": f"-csearch_path={schema}", "application_name": schema}
    return open_warehouse(url, lock_timeout_s=lock_timeout_s, connect_args=args)


LOCKED = "lock table service, deployment, deployment_chain in access exclusive mode"
WAITING = text(
    "select count(*) from pg_stat_activity where application_name = :name "
    "and wait_event_type = 'Lock'"
)


def waiting(engine: Engine, name: str) -> int:
    """How many of the service's statements wait for a lock now (a new transaction each time:
    PostgreSQL keeps one snapshot of pg_stat_activity per transaction)."""
    with engine.connect() as conn:
        return int(conn.execute(WAITING, {"name": name}).scalar_one())


def test_the_gate_cannot_decide_behind_a_locked_table(story_on_postgres: tuple[str, str]) -> None:
    engine = engine_on(*story_on_postgres, lock_timeout_s=1)
    body = {"service": "myapp", "image": "shop@sha256:" + "c" * 64, "to": "production"}
    with running_service(engine) as svc, engine.connect() as holder:
        holder.execute(text(LOCKED))
        answer = svc.client.post("/api/v1/gate", json=body, headers=WRITE)
        holder.rollback()
    engine.dispose()
    assert answer.status_code == 503
    assert answer.json()["decision"] == "error" and answer.json()["digest"] is None
    assert "unavailable or timed out" in answer.json()["reasons"][0]["message"]


def test_a_read_stops_when_its_client_disconnects(story_on_postgres: tuple[str, str]) -> None:
    """The metrics read waits on a lock (no lock timeout); the client gives up after 2 s; the
    service cancels its statement while the lock is still held, and counts the request."""
    url, schema = story_on_postgres
    engine = engine_on(url, schema, lock_timeout_s=0)
    with (
        running_service(engine) as svc,
        engine.connect() as holder,
        ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=svc.url, timeout=2) as impatient,
    ):
        holder.execute(text(LOCKED))
        gone = pool.submit(impatient.get, "/api/v1/metrics", params=MARCH, headers=READ)
        assert poll(lambda: waiting(engine, schema) == 1), "the read never waited on the lock"
        with pytest.raises(httpx.ReadTimeout):
            gone.result()
        assert poll(lambda: waiting(engine, schema) == 0), "the read waits after its client left"
        counters = svc.state.counters
        name, path = "cdmetrics_requests_cancelled_total", "/api/v1/metrics"
        assert poll(lambda: counters.value(name, path=path) == 1)
        holder.rollback()
    engine.dispose()


def poll(condition: Callable[[], bool], seconds: float = 10) -> bool:
    """Whether `condition` holds within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- Prometheus, health, debounce -------------------------------------------------------------


def test_prometheus_exposition_has_counters_and_dora_per_service_and_team(story: Running) -> None:
    story.client.post("/events/cdevents", json=EVENT, headers=WRITE)  # a replay
    story.client.post("/events/cdevents", json={"context": {}}, headers=WRITE)  # malformed
    answer = story.client.get("/metrics", headers=READ)
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = prometheus_samples(answer.text)
    assert samples['cdmetrics_events_duplicate_total{endpoint="cdevents"}'] == 1
    assert samples['cdmetrics_events_rejected_total{endpoint="cdevents"}'] == 1
    assert samples["cdmetrics_window_seconds"] == 30 * 86400
    assert "# TYPE cdmetrics_events_received_total counter" in answer.text
    # the story is in March 2026, outside the rolling window: no DORA sample, no NaN
    assert "NaN" not in answer.text


def test_dora_gauges_over_the_window(engine: Engine) -> None:
    base = datetime.now(UTC).date() - timedelta(days=10)  # the story, moved into the window
    lines = STORY
    for day, offset in (("02", 0), ("03", 1), ("05", 3)):
        lines = lines.replace(f"2026-03-{day}", (base + timedelta(days=offset)).isoformat())
    import_events(engine, read_events(lines))
    with running_service(engine) as svc:
        svc.state.freshness.mark_dirty()
        samples = prometheus_samples(svc.client.get("/metrics", headers=READ).text)
    assert samples['cdmetrics_deployments{service="myapp",team=""}'] == 4
    assert samples['cdmetrics_change_failure_rate{service="myapp",team=""}'] == 0.25
    assert samples['cdmetrics_recovery_time_hours{service="myapp",team="",quantile="0.5"}'] == 1.5
    assert samples['cdmetrics_team_deployments{team="(no team)"}'] == 4
    level = 'cdmetrics_dora_level{service="myapp",team="",metric="change_failure_rate",level="low"}'
    assert samples[level] == 1
    assert not any(
        k.startswith("cdmetrics_lead_time_hours") for k in samples
    )  # undefined: left out


def test_derive_runs_in_the_background_not_per_event(engine: Engine) -> None:
    events = [json.loads(line) for line in STORY.splitlines()]
    options = ServiceOptions(derive_interval_s=0.2)
    with running_service(engine, options=options) as svc:
        for event in events:
            svc.client.post("/events/cdevents", json=event, headers=WRITE)
        deadline = time.monotonic() + 10
        while svc.state.freshness.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        health = svc.client.get("/healthz").json()
    assert health["derive"]["pending"] is False
    assert 1 <= health["derive"]["runs"] < len(events)
    assert count(engine, Deployment) == 7


# --- the OpenAPI spec and schemathesis --------------------------------------------------------


def test_the_openapi_spec_describes_every_endpoint(engine: Engine) -> None:
    with running_service(engine) as svc:
        spec = svc.client.get("/openapi.json").json()
    paths = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert {
        ("POST", "/events/cdevents"), ("POST", "/webhooks/gitlab"), ("POST", "/webhooks/jenkins"),
        ("GET", "/api/v1/metrics"), ("GET", "/api/v1/drift"), ("GET", "/api/v1/violations"),
        ("POST", "/api/v1/gate"), ("GET", "/metrics"), ("GET", "/healthz"),
    } <= paths  # fmt: skip
    assert set(spec["components"]["securitySchemes"]) == {"HTTPBearer", "HTTPBasic", "APIKeyHeader"}


def test_the_openapi_spec_documents_errors_and_types(engine: Engine) -> None:
    """Every route with a credential documents 400, 401, 403, 422 (with FastAPI's
    HTTPValidationError defined) and 503; periods are typed date-time."""
    with running_service(engine) as svc:
        spec = svc.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"HTTPValidationError", "ValidationError", "Problem"} <= set(schemas)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            needed = {"200", "503"} if path == "/healthz" else {"400", "401", "403", "422", "503"}
            assert needed <= documented, (method, path, documented)
    for path, names in (("/api/v1/metrics", {"since", "until"}), ("/api/v1/violations", {"since"})):
        parameters = spec["paths"][path]["get"]["parameters"]
        formats = {p["name"]: p["schema"].get("format") for p in parameters if p["name"] in names}
        assert formats == dict.fromkeys(names, "date-time")
    gate = spec["paths"]["/api/v1/gate"]["post"]["responses"]
    assert {"404", "500", "503"} <= set(gate)
    assert gate["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GateDecision"
    }


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    engine = open_warehouse(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'w.db'}")
    import_events(engine, read_events(STORY))
    with running_service(engine) as svc:
        yield svc
    engine.dispose()


CREDENTIALS = {"/webhooks/gitlab": GITLAB, "/webhooks/jenkins": WRITE}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(operation: Any, client: httpx.Client, credentials: dict[str, str]) -> Any:
    """A hypothesis test sending the cases schemathesis draws for `operation`."""

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: schemathesis.Case) -> None:
        body = None if case.body is None or case.body is NOT_SET else json.dumps(case.body)
        response = client.request(
            case.method,
            case.formatted_path,
            params=case.query,
            headers={**(case.headers or {}), **credentials},
            content=body,
        )
        case.validate_response(response, checks=CHECKS)

    return check


def test_fuzzing_the_openapi_spec_finds_no_server_error(fuzzed: Running) -> None:
    """schemathesis generates requests from the spec for every operation (valid and invalid
    bodies and parameters), sent with the right credential; no answer may be a 5xx or stray from
    the documented status codes, content types and schemas."""
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10
    with httpx.Client(base_url=fuzzed.url, timeout=30) as client:
        for operation in operations:
            method = operation.method.upper()
            credentials = CREDENTIALS.get(operation.path, WRITE if method == "POST" else READ)
            fuzz(operation, client, credentials)()
