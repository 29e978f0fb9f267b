"""The container registry collector: Harbor v2.0 (`kind = "harbor"`) or any OCI distribution
registry (`kind = "oci"`), over httpx under the shared HTTP policy (`collectors.http.PolicyTransport`:
rate limiter, retries honouring Retry-After, timeouts, request counting; URLs in errors redacted).

Writes `image` rows (digest, repository `<host>/<name>`, media type, push time, label revision when
trusted, platform manifests of an index with `index_digest` and `platform`) and `image_tag` history
(`seen_at`: when the tag was first known to point at the digest). Decisions where DESIGN.md is
silent:

- Repositories are stored as `<host>/<name>`, `host` from the source's `host` setting (the name
  images are pulled by), default the host of `url`, so they match the image references of
  deployments and belong to the service whose registry prefix they are under, or which lists them
  in `image_repositories` (`warehouse.image_repositories`; label trust reads the same owner).
- Harbor: per project, the audit log (`create` of `<repository>:<tag>` since the last sync, cursor
  = the newest `op_time`) gives every tag push, also the moves before the first sync; the digest
  of a push is that of the artifact pushed at that time. Then each repository whose `update_time`
  changed (or that has new pushes) lists its artifacts with tags, 100 a page; an index's labels are
  read from one platform artifact (one request per new index, kept as raw stream
  `platform_artifacts`). A tag's `seen_at` is its `push_time`.
- OCI: the catalog, then per repository `tags/list`; a tag not seen before is fetched by tag
  (digest and manifest in one request), a *mutable* tag (not naming a commit or a version, e.g.
  `latest`) is checked with HEAD on every sync, a commit-named tag never again. A new digest costs
  its manifest, (for an index) one platform manifest, and the config blob. Without push times,
  `seen_at` of a new tag position is the sync's start and `pushed_at` is left unset.
- The current row of a mutable tag gets `last_seen_at` = the sync's start on every sync.
- A failed repository is recorded (sync_state, summary) and the others go on; a registry that
  cannot be reached or refuses the credentials fails the source with an error naming it.
"""

from __future__ import annotations

import base64
import fnmatch
import logging
import os
import re
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from sqlalchemy import bindparam, select, update

from collectors.frame import HttpCollector, SyncOptions
from collectors.http import (
    MalformedBody,
    promised_items,
    redact_url,
)
from collectors.registry_types import CodePaths, RegistryError
from collectors.sync import SyncRun
from config.settings import RegistrySource
from warehouse.image_repositories import RepositoryOwners
from warehouse.schema import Image, ImageTag, Repo, Service

log = logging.getLogger(__name__)


@dataclass
class Known:
    """What the warehouse holds for one repository."""

    tags: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # tag -> newest row
    images: set[str] = field(default_factory=set)
    indexes: set[str] = field(default_factory=set)  # index digests with platform rows


