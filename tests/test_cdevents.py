"""CDEvents v0.4 and v0.5: the models on the spec's examples, the mapping, the import (CLI and
HTTP) and the round trip into deployments, images and incidents that the metrics count."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from analytics.derive import derive
from analytics.metrics import metrics
from analytics.scope import Scope
from cdmetrics import cli
from cdmetrics.cli_service import register
from collectors.cdevents import import_events, map_event, read_events, service_name
from collectors.events import parse_image
from collectors.payload import RejectedPayload
from tests.service_helpers import FIXTURES, WRITE, count, fixture, running_service
from warehouse.schema import Deployment, Environment, Image, Incident, Pipeline, RawPayload, TestRun

SPEC = sorted((FIXTURES / "cdevents").glob("v0.*/*.json"))
STORY = (FIXTURES / "cdevents" / "story.jsonl").read_text(encoding="utf-8")
MARCH = Scope(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
TABLES = {
    "service_deployed": {"deployment", "image"},
    "service_upgraded": {"deployment", "image"},
    "service_rolledback": {"deployment", "image"},
    "service_removed": set(),
    "environment_created": set(),
    "change_merged": {"merge_request"},
    "build_finished": {"pipeline", "image"},
    "artifact_packaged": set(),  # a golang purl is not an image
    "artifact_published": set(),
    "testsuiterun_finished": {"test_run"},
    "incident_detected": {"incident"},
    "incident_resolved": {"incident"},
}


def digest(c: str) -> str:
    return "sha256:" + c * 64


# --- the spec's examples ----------------------------------------------------------------------


@pytest.mark.parametrize("path", SPEC, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_spec_example_is_read(path: Path) -> None:
    event = map_event(json.loads(path.read_text(encoding="utf-8")))
    assert event.stream == path.stem.replace("_", ".")
    assert {f.table.__tablename__ for f in event.facts} == TABLES[path.stem]
    if path.stem == "environment_created":
        assert [d.raw_name for d in event.dimensions] == ["mySubject123", "testEnv"]


def test_service_deployed_maps_to_a_deployment_with_the_purl_digest() -> None:
    event = map_event(fixture("cdevents", "v0.5", "service_deployed.json"))
    row = event.facts[0].row
    expected = "sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"
    assert (row["image_digest"], row["image_resolution"]) == (expected, "explicit")
    assert row["image_ref"] == f"myapp@{expected}"
    assert row["external_id"] == "271069a8-fc18-44f1-b38f-9d70a1695819"
    assert row["finished_at"] == datetime(2023, 3, 20, 14, 27, 5, 315384, tzinfo=UTC)
    assert (row["service_id"].name, row["environment_id"].raw_name) == ("mySubject123", "test123")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("pkg:oci/myapp@sha256%3A" + "a" * 64 + "?repository_url=reg.example/shop/myapp",
         (digest("a"), "reg.example/shop/myapp", f"reg.example/shop/myapp@{digest('a')}")),
        ("reg.example/app@" + digest("b"),
         (digest("b"), "reg.example/app", f"reg.example/app@{digest('b')}")),
        ("b" * 64, (digest("b"), None, None)),
        ("reg.example:5000/app:1.2", (None, "reg.example:5000/app", "reg.example:5000/app:1.2")),
        ("pkg:golang/mygit.com/myorg/myapp@234fd47e07d1004f0aed9c", (None, None, None)),
        ("six-1.14.0-py2.py3-none-any.whl", (None, None, None)),
    ],
)  # fmt: skip
def test_image_references(value: str, expected: tuple[str | None, ...]) -> None:
    image = parse_image(value)
    assert (image.digest, image.repository, image.reference) == expected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e["context"].update(specversion="0.3.0"), "spec version '0.3.0' is not read"),
        (lambda e: e["context"].pop("id"), "context.id: Field required"),
        (lambda e: e["context"].update(timestamp="2023-03-20T14:27:05"), "context.timestamp"),
        (lambda e: e["context"].update(type="dev.cdevents.service"), "not a CDEvents type"),
        (lambda e: e["subject"]["content"].pop("environment"), "subject.content.environment"),
        (lambda e: e["subject"].update(id=""), "subject.id"),
    ],
)
def test_malformed_events_are_rejected_with_the_reason(change: Any, reason: str) -> None:
    event = fixture("cdevents", "v0.5", "service_deployed.json")
    change(event)
    with pytest.raises(RejectedPayload, match=reason):
        map_event(event)


def test_a_structured_cloudevent_is_unwrapped() -> None:
    inner = fixture("cdevents", "v0.4", "incident_detected.json")
    envelope = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/monitoring/prod1",
        "type": "dev.cdevents.incident.detected.0.2.0",
        "datacontenttype": "application/json",
        "data": json.dumps(inner),
    }
    event = map_event(envelope)
    assert event.payload == inner and event.facts[0].row["external_id"] == "incident-123"


def test_other_valid_events_are_kept_without_rows() -> None:
    event = fixture("cdevents", "v0.5", "build_finished.json")
    event["context"]["type"] = "dev.cdevents.pipelinerun.started.0.3.0"
    assert map_event(event).facts == []


def test_service_names_are_the_last_segment_of_the_subject() -> None:
    assert service_name("service/myapp") == "myapp" and service_name("myApp") == "myApp"


def test_read_json_json_array_and_json_lines() -> None:
    one = read_events(json.dumps({"a": 1}))
    many = read_events(json.dumps([{"a": 1}, {"b": 2}]))
    lines = read_events('{"a": 1}\n\nnot json\n{"b": 2}\n')
    assert [i.position for i in one] == [1] and [i.position for i in many] == [1, 2]
    assert [(i.position, i.error is not None) for i in lines] == [(1, False), (3, True), (4, False)]


# --- the round trip ---------------------------------------------------------------------------


def test_the_story_round_trips_into_metrics(engine: Engine) -> None:
    summary = import_events(engine, read_events(STORY))
    assert (summary.received, summary.stored, summary.rejected) == (23, 23, [])
    derive(engine)
    with engine.connect() as conn:
        figures = metrics(conn, MARCH)
        deployments = conn.execute(select(Deployment).order_by(Deployment.finished_at)).all()
        images = {i.digest: i for i in conn.execute(select(Image))}
        incident = conn.execute(select(Incident)).one()
        environments = set(conn.execute(select(Environment.name)).scalars())
    assert figures["deployment_frequency"]["deployments"] == 4  # a, b, rollback to a, c
    failures = figures["change_failure_rate"]
    assert (
        failures["failed"],
        failures["reasons"]["incident"],
        failures["reasons"]["rollback"],
    ) == (1, 1, 1)
    assert figures["recovery_time"]["median_hours"] == pytest.approx(1.5)  # b -> the rollback
    assert figures["rework_rate"]["rework"] == 1
    assert {"test", "production"} <= environments
    assert images[digest("a")].revision == "a" * 40 and images[digest("a")].pushed_at is not None
    assert images[digest("a")].repository == "registry.example.com/shop/myapp"
    assert all(d.sha == d.image_digest[-1] * 40 for d in deployments)  # the image's commit
    assert incident.opened_at == datetime(2026, 3, 3, 13, tzinfo=UTC)
    assert incident.resolved_at == incident.opened_at + timedelta(minutes=40)
    assert count(engine, Pipeline) == 3 and count(engine, TestRun) == 3


def test_replaying_the_story_stores_nothing_and_changes_no_figure(engine: Engine) -> None:
    import_events(engine, read_events(STORY))
    derive(engine)
    with engine.connect() as conn:
        before = metrics(conn, MARCH)
    again = import_events(engine, read_events(STORY))
    assert (again.stored, again.duplicates, sum(again.rows.values())) == (0, 23, 0)
    derive(engine)
    with engine.connect() as conn:
        assert metrics(conn, MARCH) == before
    assert count(engine, RawPayload) == 23


def test_an_incident_resolved_before_it_is_detected(engine: Engine) -> None:
    resolved = fixture("cdevents", "v0.5", "incident_resolved.json")
    detected = fixture("cdevents", "v0.5", "incident_detected.json")
    import_events(engine, [resolved])
    with engine.connect() as conn:
        early = conn.execute(select(Incident)).one()
    assert early.opened_at == early.resolved_at  # opened at its resolution until the detection
    import_events(engine, [detected])
    with engine.connect() as conn:
        row = conn.execute(select(Incident)).one()
    assert row.opened_at == datetime(2022, 11, 11, 13, 52, 20, 79000, tzinfo=UTC)
    assert row.resolved_at == datetime(2022, 11, 11, 14, 52, 20, 79000, tzinfo=UTC)


# --- the CLI ----------------------------------------------------------------------------------


def cli_app() -> typer.Typer:
    """The CLI's global options with the service commands (as cli.py will register them)."""
    app = typer.Typer()
    app.callback()(cli._main)
    register(app)
    register(app)  # a second registration does nothing
    return app


