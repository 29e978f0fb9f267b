"""A Zentao (禅道) REST API simulator over real HTTP, serving the products, bugs, stories and
releases of the sandbox's trackers (`ZentaoData`, built from the tracker model).

Routes under `/api.php/v1` (16.0 and later; v1 shapes) and `/api.php/v2` (v2 shapes: local times,
people as accounts): `POST /tokens` (v2: `POST /users/login`) with `{account, password}` answers
a token, sent back as header `Token`; `GET /products`, `/products/{id}/bugs`,
`/products/{id}/stories`, `/products/{id}/releases`, `/builds/{id}`, `/bugs/{id}` and
`/stories/{id}` (the detail answers carry `actions` with their history). Lists are paged
(`page`, `limit` up to 1000) and ordered by `order`: `id_desc` (default) or `lastEditedDate_desc`
(never-edited objects, whose lastEditedDate is empty, last, as MySQL sorts ''); there is no
updated-since filter, as in Zentao.

A token expires after `token_requests` authenticated requests (None: never) or when
`expire_tokens()` is called: the request then answers 401 `{"error": "Unauthorized"}` and the
client logs in again. What an object shows depends on the simulator's instant (`advance`): its
status, stage and dates are those of its actions up to then. `corrupt(kind, id)` serves a
malformed object.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sandbox import zentao_payloads as zp
from sandbox.server import HTTPError, Request, Response, Router

MAX_LIMIT = 1000
LOGIN_FAILED = "登录失败，请检查您的用户名或密码是否填写正确。"  # noqa: RUF001 (as Zentao writes it)


@dataclass
class ZentaoEvent:
    """One action on an object: `verb` (edited, resolved, activated, bugconfirmed, closed, ...)
    and the fields it changed, `(field, old, new)`."""

    id: int
    at: datetime
    verb: str
    actor: str
    history: tuple[tuple[str, str, str], ...] = ()


@dataclass
class ZentaoObject:
    """A bug or a story; its fields at an instant come from its events."""

    kind: str  # bug | story
    id: int
    product: int
    title: str
    opened_by: str
    created_at: datetime
    module: int = 0
    severity: int = 3
    pri: int = 3
    bug_type: str = "codeerror"
    opened_build: str = "trunk"
    text: str = ""  # steps (bug) or spec (story)
    events: list[ZentaoEvent] = field(default_factory=list)


@dataclass
class ZentaoRelease:
    id: int
    product: int
    name: str
    builds: list[int]
    at: datetime


@dataclass
class ZentaoBuildData:
    id: int
    product: int
    name: str
    scm_path: str
    at: datetime


@dataclass
class ZentaoData:
    """The server: products (id -> (name, code)), modules (id -> name), bugs and stories,
    releases, the account that logs in."""

    products: dict[int, tuple[str, str]]
    objects: list[ZentaoObject]
    releases: list[ZentaoRelease] = field(default_factory=list)
    builds: list[ZentaoBuildData] = field(default_factory=list)
    modules: dict[int, str] = field(default_factory=dict)
    account: str = "cdmetrics"
    password: str = "sandbox-password"


def field_at(events: list[ZentaoEvent], name: str, initial: str) -> str:
    """The value of field `name` after `events`."""
    value = initial
    for e in events:
        for f, _, new in e.history:
            if f == name:
                value = new
    return value


class ZentaoSimulator:
    """Serves `data` as of `advance(at)`."""

    def __init__(
        self, data: ZentaoData, at: datetime | None = None, token_requests: int | None = None
    ) -> None:
        self.data = data
        self.at = at or datetime.now(UTC)
        self.token_requests = token_requests
        self.tokens: dict[str, int] = {}  # token -> authenticated requests it may still make
        self.logins = 0
        self.lock = threading.Lock()
        self.corruptions: dict[tuple[str, int], Callable[[dict[str, Any]], None]] = {}
        self.router = Router()
        for version, login in ((zp.V1, "/tokens"), (zp.V2, "/users/login")):
            prefix = f"/api.php/{version}"
            r = self.router

            def bind(handler: Callable[..., Any], v: str = version) -> Callable[[Request], Any]:
                return lambda request: self._guarded(request, handler, v)

            r.add(prefix + login, partial(self.login, version=version), ("POST",))
            r.add(prefix + "/products", bind(self.products))
            r.add(prefix + "/products/{id}/bugs", bind(lambda q, v: self.listing(q, v, "bug")))
            r.add(prefix + "/products/{id}/stories", bind(lambda q, v: self.listing(q, v, "story")))
            r.add(prefix + "/products/{id}/releases", bind(self.releases))
            r.add(prefix + "/builds/{id}", bind(self.build))
            r.add(prefix + "/bugs/{id}", bind(lambda q, v: self.detail(q, v, "bug")))
            r.add(prefix + "/stories/{id}", bind(lambda q, v: self.detail(q, v, "story")))

    def advance(self, at: datetime) -> None:
        """Serve the server as it is at `at`."""
        self.at = at

    def expire_tokens(self) -> None:
        """Every token issued so far expires (the next request with one answers 401)."""
        with self.lock:
            self.tokens.clear()

    def corrupt(self, kind: str, oid: int, change: Callable[[dict[str, Any]], None]) -> None:
        """Serve object `kind` #`oid` changed by `change` (a malformed payload)."""
        self.corruptions[(kind, oid)] = change

    # -- auth ---------------------------------------------------------------------------------

    def login(self, request: Request, version: str) -> Response:
        body = request.json()
        if not isinstance(body, dict) or (body.get("account"), body.get("password")) != (
            self.data.account,
            self.data.password,
        ):
            return Response({"error": LOGIN_FAILED}, 400)
        token = secrets.token_hex(16)
        with self.lock:
            self.tokens[token] = self.token_requests if self.token_requests is not None else -1
            self.logins += 1
        if version == zp.V1:
            return Response(zp.token(token), 201)
        return Response({"status": "success", "token": token})

    def _guarded(
        self, request: Request, handler: Callable[[Request, str], Any], version: str
    ) -> Any:
        token = request.headers.get("token", "")
        with self.lock:
            left = self.tokens.get(token)
            if left is None or left == 0:
                self.tokens.pop(token, None)
                return Response({"error": "Unauthorized"}, 401)
            if left > 0:
                self.tokens[token] = left - 1
        return handler(request, version)

    # -- state at the instant -----------------------------------------------------------------

    def _events(self, obj: ZentaoObject) -> list[ZentaoEvent]:
        return [e for e in obj.events if e.at <= self.at]

    def payload(self, obj: ZentaoObject, version: str, detail: bool = False) -> dict[str, Any]:
        """The object as the API shows it at the simulator's instant."""
        events = self._events(obj)
        last = events[-1].at if events else None

        def last_into(name: str, value: str) -> datetime | None:
            hits = [e.at for e in events for f, _, new in e.history if (f, new) == (name, value)]
            return hits[-1] if hits else None

        actions = None
        if detail:
            opened = zp.action(
                obj.id * 1000,
                obj.kind,
                obj.id,
                "opened",
                obj.created_at,
                obj.opened_by,
                (),
                version,
            )
            actions = [opened] + [
                zp.action(e.id, obj.kind, obj.id, e.verb, e.at, e.actor, e.history, version)
                for e in events
            ]
        status = field_at(events, "status", "active")
        if obj.kind == "bug":
            body = zp.bug(
                bid=obj.id,
                product_id=obj.product,
                title=obj.title,
                status=status,
                severity=obj.severity,
                pri=obj.pri,
                bug_type=obj.bug_type,
                module=obj.module,
                opened_by=obj.opened_by,
                opened_at=obj.created_at,
                opened_build=obj.opened_build,
                edited_at=last,
                resolved_at=last_into("status", "resolved") if status != "active" else None,
                closed_at=last_into("status", "closed") if status == "closed" else None,
                activated_count=sum(e.verb == "activated" for e in events),
                confirmed=int(field_at(events, "confirmed", "0")),
                steps=obj.text,
                actions=actions,
                version=version,
            )
        else:
            body = zp.story(
                sid=obj.id,
                product_id=obj.product,
                title=obj.title,
                status=status,
                stage=field_at(events, "stage", "wait"),
                pri=obj.pri,
                module=obj.module,
                opened_by=obj.opened_by,
                opened_at=obj.created_at,
                edited_at=last,
                released_at=last_into("stage", "released"),
                closed_at=last_into("status", "closed") if status == "closed" else None,
                spec=obj.text,
                actions=actions,
                version=version,
            )
        if (obj.kind, obj.id) in self.corruptions:
            self.corruptions[(obj.kind, obj.id)](body)
        return body

    # -- routes -------------------------------------------------------------------------------

    def _paged(self, request: Request, version: str, key: str, items: list[Any]) -> dict[str, Any]:
        try:
            number = max(1, int(request.query.get("page", "1")))
            limit = min(max(1, int(request.query.get("limit", "20"))), MAX_LIMIT)
        except ValueError:
            raise HTTPError(400, "page and limit must be numbers") from None
        start = (number - 1) * limit
        return zp.page(key, items[start : start + limit], number, limit, len(items), version)

    def _product(self, request: Request) -> int:
        try:
            pid = int(request.params["id"])
        except ValueError:
            raise HTTPError(404, "Not Found") from None
        if pid not in self.data.products:
            raise HTTPError(404, "Not Found")
        return pid

    def products(self, request: Request, version: str) -> dict[str, Any]:
        items = [
            zp.product(pid, name, code, min(self._created(pid)), version)
            for pid, (name, code) in sorted(self.data.products.items())
        ]
        return self._paged(request, version, "products", items)

    def _created(self, pid: int) -> list[datetime]:
        times = [o.created_at for o in self.data.objects if o.product == pid]
        return times or [self.at]

    def listing(self, request: Request, version: str, kind: str) -> dict[str, Any]:
        pid = self._product(request)
        objects = [
            o
            for o in self.data.objects
            if o.kind == kind and o.product == pid and o.created_at <= self.at
        ]
        order = request.query.get("order", "id_desc")
        if order == "lastEditedDate_desc":

            def edited(o: ZentaoObject) -> tuple[int, datetime, int]:
                events = self._events(o)
                return (1, events[-1].at, o.id) if events else (0, o.created_at, o.id)

            objects.sort(key=edited, reverse=True)
        elif order == "id_asc":
            objects.sort(key=lambda o: o.id)
        else:
            objects.sort(key=lambda o: o.id, reverse=True)
        key = "bugs" if kind == "bug" else "stories"
        return self._paged(request, version, key, [self.payload(o, version) for o in objects])

    def detail(self, request: Request, version: str, kind: str) -> dict[str, Any]:
        try:
            oid = int(request.params["id"])
        except ValueError:
            raise HTTPError(404, "Not Found") from None
        obj = next(
            (
                o
                for o in self.data.objects
                if o.kind == kind and o.id == oid and o.created_at <= self.at
            ),
            None,
        )
        if obj is None:
            raise HTTPError(404, "Not Found")
        body = self.payload(obj, version, detail=True)
        return body if version == zp.V1 else {"status": "success", kind: body}

    def releases(self, request: Request, version: str) -> dict[str, Any]:
        pid = self._product(request)
        items = [
            zp.release(r.id, r.product, r.name, r.builds, r.at, version)
            for r in sorted(self.data.releases, key=lambda r: r.id, reverse=True)
            if r.product == pid and r.at <= self.at
        ]
        return self._paged(request, version, "releases", items)

    def build(self, request: Request, version: str) -> dict[str, Any]:
        try:
            bid = int(request.params["id"])
        except ValueError:
            raise HTTPError(404, "Not Found") from None
        found = next((b for b in self.data.builds if b.id == bid and b.at <= self.at), None)
        if found is None:
            raise HTTPError(404, "Not Found")
        body = zp.build(found.id, found.product, 0, found.name, found.at, found.scm_path, version)
        return body if version == zp.V1 else {"status": "success", "build": body}


