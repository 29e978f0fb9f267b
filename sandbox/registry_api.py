"""Container registry simulators over real HTTP: Harbor's v2.0 API and the OCI distribution API,
both serving the generated organisation's images as of an instant (`advance(at)`).

Harbor (`HarborSimulator`, basic auth with a robot account): `/api/v2.0/projects`,
`/projects/{p}/repositories`, `/projects/{p}/repositories/{r}/artifacts` (`with_tag`,
`with_label`, `sort`, `page`/`page_size` with `X-Total-Count` and a relative `Link`), a single
artifact by digest or tag (platform manifests of an index are read this way), and the project's
audit log `/projects/{p}/logs` (`q=operation=create,op_time=[a~b]`, newest first). Repository
names inside a path are URL-encoded twice (`team%252Fname`), as Harbor requires; a name encoded
once is not found. Errors have Harbor's shape `{"errors": [{"code", "message"}]}`; an account
that authenticates but is no member of the project gets 403.

OCI (`OCISimulator`): `/v2/`, `/v2/_catalog` and `/v2/<name>/tags/list` (`n`/`last` with a
`Link`), manifests by tag or digest (GET and HEAD, `Docker-Content-Digest`, the index or manifest
media type as Content-Type; an index asked for without accepting index types is not found, as
Docker Hub does), config blobs. Auth `token` (a 401 `WWW-Authenticate: Bearer realm=...` challenge,
tokens from `/token` for basic credentials) or `basic` (a `Basic` challenge).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlencode

from sandbox.image_repos import ImageRepo
from sandbox.model import Organisation
from sandbox.registry_api_common import Handler, basic_credentials, html_page, int_arg, same
from sandbox.registry_payloads import (
    RegistryView,
    audit_log,
    harbor_artifact,
    harbor_project,
    harbor_repository,
)
from sandbox.server import Request, Response, Router

DELETE = object()  # a corruption that removes the field


class HarborSimulator:
    """Harbor v2.0 API for the organisation; `user`/`password` is the robot account."""

    def __init__(
        self, org: Organisation, user: str, password: str, at: datetime | None = None
    ) -> None:
        self.view = RegistryView(org, at)
        self.user, self.password = user, password
        self.outsiders: dict[str, str] = {}  # accounts that authenticate but see no project
        self.corruptions: dict[str, tuple[str, Any]] = {}
        self.html_paths: list[str] = []  # path regexes answered with a 200 HTML page
        self._logs: dict[tuple[str, str, str, datetime], list[Any]] = {}
        names = sorted({s.path.split("/", 1)[0] for s in org.services})
        self.project_ids = {name: i + 1 for i, name in enumerate(names)}
        self.router = Router()
        p = "/api/v2.0/projects/{project}"
        for pattern, handler in (
            ("/api/v2.0/projects", self.projects),
            (p, self.project),
            (f"{p}/repositories", self.repositories),
            (f"{p}/repositories/{{repo}}", self.repository),
            (f"{p}/repositories/{{repo}}/artifacts", self.artifacts),
            (f"{p}/repositories/{{repo}}/artifacts/{{reference}}", self.artifact),
            (f"{p}/logs", self.logs),
        ):
            self.router.add(pattern, self._guard(handler))

    @property
    def at(self) -> datetime:
        return self.view.at

    def advance(self, at: datetime) -> None:
        """Show the registry as it is at `at`."""
        self.view.advance(at)

    def corrupt(self, digest: str, field_name: str, value: Any = DELETE) -> None:
        """Serve the artifact `digest` with `field_name` set to `value` (or removed)."""
        self.corruptions[digest] = (field_name, value)

    # -- plumbing ----------------------------------------------------------------------------------

    def _guard(self, handler: Handler) -> Handler:
        def guarded(request: Request) -> Any:
            given = basic_credentials(request)
            if given is None:
                return _harbor_error(401, "UNAUTHORIZED", "unauthorized")
            user, password = given
            if user in self.outsiders and same(password, self.outsiders[user]):
                if request.path.rstrip("/") == "/api/v2.0/projects":
                    return _harbor_page(request, [])
                return _harbor_error(403, "FORBIDDEN", "forbidden")
            if not (same(user, self.user) and same(password, self.password)):
                return _harbor_error(401, "UNAUTHORIZED", "unauthorized")
            return html_page(request, self.html_paths) or handler(request)

        return guarded

    def _project(self, request: Request) -> tuple[str, int]:
        key = request.params["project"]
        for name, pid in self.project_ids.items():
            if key in (name, str(pid)):
                return name, pid
        raise _NotFound(f"project {key} not found")

    def _service(self, request: Request) -> tuple[ImageRepo, int]:
        project, pid = self._project(request)
        once = request.params["repo"]  # the router decoded it once
        if "/" in once:  # encoded once only: Harbor's router splits it and finds nothing
            raise _NotFound(f"repository {once} not found")
        s = self.view.by_name.get(f"{project}/{unquote(once)}")
        if s is None or not self.view.images(s):
            raise _NotFound(f"repository {project}/{unquote(once)} not found")
        return s, pid

    # -- handlers ----------------------------------------------------------------------------------

    def projects(self, request: Request) -> Response:
        name = request.query.get("name")
        items = [
            harbor_project(self.view, n, pid)
            for n, pid in self.project_ids.items()
            if name in (None, n)
        ]
        return _harbor_page(request, items)

    def project(self, request: Request) -> Any:
        try:
            name, pid = self._project(request)
        except _NotFound as exc:
            return exc.response
        return harbor_project(self.view, name, pid)

    def repositories(self, request: Request) -> Response:
        try:
            name, pid = self._project(request)
        except _NotFound as exc:
            return exc.response
        services = [s for s in self.view.services() if s.path.split("/", 1)[0] == name]
        return _harbor_page(request, [harbor_repository(self.view, s, pid) for s in services])

    def repository(self, request: Request) -> Any:
        try:
            s, pid = self._service(request)
        except _NotFound as exc:
            return exc.response
        return harbor_repository(self.view, s, pid)

    def artifacts(self, request: Request) -> Response:
        try:
            s, pid = self._service(request)
        except _NotFound as exc:
            return exc.response
        images = self.view.images(s)  # newest first
        if request.query.get("sort") == "push_time":
            images = images[::-1]
        page, size = _page_args(request)
        chosen = images[(page - 1) * size : page * size]
        with_tag = request.query.get("with_tag", "true") != "false"
        with_label = request.query.get("with_label", "false") == "true"
        body = [self._artifact(image.digest, pid, with_tag, with_label) for image in chosen]
        return _harbor_page(request, body, total=len(images), slice_=False)

    def artifact(self, request: Request) -> Any:
        try:
            s, pid = self._service(request)
        except _NotFound as exc:
            return exc.response
        reference = request.params["reference"]
        digest = self.view.tags(s).get(reference, (reference, None))[0]
        blob = self.view.blob(digest)
        if blob is None or blob.repo is not s or blob.kind == "config":
            return _harbor_error(404, "NOT_FOUND", f"artifact {s.path}:{reference} not found")
        with_label = request.query.get("with_label", "false") == "true"
        return self._artifact(digest, pid, request.query.get("with_tag") != "false", with_label)

    def _artifact(self, digest: str, pid: int, with_tag: bool, with_label: bool) -> dict[str, Any]:
        blob = self.view.blobs[digest]
        body = harbor_artifact(self.view, blob, pid, with_tag)
        if with_label:
            body["labels"] = []
        if digest in self.corruptions:
            field_name, value = self.corruptions[digest]
            if value is DELETE:
                body.pop(field_name, None)
            else:
                body[field_name] = value
        return body

    def logs(self, request: Request) -> Response:
        try:
            name, _ = self._project(request)
        except _NotFound as exc:
            return exc.response
        q, order = request.query.get("q", ""), request.query.get("sort", "-op_time")
        key = (name, q, order, self.at)
        events = self._logs.get(key)
        if events is None:  # filtered once per query and instant; pages slice it
            filters = _query_filters(q)
            lo, hi = filters.get("op_time", (None, None))
            wanted = (filters.get("operation", "create"), filters.get("resource_type", "artifact"))
            events = [
                e
                for e in self.view.events
                if e[0] <= self.at
                and wanted == ("create", "artifact")
                and e[1].path.split("/", 1)[0] == name
                and (lo is None or e[0] >= lo)
                and (hi is None or e[0] <= hi)
            ]
            if order != "op_time":
                events = events[::-1]
            self._logs = {key: events}
        page, size = _page_args(request)
        body = [audit_log(self.view, e) for e in events[(page - 1) * size : page * size]]
        return _harbor_page(request, body, total=len(events), slice_=False)


class _NotFound(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.response = _harbor_error(404, "NOT_FOUND", message)


def _harbor_error(status: int, code: str, message: str) -> Response:
    return Response({"errors": [{"code": code, "message": message}]}, status)


def _page_args(request: Request) -> tuple[int, int]:
    return int_arg(request.query, "page", 1, 10**9), int_arg(request.query, "page_size", 10, 100)


def _harbor_page(
    request: Request, items: list[Any], total: int | None = None, slice_: bool = True
) -> Response:
    """A page with Harbor's headers: X-Total-Count and a Link of relative URLs (prev, next)."""
    page, size = _page_args(request)
    total = len(items) if total is None else total
    body = items[(page - 1) * size : page * size] if slice_ else items
    links = []

    def url(n: int) -> str:
        query = {k: v for k, v in request.query.items() if k not in ("page", "page_size")}
        return f"{request.raw_path}?{urlencode({**query, 'page': n, 'page_size': size})}"

    if page > 1:
        links.append(f'<{url(page - 1)}>; rel="prev"')
    if page < math.ceil(total / size):
        links.append(f'<{url(page + 1)}>; rel="next"')
    headers = {"X-Total-Count": str(total)}
    if links:
        headers["Link"] = " , ".join(links)
    return Response(body, headers=headers)


_RANGE = re.compile(r"^\[(.*)~(.*)\]$")


def _query_filters(q: str) -> dict[str, Any]:
    """Harbor's `q`: `k=v` pairs split by commas; `op_time=[from~to]` a time range."""
    out: dict[str, Any] = {}
    for part in filter(None, q.split(",")):
        key, _, value = part.partition("=")
        m = _RANGE.match(value)
        if m:
            lo, hi = (_harbor_time(v) for v in m.groups())
            out[key] = (lo, hi)
        else:
            out[key] = value.lstrip("~")
    return out


def _harbor_time(value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


from sandbox.registry_oci_api import OCISimulator  # noqa: E402  (one import for both)

__all__ = ["DELETE", "HarborSimulator", "OCISimulator"]
