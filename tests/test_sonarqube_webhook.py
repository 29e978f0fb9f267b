"""`POST /webhooks/sonarqube` over real HTTP: every analysis the SonarQube simulator's webhook
sender posts gives the same `code_analysis` rows as the poller; replays change nothing; a wrong
or missing HMAC signature is 401 and writes nothing; an unset secret refuses with 403."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from collectors.frame import SyncOptions
from collectors.sonarqube import SonarQubeCollector
from config.settings import Settings
from sandbox.generate import generate
from sandbox.model import Organisation
from sandbox.serve import Sandbox
from sandbox.sonarqube_api import signature, webhook_body
from tests.sandbox_helpers import snapshot
from tests.service_helpers import ENVIRON, count, running_service
from warehouse.schema import CodeAnalysis, RawPayload

NOW = datetime(2025, 6, 2, tzinfo=UTC)
TOKEN_ENV = "CDM_TEST_SONAR_TOKEN"
SECRET = "sonar-hook-secret"
HEADER = "X-Sonar-Webhook-HMAC-SHA256"


@pytest.fixture(scope="module")
def org() -> Organisation:
    return generate(1, "small", NOW)


@pytest.fixture
def sandbox(org: Organisation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv(TOKEN_ENV, "sonar-token")
    with Sandbox.start(
        org=org, token="sonar-token", jenkins=False, registry=False, sonarqube=True
    ) as running:
        yield running


def settings(sandbox: Sandbox) -> Settings:
    return Settings(
        sources={"sonarqube": [sandbox.sonarqube_source(TOKEN_ENV)]},
        sync={"requests_per_second": 0, "history_days": sandbox.history_days()},
    )


def post(client: Any, payload: dict[str, Any], secret: str = SECRET) -> Any:
    body = webhook_body(payload)
    headers = {HEADER: signature(body, secret), "Content-Type": "application/json"}
    return client.post("/webhooks/sonarqube", content=body, headers=headers)


def test_webhooks_give_the_rows_the_poller_gives(
    sandbox: Sandbox, engine: Engine, twin_engine: Engine
) -> None:
    s = settings(sandbox)
    assert SonarQubeCollector(s.sources.sonarqube[0], SyncOptions(s, engine)).sync().ok
    assert sandbox.sonar is not None and sandbox.sonarqube is not None
    # the project holding the analysis without a revision, and the one mapped by config
    keys = {sandbox.sonar.projects[0].key, *sandbox.sonar.repositories}
    sent = [a for a in sandbox.sonar.analyses() if a.project in keys]
    environ = {**ENVIRON, "SONAR_WEBHOOK_SECRET": SECRET}
    with running_service(twin_engine, s, environ=environ) as svc:
        rejected = 0
        for a in sent:
            answer = post(svc.client, sandbox.sonarqube.webhook(a, sandbox.sonarqube_url))
            if a.revision is None:  # kept out, with the reason
                assert answer.status_code == 422 and "no revision" in answer.text
                rejected += 1
                continue
            assert answer.status_code == 200, answer.text
            assert answer.json()["rows"] == {"code_analysis": 1}
        assert rejected == 1
        # a replay is stored once
        first = next(a for a in sent if a.revision)
        again = post(svc.client, sandbox.sonarqube.webhook(first, sandbox.sonarqube_url))
        assert again.status_code == 200 and again.json()["duplicates"] == 1
        assert again.json()["rows"].get("code_analysis", 0) == 0
    polled = [r for r in snapshot(engine, ("code_analysis",))["code_analysis"] if r[0] in keys]
    pushed = snapshot(twin_engine, ("code_analysis",))["code_analysis"]
    assert len(polled) == len(sent) - 1 and {r[0] for r in polled} == keys
    assert pushed == polled


def test_a_wrong_signature_is_401_and_writes_nothing(sandbox: Sandbox, engine: Engine) -> None:
    assert sandbox.sonar is not None and sandbox.sonarqube is not None
    a = next(a for a in sandbox.sonar.analyses() if a.revision)
    payload = sandbox.sonarqube.webhook(a, sandbox.sonarqube_url)
    environ = {**ENVIRON, "SONAR_WEBHOOK_SECRET": SECRET}
    with running_service(engine, settings(sandbox), environ=environ) as svc:
        assert post(svc.client, payload, secret="guessed").status_code == 401
        unsigned = svc.client.post("/webhooks/sonarqube", content=webhook_body(payload))
        assert unsigned.status_code == 401
        tampered = webhook_body({**payload, "revision": "f" * 40})
        headers = {HEADER: signature(webhook_body(payload), SECRET)}
        assert (
            svc.client.post("/webhooks/sonarqube", content=tampered, headers=headers).status_code
            == 401
        )
        assert count(engine, CodeAnalysis) == 0 and count(engine, RawPayload) == 0
        assert post(svc.client, payload).status_code == 200  # the right one is taken
        assert count(engine, CodeAnalysis) == 1
    with running_service(engine, settings(sandbox)) as svc:  # no SONAR_WEBHOOK_SECRET
        assert post(svc.client, payload).status_code == 403