GITLAB = "https://gitlab.example.com"  # the host builds' scm paths name (any host reads the same)
INCIDENT_SEVERITY = (
    1  # the sandbox files incidents as severity-1 bugs (`[sources.zentao] incident_severity`)
)


def _events(item: Any, kind: str) -> list[ZentaoEvent]:
    """A tracker item's transitions as Zentao actions: for a bug, confirmed (in progress),
    resolved (done), activated (todo again, unconfirmed); for a story, its stage to developing (in
    progress) and closed (done, stage released)."""
    events = []
    status, confirmed, stage = "active", "0", "wait"
    for t in item.transitions:
        history: list[tuple[str, str, str]] = []
        if kind == "bug":
            if t.to_category == "done":
                verb, history = "resolved", [("status", status, "resolved")]
                status = "resolved"
            elif t.to_category == "in_progress":
                verb, history = "bugconfirmed", [("confirmed", confirmed, "1")]
                if status != "active":
                    history.insert(0, ("status", status, "active"))
                    status = "active"
                confirmed = "1"
            else:
                verb, history = "activated", [("status", status, "active")]
                if confirmed != "0":
                    history.append(("confirmed", confirmed, "0"))
                status, confirmed = "active", "0"
        elif t.to_category == "done":
            verb = "closed"
            history = [("status", status, "closed"), ("stage", stage, "released")]
            status, stage = "closed", "released"
        elif t.to_category == "in_progress":
            verb = "edited" if status == "active" else "activated"
            history = [("stage", stage, "developing")]
            if status != "active":
                history.insert(0, ("status", status, "active"))
            status, stage = "active", "developing"
        else:
            verb, history = "activated", [("status", status, "active"), ("stage", stage, "wait")]
            status, stage = "active", "wait"
        events.append(ZentaoEvent(t.id, t.at, verb, item.author, tuple(history)))
    return events


