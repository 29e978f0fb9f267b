"""CDEvents (spec v0.4 and v0.5) into the warehouse: pydantic models of the events cdmetrics
reads, their mapping to rows, and `import_events`, shared by `POST /events/cdevents` and
`cdmetrics import cdevents`.

| event | rows |
|---|---|
| service.deployed / upgraded / rolledback | deployment (success, finished at the event time), image |
| service.removed | none (kept raw: a removal is not a deployment) |
| environment.created | environment (canonical name from `subject.id` and `content.name`) |
| artifact.packaged / published | image (revision from `change.id` when it is a full sha; pushed) |
| build.finished | pipeline (`outcome` when given, else success), image built by it |
| testsuiterun.finished | test_run (the suite counts as one test: pass, fail, error, cancel) |
| incident.detected / reported / resolved | incident (opened / resolved at the event time) |
| change.merged | merge_request (iid: the number ending `subject.id`), repo |

Decisions where the spec leaves room:
- An event is identified by `context.id` (the raw payload's external id, and a deployment's);
  the spec makes ids unique per producer, so producers should send UUIDs. Incidents, builds and
  test runs are identified by `subject.id`, so their later events update the same row.
- A service is named by the last segment of its id (`service/myapp` -> `myapp`), the name the
  GitLab collector gives the project's service; environments are canonicalised like any other.
- An artifact is an image when its id is an OCI purl, `repo@sha256:...` or a digest; the digest
  is the deployment's (`image_resolution` explicit).
- Both the v0.4 context key `version` and the v0.5 `specversion` are read; event types of either
  spec are accepted; a CloudEvent in structured mode (`data` holding the CDEvent) is unwrapped.
- Other valid CDEvents (pipelinerun, taskrun, ticket, ...) are stored raw without rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from collectors.cdevents_models import (
    CONTENT,
    ArtifactPackagedContent,
    ArtifactPublishedContent,
    BuildContent,
    CDEvent,
    CDEventsModel,
    ChangeContent,
    EnvironmentContent,
    IncidentContent,
    IncidentReportedContent,
    ServiceContent,
    TestSuiteRunContent,
)
from collectors.events import Event, EventWriter, Fact, parse_image, writer_for
from collectors.payload import RejectedPayload, short
from collectors.refs import EnvironmentRef, RepoRef, ServiceRef, SourceRef
from config.settings import Settings
from warehouse.schema import Deployment, Image, Incident, MergeRequest, Pipeline, TestRun

CDEVENTS = SourceRef("cdevents", "cdevents")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_TRAILING_NUMBER = re.compile(r"(\d+)$")


def _reason(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for error in exc.errors()[:5]:
        path = [*(prefix.split(".") if prefix else []), *(str(p) for p in error["loc"])]
        where = ".".join(path)
        parts.append(f"{where or 'event'}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def unwrap(payload: Any) -> Any:
    """The CDEvent inside a CloudEvent in structured mode (`data`), else the payload itself."""
    if (
        isinstance(payload, dict)
        and "context" not in payload
        and "data" in payload
        and str(payload.get("type", "")).startswith("dev.cdevents.")
    ):
        data = payload["data"]
        if isinstance(data, str):
            try:
                return json.loads(data)
            except ValueError:
                raise RejectedPayload("CloudEvent data is not JSON") from None
        return data
    return payload


def parse_event(payload: Any) -> tuple[CDEvent, CDEventsModel | None]:
    """The validated event and its content model (None for kinds without rows)."""
    if not isinstance(payload, dict):
        raise RejectedPayload(f"a CDEvent is a JSON object, not {short(payload)}")
    try:
        event = CDEvent.model_validate(payload)
    except ValidationError as exc:
        raise RejectedPayload(_reason(exc)) from None
    model = CONTENT.get(event.kind)
    if model is None:
        return event, None
    try:
        return event, model.model_validate(event.subject.content)
    except ValidationError as exc:
        raise RejectedPayload(f"{event.kind}: {_reason(exc, 'subject.content')}") from None


def service_name(subject_id: str) -> str:
    """`service/myapp` -> `myapp`."""
    return subject_id.rstrip("/").rsplit("/", 1)[-1] or subject_id


# --- mapping ----------------------------------------------------------------------------------

Mapped = tuple[list[Fact], list[Any]]


def _service(event: CDEvent, c: ServiceContent) -> Mapped:
    at, image = event.context.timestamp, parse_image(c.artifactId)
    service, environment = (
        ServiceRef(service_name(event.subject.id)),
        EnvironmentRef(c.environment.id),
    )
    row: dict[str, Any] = {
        "source_id": CDEVENTS,
        "external_id": event.context.id,
        "service_id": service,
        "environment_id": environment,
        "raw_environment": c.environment.id,
        "status": "success",
        "raw_status": event.kind.split(".")[1],
        "updated_at": at,
        "finished_at": at,
        "image_digest": image.digest,
        "image_ref": image.reference,
        "image_resolution": "explicit" if image.digest else "none",
        "kind": "app",
    }
    return [Fact(Deployment, row), *_image(image.digest, image.repository, {})], []


def _image(digest: str | None, repository: str | None, values: dict[str, Any]) -> list[Fact]:
    if not digest or not repository:
        return []
    return [Fact(Image, {"digest": digest, "repository": repository, **values})]


def _environment(event: CDEvent, c: EnvironmentContent) -> Mapped:
    names = dict.fromkeys(n for n in (event.subject.id, c.name) if n)
    return [], [EnvironmentRef(n) for n in names]


def _change(event: CDEvent, c: ChangeContent) -> Mapped:
    number = _TRAILING_NUMBER.search(event.subject.id)
    if c.repository is None or number is None:
        return [], []
    repo = RepoRef(CDEVENTS, c.repository.id, c.repository.id, web_url=c.repository.source)
    at = event.context.timestamp
    row = {
        "repo_id": repo,
        "iid": int(number.group(1)),
        "external_id": event.subject.id,
        "state": "merged",
        "merged_at": at,
        "updated_at": at,
    }
    return [Fact(MergeRequest, row)], []


_BUILD_STATUS = {"success": "success", "failure": "failed", "error": "failed", "cancel": "canceled"}


def _build(event: CDEvent, c: BuildContent) -> Mapped:
    at, image = event.context.timestamp, parse_image(c.artifactId)
    row = {
        "source_id": CDEVENTS,
        "external_id": event.subject.id,
        "status": _BUILD_STATUS[c.outcome or "success"],
        "raw_status": c.outcome or "finished",
        "finished_at": at,
        "updated_at": at,
    }
    built_by = {"built_by_pipeline": f"{CDEVENTS.name}:{event.subject.id}"}
    return [Fact(Pipeline, row), *_image(image.digest, image.repository, built_by)], []


def _packaged(event: CDEvent, c: ArtifactPackagedContent) -> Mapped:
    image = parse_image(event.subject.id)
    values: dict[str, Any] = {}
    if _FULL_SHA.match(c.change.id):
        values = {"revision": c.change.id, "revision_origin": "build"}
    if c.change.source:
        values["source_repository"] = c.change.source
    return _image(image.digest, image.repository, values), []


def _published(event: CDEvent, c: ArtifactPublishedContent) -> Mapped:
    image = parse_image(event.subject.id)
    return _image(image.digest, image.repository, {"pushed_at": event.context.timestamp}), []


def _testsuite(event: CDEvent, c: TestSuiteRunContent) -> Mapped:
    suite = (c.testSuite.name or c.testSuite.id) if c.testSuite else event.subject.id
    row = {
        "source_id": CDEVENTS,
        "pipeline_external_id": event.subject.id,
        "suite": suite,
        "total": 1,
        "failed": int(c.outcome == "fail"),
        "errors": int(c.outcome == "error"),
        "skipped": int(c.outcome == "cancel"),
    }
    return [Fact(TestRun, row)], []


def _incident(event: CDEvent, c: IncidentContent) -> Mapped:
    at = event.context.timestamp
    row: dict[str, Any] = {
        "source_id": CDEVENTS,
        "external_id": event.subject.id,
        "environment_id": EnvironmentRef(c.environment.id),
    }
    if c.service is not None:
        row["service_id"] = ServiceRef(service_name(c.service.id))
    if c.description:
        row["title"] = c.description
    if isinstance(c, IncidentReportedContent):
        row["url"] = c.ticketURI
    if event.kind == "incident.resolved":  # opened at the resolution until the detection arrives
        opened = Fact(Incident, {**row, "opened_at": at}, mode="insert")
        resolved = {"source_id": CDEVENTS, "external_id": event.subject.id, "resolved_at": at}
        return [opened, Fact(Incident, resolved, mode="update")], []
    return [Fact(Incident, {**row, "opened_at": at})], []


_MAPPERS: dict[str, Callable[[CDEvent, Any], Mapped]] = {
    "service.deployed": _service,
    "service.upgraded": _service,
    "service.rolledback": _service,
    "environment.created": _environment,
    "change.merged": _change,
    "build.finished": _build,
    "artifact.packaged": _packaged,
    "artifact.published": _published,
    "testsuiterun.finished": _testsuite,
    "incident.detected": _incident,
    "incident.reported": _incident,
    "incident.resolved": _incident,
}


def map_event(payload: Any) -> Event:
    """The warehouse event of one CDEvent payload; raises RejectedPayload saying what is wrong."""
    payload = unwrap(payload)
    event, content = parse_event(payload)
    mapper = _MAPPERS.get(event.kind)
    facts, dimensions = mapper(event, content) if mapper and content else ([], [])
    return Event(event.kind, event.context.id, payload, facts, dimensions)


# --- importing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incoming:
    """One item read from a file or a request: its position, its JSON, or why it is unreadable."""

    position: int
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class Rejection:
    position: int
    id: str | None
    reason: str


@dataclass
class ImportSummary:
    """What an import did; `as_json` is the shape of the HTTP answer and the CLI's last line."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    ignored: int = 0  # valid events of kinds without rows (kept raw)
    rejected: list[Rejection] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def changed_metrics(self) -> bool:
        """Whether rows the derived tables depend on changed (derive is due)."""
        return any(self.rows.get(t, 0) for t in ("deployment", "incident", "image"))

    def as_json(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "rejected": [vars(r) for r in self.rejected],
            "rows": dict(sorted(self.rows.items())),
        }


