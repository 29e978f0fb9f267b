"""What the service holds for its lifetime: settings, warehouse, writer, secrets, counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request
from sqlalchemy import Engine

from analytics.rules import FailureRules
from collectors.events import EventWriter, writer_for
from collectors.refs import SourceRef
from collectors.webhooks_jenkins import JENKINS_WEBHOOKS
from config.settings import JenkinsSource, Settings
from service.auth import Secrets
from service.freshness import Freshness
from service.telemetry import Counters, DoraExport

MiB = 1024 * 1024
ENDPOINTS = ("cdevents", "gitlab", "jenkins", "sonarqube")


@dataclass(frozen=True)
class ServiceOptions:
    """Tunables of one service process (the CLI exposes them as `serve` options)."""

    max_body_bytes: int = 10 * MiB
    derive_interval_s: float = 5.0
    metrics_window: timedelta = timedelta(days=30)
    metrics_cache_s: float = 15.0


class ServiceState:
    """Everything a request needs; one per app, at `app.state.service`."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        options: ServiceOptions,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.options = options
        self.rules = FailureRules.from_settings(settings)
        self.secrets = Secrets.from_settings(settings.service, environ)
        self.writer: EventWriter = writer_for(engine, settings)
        self.counters = Counters()
        for endpoint in ENDPOINTS:  # exported from the first scrape on, as zeros
            for name in Counters.HELP:
                if name.startswith("cdmetrics_events_"):
                    self.counters.inc(name, 0, endpoint=endpoint)
        for reason in ("unauthorized", "not_configured", "too_large"):
            self.counters.inc("cdmetrics_requests_refused_total", 0, reason=reason)
        self.freshness = Freshness(
            engine,
            self.rules,
            tag_revision_pattern=settings.metrics.tag_revision_pattern,
            image_repositories=settings.image_repositories(),
            timezone=settings.sync.timezone,
            writer_lock=self.writer.writing,
            interval=options.derive_interval_s,
        )
        self.dora = DoraExport(
            engine,
            self.rules,
            window=options.metrics_window,
            timezone=settings.sync.timezone,
            generation=lambda: self.freshness.generation,
            cache_seconds=options.metrics_cache_s,
        )
        self.gitlab_sources = [(s.name, s.url) for s in settings.sources.gitlab]

    def jenkins_source(self, build_url: str | None) -> tuple[SourceRef, JenkinsSource]:
        """The configured Jenkins a build URL belongs to (its deploy job settings), else the
        `jenkins-webhooks` source with the default settings."""
        for source in self.settings.sources.jenkins:
            if build_url and build_url.startswith(source.url.rstrip("/") + "/"):
                return SourceRef(source.name, "jenkins", source.url), source
        return JENKINS_WEBHOOKS, JenkinsSource(name=JENKINS_WEBHOOKS.name, url="http://jenkins")


def state_of(request: Request) -> ServiceState:
    """The service state of the app serving `request`."""
    return request.app.state.service  # type: ignore[no-any-return]


__all__ = ["ENDPOINTS", "MiB", "ServiceOptions", "ServiceState", "state_of"]
