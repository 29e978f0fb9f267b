"""Who may call what: bearer tokens with a read and a write scope, GitLab's webhook secret.

Secrets come from the environment variables the configuration names (`[service]`
`read_token_env`, `write_token_env`, `gitlab_webhook_secret_env`, `sonarqube_webhook_secret_env`),
read once when the app is built.
Every comparison is constant-time (`hmac.compare_digest`).

| scope | endpoints | credential |
|---|---|---|
| read | GET /api/v1/*, GET /metrics | `Authorization: Bearer <read token>` |
| write | POST /events/cdevents, POST /api/v1/gate | `Authorization: Bearer <write token>` |
| write | POST /webhooks/jenkins | bearer, or Basic with the write token as password (*) |
| gitlab | POST /webhooks/gitlab | `X-Gitlab-Token: <secret>` |
| sonarqube | POST /webhooks/sonarqube | `X-Sonar-Webhook-HMAC-SHA256: <hex HMAC-SHA256 of the body>` |

(*) Jenkins' Notification plugin sends the user info of its URL as Basic credentials.

A variable that is named but unset refuses its endpoints with 403 (nothing is left open by a
missing secret); a wrong or missing credential is 401. Naming no variable (`read_token_env = ""`)
opens that scope deliberately, for a loopback-only service or one behind an authenticating proxy.
The write token does not grant reads, nor the read token writes. `/healthz` and `/openapi.json`
need no credential and reveal nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBasic, HTTPBearer
from fastapi.security.http import HTTPBasicCredentials

from config.settings import ServiceSettings

bearer = HTTPBearer(auto_error=False, description="A read or write token, by endpoint.")
basic = HTTPBasic(auto_error=False, description="Jenkins: any user, the write token as password.")
gitlab_token = APIKeyHeader(
    name="X-Gitlab-Token", auto_error=False, description="The GitLab webhook's secret token."
)
sonar_signature = APIKeyHeader(
    name="X-Sonar-Webhook-HMAC-SHA256",
    auto_error=False,
    description="SonarQube's signature: the hex HMAC-SHA256 of the body under the webhook secret.",
)


@dataclass(frozen=True)
class Scope:
    """One credential: the variable that names it and its value (None: variable unset)."""

    name: str  # read, write, gitlab
    variable: str  # "" means the scope is open
    value: str | None

    @property
    def open(self) -> bool:
        return self.variable == ""

    @property
    def configured(self) -> bool:
        return self.open or bool(self.value)

    def accepts(self, presented: str | None) -> bool:
        """Whether `presented` is the secret (constant-time)."""
        if self.open:
            return True
        if not self.value or presented is None:
            return False
        return hmac.compare_digest(presented.encode(), self.value.encode())

    def signed(self, body: bytes, presented: str | None) -> str | None:
        """`presented` when it is the HMAC-SHA256 of `body` under the secret (open scope: any),
        else the expected value's opposite: something `accepts` refuses."""
        if self.open or not self.value or presented is None:
            return presented
        expected = hmac.new(self.value.encode(), body, hashlib.sha256).hexdigest()
        return (
            self.value
            if hmac.compare_digest(presented.lower().encode(), expected.encode())
            else None
        )

    def check(self, presented: str | None, scheme: str = "Bearer") -> None:
        """Raise 403 when the scope has no secret configured, 401 when `presented` is not it."""
        if not self.configured:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the {self.name} scope is refused: environment variable {self.variable} "
                "is not set on the server",
            )
        if not self.accepts(presented):
            headers = {"WWW-Authenticate": scheme} if scheme else None
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, f"missing or wrong {self.name} credential", headers
            )


@dataclass(frozen=True)
class Secrets:
    read: Scope
    write: Scope
    gitlab: Scope
    sonarqube: Scope

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, environ: Mapping[str, str] | None = None
    ) -> Secrets:
        """The three scopes, reading the variables the settings name."""
        env = os.environ if environ is None else environ

        def scope(name: str, variable: str) -> Scope:
            return Scope(name, variable, env.get(variable) or None if variable else None)

        return cls(
            scope("read", settings.read_token_env),
            scope("write", settings.write_token_env),
            scope("gitlab", settings.gitlab_webhook_secret_env),
            scope("sonarqube", settings.sonarqube_webhook_secret_env),
        )

    def refused(self) -> list[Scope]:
        """Scopes whose variable is named but unset (their endpoints answer 403)."""
        scopes = (self.read, self.write, self.gitlab, self.sonarqube)
        return [s for s in scopes if not s.configured]


def _guard(request: Request, name: str, presented: str | None, scheme: str = "Bearer") -> None:
    """Check `presented` against scope `name`, counting refusals by reason."""
    service = request.app.state.service
    try:
        getattr(service.secrets, name).check(presented, scheme)
    except HTTPException as exc:
        reason = "unauthorized" if exc.status_code == 401 else "not_configured"
        service.counters.inc("cdmetrics_requests_refused_total", reason=reason)
        raise


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else None


async def require_read(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> None:
    """Dependency: a read token."""
    _guard(request, "read", _token(credentials))


async def require_write(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> None:
    """Dependency: a write token."""
    _guard(request, "write", _token(credentials))


async def require_jenkins(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Security(bearer),
    user: HTTPBasicCredentials | None = Security(basic),
) -> None:
    """Dependency: the write token, as a bearer token or a Basic password."""
    presented = _token(credentials) or (user.password if user is not None else None)
    _guard(request, "write", presented, scheme='Basic realm="cdmetrics"')


async def require_gitlab(request: Request, token: str | None = Security(gitlab_token)) -> None:
    """Dependency: GitLab's secret token in X-Gitlab-Token."""
    _guard(request, "gitlab", token, scheme="")


async def require_sonarqube(
    request: Request, signature: str | None = Security(sonar_signature)
) -> None:
    """Dependency: SonarQube's HMAC signature of the body, under the webhook secret."""
    body = await request.body()
    scope = request.app.state.service.secrets.sonarqube
    _guard(request, "sonarqube", scope.signed(body, signature), scheme="")


__all__ = [
    "Scope",
    "Secrets",
    "require_gitlab",
    "require_jenkins",
    "require_read",
    "require_sonarqube",
    "require_write",
]