class TokenAuth(httpx.Auth):
    """Registry auth by challenge: basic credentials when the 401 says `Basic`, else a bearer token
    from the `Bearer realm=...` token service. Tokens are cached per scope (a token service issues
    them for `repository:<name>:pull`), keyed by the challenge's scope and by the scope derived
    from the request's `/v2/<name>/...` path; the cache is shared by the threads. Credentials are
    never sent to an `http://` realm of an `https://` registry."""

    requires_response_body = True

    def __init__(self, user: str | None, password: str | None) -> None:
        self.basic = (user, password or "") if user else None
        self.tokens: dict[str, str] = {}  # scope -> token
        self.scheme = ""
        self.lock = threading.Lock()

    def _apply(self, request: httpx.Request) -> None:
        with self.lock:
            token = self.tokens.get(_scope(request))
            if self.scheme == "basic" and self.basic is not None:
                request.headers["Authorization"] = _basic_header(self.basic)
            elif token:
                request.headers["Authorization"] = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._apply(request)
        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, params = _challenge(challenge)
        if scheme == "basic" and self.basic is not None:
            with self.lock:
                self.scheme = "basic"
            request.headers["Authorization"] = _basic_header(self.basic)
            yield request
        elif scheme == "bearer" and params.get("realm"):
            realm = params["realm"]
            query = {k: v for k, v in params.items() if k in ("service", "scope")}
            token_request = httpx.Request("GET", realm, params=query)
            if self.basic is not None:
                if request.url.scheme == "https" and token_request.url.scheme != "https":
                    raise RegistryError(
                        f"refusing to send credentials to the plain-http token realm "
                        f"{redact_url(realm.split('?')[0])} of an https registry"
                    )
                token_request.headers["Authorization"] = _basic_header(self.basic)
            token_response = yield token_request
            if token_response.status_code != 200:
                return
            try:
                body = token_response.json()
            except ValueError:
                body = None
            token = (
                (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
            )
            if not isinstance(token, str) or not token:
                raise RegistryError(
                    f"no token in the answer of the token service {redact_url(realm.split('?')[0])}"
                )
            with self.lock:
                self.scheme = "bearer"
                self.tokens[params.get("scope", "")] = token
                self.tokens[_scope(request)] = token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


_REPOSITORY_PATH = re.compile(r"/v2/(.+?)/(?:manifests|blobs|tags)/")


def _scope(request: httpx.Request) -> str:
    """The token scope a registry asks for a request: `repository:<name>:pull` for
    `/v2/<name>/...`, `registry:catalog:*` for the catalog, else "" (the base `/v2/`)."""
    path = request.url.path
    if path.rstrip("/").endswith("/v2/_catalog"):
        return "registry:catalog:*"
    match = _REPOSITORY_PATH.search(path)
    return f"repository:{match.group(1)}:pull" if match else ""


def _basic_header(auth: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistryCollector(HttpCollector[Any]):
    """Syncs one `[[sources.registry]]` (Harbor or OCI) into the warehouse; a partition is what
    the kind's reader syncs at once (a repository)."""

    unit = "repositories"
    listing_errors = (RegistryError, MalformedBody)
    follow_redirects = True  # blobs answer with a redirect to storage

    def __init__(self, source: RegistrySource, options: SyncOptions) -> None:
        super().__init__(source, options)
        self.kind = source.kind
        self.host = source.host or urlsplit(source.url).netloc.rsplit("@", 1)[-1]
        self.tag_revision = re.compile(self.settings.metrics.tag_revision_pattern)
        user = os.environ.get(source.user_env) if source.user_env else None
        password = os.environ.get(source.token_env) if source.token_env else None
        self._auth: httpx.Auth | None
        if source.kind == "harbor":
            self._auth = httpx.BasicAuth(user, password or "") if user else None
        else:
            self._auth = TokenAuth(user, password)
        self.reader: Any = None  # the kind's reader, made by `partitions`
        self.failed: set[str] = set()  # groups (Harbor projects) with a failed repository

    # -- HTTP ----------------------------------------------------------------------------------------

    def auth(self) -> httpx.Auth | None:
        return self._auth

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request that raises `RegistryError` on a failed connection or a non-2xx answer."""
        client = self.client()
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            where = self.last_url(url)
            raise RegistryError(f"{type(exc).__name__}: {exc} (request: {where})") from None
        if response.status_code >= 400:
            where = redact_url(str(response.request.url).split("?")[0])
            raise RegistryError(
                f"HTTP {response.status_code} {response.reason_phrase} (request: {where})",
                response.status_code,
            )
        return response

    @staticmethod
    def where(response: httpx.Response) -> str:
        """The (redacted, query-less) URL a response answers."""
        return redact_url(str(response.request.url).split("?")[0])

    def json(self, response: httpx.Response, shape: type[list] | type[dict]) -> Any:
        """The JSON body of a response, which must be a `shape` (list or object); else
        `RegistryError` naming the source and the URL (so the partition fails, not the sync)."""
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "").split(";")[0] or "no content type"
            raise RegistryError(
                f"{self.source.name}: not JSON ({kind}) from {self.where(response)}"
            ) from None
        if not isinstance(body, shape):
            raise RegistryError(
                f"{self.source.name}: expected a JSON {'list' if shape is list else 'object'}, "
                f"got {type(body).__name__} from {self.where(response)}"
            )
        return body

    def pages(self, url: str, params: dict[str, Any]) -> Iterator[httpx.Response]:
        """Every page of a listing, following `Link: <...>; rel="next"` (relative or absolute)."""
        response = self.request("GET", url, params=params)
        while True:
            self.check_page(response)
            yield response
            link = response.links.get("next", {}).get("url")
            if not link:
                return
            # no `params` here: httpx would replace the link's query with them
            response = self.request("GET", urljoin(str(response.request.url), link))

    def check_page(self, response: httpx.Response) -> None:
        """Raise `RegistryError` for a Harbor list page short of what its X-Total-Count promises
        (a full `page_size` page when a next one follows): its missing items would be lost."""
        total = response.headers.get("X-Total-Count", "")
        query = response.request.url.params
        if not total.isdigit() or not query.get("page_size", "").isdigit():
            return
        page = int(query["page"]) if query.get("page", "").isdigit() else 1
        size, has_next = int(query["page_size"]), "next" in response.links
        promised = promised_items(size, page, int(total), has_next)
        body = response.json() if promised else None
        if isinstance(body, list) and promised is not None and len(body) < promised:
            raise RegistryError(
                f"{self.source.name}: short page: {len(body)} of the {promised} items its headers "
                f"promise (page {page}, {size} a page) from {self.where(response)}"
            )

    def mutable(self, tag: str) -> bool:
        """Tags naming a commit or a version are taken as immutable; others (latest, prod) move."""
        return not self.tag_revision.match(tag) and not fnmatch.fnmatch(tag, "v[0-9]*")

    def access_hint(self) -> str:
        names = [f"${n}" for n in (self.source.user_env, self.source.token_env) if n]
        return (
            "check the url and the credentials in " + " and ".join(names)
            if names
            else (
                "check the url; the source is configured for anonymous access (set user_env and "
                "token_env)"
            )
        )

    # -- warehouse state -------------------------------------------------------------------------

    def sources(self) -> CodePaths:
        """image repository -> the paths of its service's code repository (for label trust); a
        repository is its service's when under its prefix or configured (`[[services]]`)."""
        from collectors.registry_normalize import source_path

        paths: dict[int, set[str]] = {}
        with self.engine.connect() as conn:
            owners = RepositoryOwners.load(conn, self.settings.image_repositories())
            rows = conn.execute(
                select(Service.id, Repo.path, Repo.web_url).join(Repo, Repo.id == Service.repo_id)
            )
            for service, path, web_url in rows:
                found = {p for p in (source_path(path), source_path(web_url)) if p}
                paths.setdefault(service, set()).update(found)
        return CodePaths(owners, paths)

    def known(self, repository: str) -> Known:
        known = Known()
        with self.engine.connect() as conn:
            for tag, digest, seen_at in conn.execute(
                select(ImageTag.tag, ImageTag.digest, ImageTag.seen_at)
                .where(ImageTag.repository == repository)
                .order_by(ImageTag.seen_at)
            ):
                known.tags[tag] = (digest, seen_at)
            for digest, index_digest in conn.execute(
                select(Image.digest, Image.index_digest).where(Image.repository == repository)
            ):
                known.images.add(digest)
                if index_digest:
                    known.indexes.add(index_digest)
        return known

    def touch(self, run: SyncRun, repository: str, current: list[tuple[str, str, datetime]]) -> Any:
        """A callback setting `last_seen_at` of the current rows of mutable tags."""
        rows = [
            {"r": repository, "t": tag, "d": digest, "s": seen_at, "now": run.started_at}
            for tag, digest, seen_at in current
            if self.mutable(tag)
        ]

        def save(conn: Any) -> None:
            if rows:
                conn.execute(
                    update(ImageTag)
                    .where(
                        ImageTag.repository == bindparam("r"),
                        ImageTag.tag == bindparam("t"),
                        ImageTag.digest == bindparam("d"),
                        ImageTag.seen_at == bindparam("s"),
                    )
                    .values(last_seen_at=bindparam("now")),
                    rows,
                )

        return save

    # -- the sync ----------------------------------------------------------------------------------

    def cannot_list(self, exc: Exception) -> str:
        return (
            f"{self.source.name}: cannot read the {self.kind} registry at "
            f"{redact_url(self.source.url)}: {exc}; {self.access_hint()}"
        )

    def partitions(self, run: SyncRun) -> list[Any]:
        from collectors.registry_harbor import HarborReader
        from collectors.registry_oci import OCIReader

        self.failed = set()
        self.reader = HarborReader(self, run) if self.kind == "harbor" else OCIReader(self, run)
        return list(self.reader.discover())

    def lease_of(self, partition: Any) -> tuple[str, str]:
        return self.reader.stream, self.reader.name(partition)  # on its cursor's row

    def sync_partition(self, run: SyncRun, partition: Any) -> None:
        reader = self.reader
        try:
            reader.sync(partition)
        except (RegistryError, MalformedBody) as exc:
            self.failed.add(reader.group(partition))
            run.fail(
                reader.stream,
                reader.name(partition),
                f"{self.source.name}: repository {reader.name(partition)}: {exc}",
                exc,
            )
        except Exception as exc:  # a database error or a bug: this repository fails
            self.failed.add(reader.group(partition))
            where = f"repository {reader.name(partition)}"
            run.fail(
                reader.stream,
                reader.name(partition),
                run.unexpected(reader.stream, where, exc),
                exc,
            )

    def finish(self, run: SyncRun) -> None:
        self.reader.finish(self.failed)


__all__ = ["RegistryCollector", "RegistryError", "TokenAuth"]