def from_trackers(org: Any) -> tuple[ZentaoData, dict[str, int]]:
    """The Zentao server of the organisation's Zentao teams: a product per team, a module per
    service (unmapped items have none), requirements as stories, bugs as bugs, incidents as
    severity-1 bugs whose steps name the deployment or pipeline they are explicitly linked to; a
    bug filed against an MR names it in its steps; an incident found in a build (`item.build`)
    names it in `openedBuild`, the build's scm path names its commit and a release named by its
    tag ships it. Returns the data and each service's module id (for the source's service
    mapping). Tasks are not served (the simulator has no executions)."""
    teams = [team for team, (tracker, _) in org.trackers.projects.items() if tracker == "zentao"]
    products = {n: (org.trackers.projects[team][1], team) for n, team in enumerate(teams, start=1)}
    product_of = {team: n for n, (_, team) in products.items()}
    services = sorted(s.name for s in org.services if s.team in product_of)
    modules = {name: n for n, name in enumerate(services, start=1)}
    objects = []
    builds, releases = [], []
    for item in org.trackers.of("zentao"):
        if item.build is not None:
            b = item.build
            url = f"{GITLAB}/{b.path}/-/commit/{b.sha}"
            builds.append(ZentaoBuildData(b.id, product_of[item.team], f"build-{b.id}", url, b.at))
            releases.append(ZentaoRelease(b.release_id, product_of[item.team], b.tag, [b.id], b.at))
        if item.kind == "task":
            continue
        kind = "story" if item.kind == "requirement" else "bug"
        text = ""
        if item.link is not None:
            text = f"<p>Caused by {item.link[0]} {item.link[1]}</p>"
        elif item.caused_by is not None:
            text = f"<p>Regression from {item.caused_by[0]}!{item.caused_by[1]}</p>"
        objects.append(
            ZentaoObject(
                kind=kind,
                id=item.number,
                product=product_of[item.team],
                title=item.title,
                opened_by=item.author,
                created_at=item.created_at,
                module=modules.get(item.service or "", 0),
                severity=INCIDENT_SEVERITY if item.kind == "incident" else 3,
                opened_build=str(item.build.id) if item.build is not None else "trunk",
                text=text,
                events=_events(item, kind),
            )
        )
    data = ZentaoData(
        {n: (name, f"team-{team}") for n, (name, team) in products.items()},
        objects,
        releases=releases,
        builds=builds,
        modules={n: name for name, n in modules.items()},
    )
    return data, modules
