"""The registry collector's HTTP pieces without a simulator: TokenAuth's per-scope tokens and its
refusal of plain-http realms, Retry-After capping and redacted httpx log lines."""

from __future__ import annotations

import logging

import httpx
import pytest

from collectors.http import (
    MAX_RETRY_AFTER,
    PolicyTransport,
    RateLimiter,
    RequestCounter,
    RetryPolicy,
)
from collectors.registry import RegistryError, TokenAuth
from config.redaction import install_log_redaction


def registry(realm: str, issued: list[str]) -> httpx.MockTransport:
    """A registry whose tokens are good for the scope they were issued for only."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            scope = request.url.params.get("scope", "")
            issued.append(scope)
            return httpx.Response(200, json={"token": f"t:{scope}"})
        name = request.url.path.removeprefix("/v2/").split("/tags/")[0]
        scope = f"repository:{name}:pull"
        if request.headers.get("Authorization") == f"Bearer t:{scope}":
            return httpx.Response(200, json={"name": name, "tags": []})
        challenge = f'Bearer realm="{realm}",service="reg",scope="{scope}"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    return httpx.MockTransport(handle)


def test_bearer_tokens_are_cached_per_scope() -> None:
    issued: list[str] = []
    transport = registry("https://reg.test/token", issued)
    auth = TokenAuth("robot", "secret")
    with httpx.Client(base_url="https://reg.test", transport=transport, auth=auth) as client:
        for name in ("a/one", "b/two", "a/one", "b/two"):
            assert client.get(f"/v2/{name}/tags/list").status_code == 200
    assert issued == ["repository:a/one:pull", "repository:b/two:pull"]


def test_credentials_are_not_sent_to_a_plain_http_realm() -> None:
    issued: list[str] = []
    transport = registry("http://reg.test/token", issued)
    auth = TokenAuth("robot", "secret")
    client = httpx.Client(base_url="https://reg.test", transport=transport, auth=auth)
    with client, pytest.raises(RegistryError, match=r"plain-http token realm http://reg\.test/"):
        client.get("/v2/a/tags/list")
    assert issued == []


def test_a_token_answer_that_is_not_json_is_a_registry_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, text="<html>login</html>")
        challenge = 'Bearer realm="https://reg.test/token?access_token=s3cr3t",scope="x"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    auth = TokenAuth("robot", "secret")
    transport = httpx.MockTransport(handle)
    client = httpx.Client(base_url="https://reg.test", transport=transport, auth=auth)
    with client, pytest.raises(RegistryError, match="no token") as caught:
        client.get("/v2/a/tags/list")
    assert "s3cr3t" not in str(caught.value)


def test_retry_after_is_capped() -> None:
    slept: list[float] = []
    statuses = iter([429, 200])

    class Inner(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            status = next(statuses)
            headers = {"Retry-After": "3600"} if status == 429 else {}
            return httpx.Response(status, headers=headers, stream=httpx.ByteStream(b""))

    retry = RetryPolicy(3, sleep=slept.append)
    transport = PolicyTransport(RateLimiter(0), RequestCounter(), retry, inner=Inner())
    with httpx.Client(transport=transport) as client:
        assert client.get("https://reg.test/v2/").status_code == 200
    assert slept == [MAX_RETRY_AFTER]


def test_httpx_request_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()  # as every entry point does at start-up
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with caplog.at_level(logging.INFO, logger="httpx"), httpx.Client(transport=transport) as client:
        client.get("https://blobs.test/layer?X-Amz-Signature=s3cr3t&part=1")
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines and all("s3cr3t" not in line for line in lines)
    assert any("X-Amz-Signature=***" in line and "part=1" in line for line in lines)
