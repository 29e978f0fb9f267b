"""Pydantic models of the CDEvents cdmetrics reads (spec v0.4 and v0.5): the envelope (context,
subject, custom data) and the subject content of each event kind with rows
(`collectors.cdevents` maps them). Unknown fields are allowed: producers add their own, and the
raw payload keeps them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

SUPPORTED_SPECS = ("0.4", "0.5")
_TYPE = re.compile(
    r"^dev\.cdevents\.(?P<subject>[a-z]+)\.(?P<predicate>[a-z]+)\.\d+\.\d+\.\d+(-draft)?$"
)
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class CDEventsModel(BaseModel):
    model_config = ConfigDict(extra="allow")  # producers add fields; the raw payload keeps them


class Reference(CDEventsModel):
    id: NonEmpty
    source: str | None = None


class Context(CDEventsModel):
    specversion: NonEmpty = Field(validation_alias=AliasChoices("specversion", "version"))
    id: NonEmpty
    source: NonEmpty
    type: NonEmpty
    timestamp: AwareDatetime
    chainId: str | None = None
    schemaUri: str | None = None
    links: list[Any] | None = None

    @field_validator("specversion")
    @classmethod
    def _supported(cls, value: str) -> str:
        if ".".join(value.split("-")[0].split(".")[:2]) not in SUPPORTED_SPECS:
            raise ValueError(f"spec version {value!r} is not read; send CDEvents 0.4.x or 0.5.x")
        return value

    @field_validator("type")
    @classmethod
    def _event_type(cls, value: str) -> str:
        if not _TYPE.match(value):
            raise ValueError(
                f"{value!r} is not a CDEvents type (dev.cdevents.<subject>.<predicate>.<x.y.z>)"
            )
        return value


class Subject(CDEventsModel):
    id: NonEmpty
    source: str | None = None
    type: str | None = None
    content: dict[str, Any] = Field(default_factory=dict)


class CDEvent(CDEventsModel):
    """A CDEvent: context, subject, optional custom data."""

    context: Context
    subject: Subject
    customData: Any = None
    customDataContentType: str | None = None

    @property
    def kind(self) -> str:
        """`<subject>.<predicate>`, e.g. `service.deployed`."""
        m = _TYPE.match(self.context.type)
        assert m is not None  # checked by the validator
        return f"{m.group('subject')}.{m.group('predicate')}"


class ServiceContent(CDEventsModel):
    environment: Reference
    artifactId: NonEmpty


class ServiceRemovedContent(CDEventsModel):
    environment: Reference


class EnvironmentContent(CDEventsModel):
    name: str | None = None
    url: str | None = None
    uri: str | None = None


class ChangeContent(CDEventsModel):
    repository: Reference | None = None


class BuildContent(CDEventsModel):
    artifactId: str | None = None
    outcome: Literal["success", "failure", "error", "cancel"] | None = None  # not in the spec


class Sbom(CDEventsModel):
    uri: NonEmpty


class ArtifactPackagedContent(CDEventsModel):
    change: Reference
    sbom: Sbom | None = None


class ArtifactPublishedContent(CDEventsModel):
    sbom: Sbom | None = None
    user: str | None = None


class TestSuite(CDEventsModel):
    id: NonEmpty
    name: str | None = None
    version: str | None = None


class TestSuiteRunContent(CDEventsModel):
    outcome: Literal["pass", "fail", "cancel", "error"]
    severity: str | None = None
    reason: str | None = None
    environment: Reference
    testSuite: TestSuite | None = None


class IncidentContent(CDEventsModel):
    description: str | None = None
    environment: Reference
    service: Reference | None = None
    artifactId: str | None = None


class IncidentReportedContent(IncidentContent):
    ticketURI: NonEmpty


CONTENT: dict[str, type[CDEventsModel]] = {
    "service.deployed": ServiceContent,
    "service.upgraded": ServiceContent,
    "service.rolledback": ServiceContent,
    "service.removed": ServiceRemovedContent,
    "environment.created": EnvironmentContent,
    "change.merged": ChangeContent,
    "build.finished": BuildContent,
    "artifact.packaged": ArtifactPackagedContent,
    "artifact.published": ArtifactPublishedContent,
    "testsuiterun.finished": TestSuiteRunContent,
    "incident.detected": IncidentContent,
    "incident.reported": IncidentReportedContent,
    "incident.resolved": IncidentContent,
}


__all__ = [
    "CONTENT",
    "SUPPORTED_SPECS",
    "ArtifactPackagedContent",
    "ArtifactPublishedContent",
    "BuildContent",
    "CDEvent",
    "CDEventsModel",
    "ChangeContent",
    "EnvironmentContent",
    "IncidentContent",
    "IncidentReportedContent",
    "ServiceContent",
    "TestSuiteRunContent",
]
