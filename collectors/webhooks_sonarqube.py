"""SonarQube webhooks (`POST /webhooks/sonarqube` on `cdmetrics serve`): the payload SonarQube
posts after each analysis becomes the same `code_analysis` row the poller writes
(collectors/sonarqube.py), through the same normaliser (collectors/sonarqube_normalize.py).

The signature (`X-Sonar-Webhook-HMAC-SHA256`, the hex HMAC-SHA256 of the body under the webhook's
secret) is checked by the service before anything is read (service/auth.py): a wrong one is 401
and writes nothing.

Decisions where DESIGN.md is silent:
- Which source: the `[[sources.sonarqube]]` whose `url` is the payload's `serverUrl`, else the
  only one configured, else `sonarqube-webhooks` (no project mapping, no lookup).
- The payload lacks the analysis key and project version: with a configured source, the receiver
  reads that one analysis (`api/project_analyses/search` of the project and branch, from and to
  the analysis date: one request, Browse is enough). When that read fails (or finds nothing, or
  the analysis is a pull request's) the row is written without them; a later poll fills them in.
- The repository id is looked up by path in the warehouse, as the poller does.
- Replays are stored once: the row's natural key is (source, project, analysis date).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from sqlalchemy import Engine, select

from collectors.events import Event, Fact
from collectors.http import PolicyTransport, RateLimiter, RequestCounter, RetryPolicy
from collectors.payload import Fields, RejectedPayload, rejects
from collectors.refs import SourceRef
from collectors.sonarqube import SonarQubeError, client_for, get_json, sonar_time
from collectors.sonarqube_normalize import normalize_webhook
from config.settings import SonarQubeSource
from warehouse.schema import CodeAnalysis, Repo

log = logging.getLogger(__name__)
SONARQUBE_WEBHOOKS = SourceRef("sonarqube-webhooks", "sonarqube")
STREAM = "webhooks"


def source_of(payload: Any, sources: list[SonarQubeSource]) -> SonarQubeSource | None:
    """The configured source that sent `payload` (see the module docstring)."""
    server = payload.get("serverUrl") if isinstance(payload, dict) else None
    for source in sources:
        if isinstance(server, str) and server.rstrip("/") == source.url.rstrip("/"):
            return source
    return sources[0] if len(sources) == 1 else None


def read_analysis(source: SonarQubeSource, payload: Any, timeout: float = 10.0) -> Any:
    """The analysis a webhook reports, as `api/project_analyses/search` lists it; None when it
    cannot be read (logged)."""
    try:
        p = Fields(payload)
        branch = p.obj("branch")
        if branch.string("type") == "PULL_REQUEST":
            return None
        at = p.required_time("analysedAt")
        project = p.obj("project").required("key")
    except RejectedPayload:
        return None  # the normaliser says what is wrong
    transport = PolicyTransport(RateLimiter(0), RequestCounter(), RetryPolicy(retries=2))
    params: dict[str, Any] = {"project": project, "from": sonar_time(at), "to": sonar_time(at)}
    if branch.string("name"):
        params["branch"] = branch.string("name")
    try:
        with client_for(source, transport, timeout) as client:
            found = get_json(client, "/api/project_analyses/search", params).get("analyses")
    except (httpx.HTTPError, SonarQubeError, ValueError) as exc:
        log.warning("%s: cannot read the analysis of %s at %s: %s", source.name, project, at, exc)
        return None
    return next(iter(found), None) if isinstance(found, list) else None


def repo_id_of(engine: Engine, path: str) -> int | None:
    """The warehouse repo at `path` (or the path with `:` read as `/`)."""
    with engine.connect() as conn:
        for candidate in dict.fromkeys((path, path.replace(":", "/"))):
            found = conn.execute(select(Repo.id).where(Repo.path == candidate)).scalar()
            if found is not None:
                return int(found)
    return None


@rejects("sonarqube webhook")
def sonarqube_event(
    payload: Any,
    source: SourceRef,
    *,
    repositories: dict[str, str],
    server: str,
    analysis: Any = None,
    repo_id: int | None = None,
) -> Event:
    """The event of one webhook payload: one `code_analysis` row (source by reference)."""
    row = normalize_webhook(
        payload, source_id=0, repositories=repositories, server=server, analysis=analysis
    )
    row["source_id"] = source
    if repo_id is not None:
        row["repo_id"] = repo_id
    external = f"{row['project_key']}@{row['analysed_at'].isoformat()}"
    return Event(STREAM, external, payload, [Fact(CodeAnalysis, row)])


def webhook_event(
    payload: Any, sources: list[SonarQubeSource], engine: Engine
) -> tuple[SourceRef, Event]:
    """(the source, the event) of a webhook payload, reading what it lacks (see the module
    docstring); raises RejectedPayload for a payload that cannot become a row."""
    config = source_of(payload, sources)
    if config is None:
        server = payload.get("serverUrl") if isinstance(payload, dict) else None
        event = sonarqube_event(
            payload, SONARQUBE_WEBHOOKS, repositories={}, server=str(server or "")
        )
        return SONARQUBE_WEBHOOKS, event
    ref = SourceRef(config.name, "sonarqube", config.url)
    project = payload.get("project") if isinstance(payload, dict) else None
    key = project.get("key") if isinstance(project, dict) else None
    path = config.repositories.get(key, key) if isinstance(key, str) else None
    event = sonarqube_event(
        payload,
        ref,
        repositories=config.repositories,
        server=config.url,
        analysis=read_analysis(config, payload),
        repo_id=repo_id_of(engine, path) if path else None,
    )
    return ref, event


__all__ = ["SONARQUBE_WEBHOOKS", "sonarqube_event", "source_of", "webhook_event"]