def test_import_cdevents_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    story = tmp_path / "story.jsonl"
    story.write_text(STORY, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'w.db'}"
    runner = CliRunner()
    first = runner.invoke(cli_app(), ["--warehouse", url, "import", "cdevents", str(story)])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["stored"], summary["rows"]["deployment"]) == (23, 7)
    assert summary["derive"]["deployments"] == 7
    second = runner.invoke(cli_app(), ["--warehouse", url, "import", "cdevents", "-"], input=STORY)
    assert json.loads(second.stdout.strip().splitlines()[-1])["duplicates"] == 23


def test_import_reports_rejected_lines_and_exits_1(tmp_path: Path) -> None:
    lines = STORY.splitlines()
    lines[2] = lines[2].replace('"specversion": "0.5.0"', '"specversion": "9.9"')
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\nnot json\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli_app(), ["-w", f"sqlite:///{tmp_path / 'w.db'}", "import", "cdevents", str(path)]
    )
    assert result.exit_code == 1
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["position"] for r in summary["rejected"]] == [3, 24]
    assert summary["stored"] == 22
    assert "#3" in result.stderr and "spec version '9.9'" in result.stderr


# --- over HTTP --------------------------------------------------------------------------------


def test_post_the_story_as_one_batch_then_event_by_event(engine: Engine) -> None:
    events = [json.loads(line) for line in STORY.splitlines()]
    with running_service(engine) as svc:
        batch = svc.client.post("/events/cdevents", json=events, headers=WRITE)
        singles = [
            svc.client.post("/events/cdevents", json=e, headers=WRITE).json() for e in events[:3]
        ]
        answer = svc.client.get(
            "/api/v1/metrics", params={"since": "2026-03-01", "until": "2026-04-01"},
            headers={"Authorization": "Bearer read-secret"},
        )  # fmt: skip
    assert batch.status_code == 200 and batch.json()["stored"] == 23
    assert [s["duplicates"] for s in singles] == [1, 1, 1]
    assert answer.json()["deployment_frequency"]["deployments"] == 4  # derived before answering


def test_a_batch_with_one_malformed_event_stores_nothing(engine: Engine) -> None:
    events = [json.loads(line) for line in STORY.splitlines()[:5]]
    events[3]["subject"]["content"] = {"outcome": "maybe"}
    with running_service(engine) as svc:
        answer = svc.client.post("/events/cdevents", json=events, headers=WRITE)
    assert answer.status_code == 422
    body = answer.json()
    assert body["detail"] == "1 of 5 event(s) rejected; none stored"
    (rejected,) = body["rejected"]
    assert rejected["position"] == 4 and rejected["id"] == events[3]["context"]["id"]
    assert "subject.content.outcome" in rejected["reason"]
    assert count(engine, RawPayload) == 0
