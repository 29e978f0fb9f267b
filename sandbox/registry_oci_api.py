"""The OCI distribution API simulator (see sandbox/registry_api.py for what it serves)."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sandbox.image_repos import ImageRepo
from sandbox.model import Organisation
from sandbox.registry_api_common import Handler, basic_credentials, html_page, int_arg, same
from sandbox.registry_payloads import HOST, RegistryView, config, manifest
from sandbox.server import Request, Response, Router, json_time

# -- OCI distribution -----------------------------------------------------------------------------

ACCEPTED = ("*/*", "application/vnd.oci.image.index.v1+json")


class OCISimulator:
    """The OCI distribution API for the organisation (`auth`: "token" or "basic")."""

    def __init__(
        self,
        org: Organisation,
        user: str,
        password: str,
        at: datetime | None = None,
        auth: str = "token",
        service: str = HOST,
    ) -> None:
        if auth not in ("token", "basic"):
            raise ValueError(f"unknown OCI auth {auth!r}; use token or basic")
        self.view = RegistryView(org, at)
        self.user, self.password, self.auth, self.service = user, password, auth, service
        self.outsiders: dict[str, str] = {}
        self.tokens: dict[str, tuple[str, str]] = {}  # token -> (user, scope it was issued for)
        self.html_paths: list[str] = []  # path regexes answered with a 200 HTML page
        self.digest_header = True  # False: manifests come without Docker-Content-Digest
        self.router = Router()
        self.router.add("/token", self.token)
        for pattern, handler, scope in (
            ("/v2/", self.base, ""),
            ("/v2/_catalog", self.catalog, "registry:catalog:*"),
            ("/v2/{name:path}/tags/list", self.tags, "repo"),
            ("/v2/{name:path}/manifests/{reference}", self.manifest, "repo"),
            ("/v2/{name:path}/blobs/{digest}", self.blob, "repo"),
        ):
            self.router.add(pattern, self._guard(handler, scope))

    @property
    def at(self) -> datetime:
        return self.view.at

    def advance(self, at: datetime) -> None:
        self.view.advance(at)

    def _guard(self, handler: Handler, scope: str) -> Handler:
        def guarded(request: Request) -> Any:
            name = request.params.get("name", "")
            wanted = f"repository:{name}:pull" if scope == "repo" else scope
            user = self._user(request, wanted)
            if user is None:
                if self.auth == "token":
                    challenge = f'Bearer realm="{request.base_url}/token",service="{self.service}"'
                    challenge += f',scope="{wanted}"' if wanted else ""
                else:
                    challenge = 'Basic realm="Registry Realm"'
                return _oci_error(401, "UNAUTHORIZED", "authentication required", challenge)
            if user in self.outsiders and request.path != "/v2/":
                return _oci_error(403, "DENIED", "requested access to the resource is denied")
            return html_page(request, self.html_paths) or handler(request)

        return guarded

    def _user(self, request: Request, wanted: str) -> str | None:
        """The user a request authenticates as; a token counts only for the scope it was issued
        for (any token opens the base `/v2/`), as a registry's token service scopes them."""
        header = request.headers.get("authorization", "")
        if self.auth == "token":
            token = header[7:] if header.lower().startswith("bearer ") else ""
            user, scope = self.tokens.get(token, (None, ""))
            return user if user is not None and (not wanted or scope == wanted) else None
        return self._check(basic_credentials(request))

    def _check(self, given: tuple[str, str] | None) -> str | None:
        if given is None:
            return None
        user, password = given
        if user in self.outsiders and same(password, self.outsiders[user]):
            return user
        if same(user, self.user) and same(password, self.password):
            return user
        return None

    def token(self, request: Request) -> Response:
        user = self._check(basic_credentials(request))
        if user is None:
            return _oci_error(401, "UNAUTHORIZED", "invalid credentials")
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (user, request.query.get("scope", ""))
        body = {"token": token, "access_token": token, "expires_in": 300}
        return Response({**body, "issued_at": json_time(self.at)})

    def _service(self, request: Request) -> ImageRepo:
        s = self.view.by_name.get(request.params["name"])
        if s is None or not self.view.images(s):
            raise _OCINotFound("NAME_UNKNOWN", "repository name not known to registry")
        return s

    def base(self, request: Request) -> Response:
        return Response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    def catalog(self, request: Request) -> Response:
        names = [s.path for s in self.view.services()]
        return _oci_page(request, "repositories", names, {})

    def tags(self, request: Request) -> Response:
        try:
            s = self._service(request)
        except _OCINotFound as exc:
            return exc.response
        return _oci_page(request, "tags", sorted(self.view.tags(s)), {"name": s.path})

    def manifest(self, request: Request) -> Response:
        try:
            s = self._service(request)
        except _OCINotFound as exc:
            return exc.response
        reference = request.params["reference"]
        digest = self.view.tags(s).get(reference, (reference, None))[0]
        blob = self.view.blob(digest)
        if blob is None or blob.repo is not s or blob.kind == "config":
            return _oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        body, media_type = manifest(blob)
        accept = request.headers.get("accept", "")
        if blob.kind == "index" and accept and not any(a in accept for a in ACCEPTED):
            return _oci_error(
                404, "MANIFEST_UNKNOWN", "OCI index found, but Accept header does not support it"
            )
        headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'}
        if not self.digest_header:
            headers = {}
        return Response(json.dumps(body).encode(), headers=headers, content_type=media_type)

    def blob(self, request: Request) -> Response:
        try:
            s = self._service(request)
        except _OCINotFound as exc:
            return exc.response
        digest = request.params["digest"]
        blob = self.view.blob(digest)
        if blob is None or blob.repo is not s or blob.kind != "config":
            return _oci_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        return Response(
            json.dumps(config(blob)).encode(),
            headers={"Docker-Content-Digest": digest},
            content_type="application/octet-stream",
        )


class _OCINotFound(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.response = _oci_error(404, code, message)


def _oci_error(status: int, code: str, message: str, challenge: str = "") -> Response:
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    return Response(
        {"errors": [{"code": code, "message": message, "detail": None}]}, status, headers
    )


def _oci_page(request: Request, key: str, names: list[str], extra: dict[str, Any]) -> Response:
    """`n`/`last` pagination of a sorted list with the distribution spec's relative `Link`."""
    last = request.query.get("last")
    start = 0
    if last:
        start = next((i for i, n in enumerate(names) if n > last), len(names))
    n = int_arg(request.query, "n", 0, 10_000)
    chosen = names[start : start + n] if n else names[start:]
    headers = {}
    if n and start + n < len(names):
        query = urlencode({"n": n, "last": chosen[-1]})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return Response({**extra, key: chosen}, headers=headers)


__all__ = ["OCISimulator"]