def read_events(text: str) -> list[Incoming]:
    """A JSON document (one event, or an array of them) or JSON Lines (positions: line numbers)."""
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    else:
        if isinstance(document, list):
            return [Incoming(i + 1, value) for i, value in enumerate(document)]
        return [Incoming(1, document)]
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(Incoming(number, json.loads(line)))
        except ValueError as exc:
            items.append(Incoming(number, error=f"not JSON: {exc}"))
    return items


def map_all(items: Iterable[Any]) -> tuple[list[Event], list[Rejection], int]:
    """(accepted events, rejections, how many were of kinds without rows)."""
    events, rejected, ignored = [], [], 0
    for i, item in enumerate(items):
        incoming = item if isinstance(item, Incoming) else Incoming(i, item)
        if incoming.error is not None:
            rejected.append(Rejection(incoming.position, None, incoming.error))
            continue
        try:
            event = map_event(incoming.value)
        except RejectedPayload as exc:
            rejected.append(Rejection(incoming.position, _event_id(incoming.value), str(exc)))
            continue
        ignored += not event.facts and not event.dimensions
        events.append(event)
    return events, rejected, ignored


def _event_id(payload: Any) -> str | None:
    context = unwrap(payload).get("context") if isinstance(payload, dict) else None
    value = context.get("id") if isinstance(context, dict) else None
    return value if isinstance(value, str) else None


def import_events(
    engine: Engine,
    events: Iterable[Any],
    *,
    settings: Settings | None = None,
    writer: EventWriter | None = None,
    all_or_nothing: bool = False,
    batch_size: int = 500,
) -> ImportSummary:
    """Validate, map and store CDEvents (JSON values or `Incoming` items); rejected ones are
    reported, not stored. With `all_or_nothing` one rejection stores nothing (an HTTP batch)."""
    accepted, rejected, ignored = map_all(events)
    summary = ImportSummary(received=len(accepted) + len(rejected), rejected=rejected)
    if all_or_nothing and rejected:
        return summary
    summary.ignored = ignored
    writer = writer or writer_for(engine, settings)
    for start in range(0, len(accepted), batch_size):
        result = writer.write(CDEVENTS, accepted[start : start + batch_size])
        summary.stored += result.stored
        summary.duplicates += result.duplicates
        for table, count in result.rows.items():
            summary.rows[table] = summary.rows.get(table, 0) + count
    return summary


__all__ = [
    "CDEVENTS",
    "CDEvent",
    "ImportSummary",
    "Incoming",
    "Rejection",
    "import_events",
    "map_event",
    "parse_event",
    "read_events",
    "service_name",
    "writer_for",
]
