"""The Zentao (禅道) collector: the bugs and stories of every product, with their history, as work
items and incidents (REST API v1 `/api.php/v1`, 16.0 and later, or v2; over httpx,
`collectors.tracker_client`).

    POST /tokens                      {account, password} -> token, sent as header `Token`
    GET  /products                    the partitions (filtered by `[sources.zentao] products`)
    per product (a partition, leased):
      GET /products/{id}/bugs         newest edited first, then newest created (see below)
      GET /products/{id}/stories      the same
      GET /bugs/{id}, /stories/{id}   new or changed objects only: their actions (history)
      GET /products/{id}/releases     every sync: the builds a release ships (openedBuild tags)
      GET /builds/{id}                the builds a new or changed incident bug names (openedBuild),
                                      once a sync: their scm path names the tag's commit

Decisions where DESIGN.md is silent:
- v1 has no updated-since filter. A first (or `--full`) sync reads every bug and story. An
  incremental one reads each list ordered `lastEditedDate_desc` and stops at the first object
  edited before the cursor minus `[sync] overlap` (10 minutes by default); objects never edited
  sort last there (an empty date), so a second pass ordered `id_desc` reads the objects created
  since (ids above the highest one seen) and stops at the first known id. A no-change sync costs
  two list pages per kind and product, the releases, the login and the product list.
- Only new or changed objects cost a detail request (their actions give the transitions). The
  cursor (per product: the sync's start and the highest bug and story ids) is saved with the last
  rows, so an interrupted product re-reads from the previous cursor.
- A token that expires mid-sync (401) logs in again once and the request is repeated; a login
  that fails is an error naming the account's environment variables.
- Which bugs are incidents: the source's rule (`incident_types`, `incident_severity`,
  `incident_modules`; every given criterion must hold, `zentao_normalize.is_incident`); an incident
  bug is an incident row and not a work item.
- Service mapping: rules on product (id or name) and module (id, or name when the payload names
  it); unmatched rows are kept with no service (`collectors.trackers`).
- Explicit links: an incident bug's `openedBuild` naming a build of a release named by a version
  tag links it to the production deployment from that tag, or, when none ran from that ref, of
  the commit the build's `scmPath` names (`zentao_normalize.normalize_incident`). Builds are read
  by id (`/builds/{id}`) only for the new or changed incident bugs that name one, once a sync
  (kept as raw `builds` rows): a no-change sync reads none.
- Executions and tasks are not read: a build is read by its id (no need to list executions and
  their builds), and v1 has no updated-since filter for an execution's tasks (every sync would
  re-read every task of every execution), which no metric reads.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from collectors import zentao_normalize as norm
from collectors.payload import RejectedPayload, external_id_of
from collectors.refs import Refs
from collectors.sync import Batch, SyncRun
from collectors.tracker_client import TrackerCollector, TrackerError
from collectors.trackers import TrackerWriter, map_service
from config.settings import ZentaoSource
from warehouse.raw import Raw
from warehouse.sync_state import get_state

log = logging.getLogger(__name__)

STREAM = "work_items"
PAGE = 100
LISTS = {"bug": "bugs", "story": "stories"}


@dataclass(frozen=True)
class Product:
    id: str
    name: str


@dataclass
class Cursor:
    """Per product: when the last sync started, and the highest bug and story ids it saw."""

    edited: datetime | None = None
    ids: dict[str, int] | None = None

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls(None, {})
        data = json.loads(text)
        return cls(datetime.fromisoformat(data["edited"]), dict(data.get("ids") or {}))

    def dump(self) -> str:
        return json.dumps(
            {"edited": self.edited.isoformat() if self.edited else None, "ids": self.ids or {}}
        )


class ZentaoAuth(httpx.Auth):
    """Zentao's token auth: log in once (shared by the threads), send `Token`, log in again when
    an answer says 401 (the token expired) and repeat the request once."""

    requires_response_body = True

    def __init__(self, login_url: str, account: str, password: str, where: str) -> None:
        self.login_url, self.account, self.password, self.where = (
            login_url,
            account,
            password,
            where,
        )
        self.token: str | None = None
        self.lock = threading.Lock()
        self.logins = 0

    def _login(self) -> Generator[httpx.Request, httpx.Response, str]:
        response = yield httpx.Request(
            "POST", self.login_url, json={"account": self.account, "password": self.password}
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("token") if isinstance(body, dict) else None
        if response.status_code >= 400 or not isinstance(token, str) or not token:
            raise TrackerError(
                f"cannot log in to {self.where} (HTTP {response.status_code}); {self.account_hint}",
                response.status_code,
            )
        with self.lock:
            self.token = token
            self.logins += 1
        return token

    account_hint = "check the account and password variables of the source"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token
        if token is None:
            token = yield from self._login()
        request.headers["Token"] = token
        response = yield request
        if response.status_code != 401:
            return
        with self.lock:
            newer = self.token if self.token != token else None
        token = newer or (yield from self._login())
        request.headers["Token"] = token
        yield request


class ZentaoCollector(TrackerCollector):
    """Syncs one `[[sources.zentao]]`; a partition is a product."""

    kind = "zentao"
    unit = "products"

    def __init__(self, source: ZentaoSource, options: Any) -> None:
        super().__init__(source, options)
        self.tz = ZoneInfo(source.timezone)
        self.writer: TrackerWriter | None = None
        self.web = source.url.rstrip("/")
        account = os.environ.get(source.account_env, "")
        auth = ZentaoAuth(
            self.base() + ("/tokens" if source.api == "v1" else "/users/login"),
            account,
            os.environ.get(source.password_env, ""),
            self.base(),
        )
        auth.account_hint = (
            f"check the account in ${source.account_env} and its password in ${source.password_env}"
        )
        self._auth = auth
        self.builds: dict[str, Any] = {}  # build id -> its answer (None: cannot be read), a sync
        self.builds_lock = threading.Lock()

    def base(self) -> str:
        return f"{self.source.url.rstrip('/')}/api.php/{self.source.api}"

    def auth(self) -> httpx.Auth:
        return self._auth

    def cannot_list(self, exc: Exception) -> str:
        return f"{self.source.name}: cannot list the products of {self.base()}: {exc}"

    # -- partitions ---------------------------------------------------------------------------

    def partitions(self, run: SyncRun) -> list[Product]:
        wanted = set(self.source.products)
        found, batch = [], Batch()
        for item in self._pages("/products", "products", {}):
            if not isinstance(item, dict) or item.get("id") is None:
                continue
            product = Product(str(item["id"]), str(item.get("name") or ""))
            batch.raws.append(Raw("products", product.id, item))
            if not wanted or product.id in wanted or product.name in wanted:
                found.append(product)
        run.write("products", batch)
        self.writer = TrackerWriter(self.engine, run.source_id, Refs.from_settings(self.settings))
        return found

    def lease_of(self, partition: Product) -> tuple[str, str]:
        return STREAM, partition.id

    def sync_partition(self, run: SyncRun, partition: Product) -> None:
        before = self.thread_requests()
        where = f"product {partition.name} ({partition.id})"
        try:
            run.attempt(
                STREAM,
                partition.id,
                where,
                lambda: self._product(run, partition, before),
                known=(TrackerError,),
                describe=self.describe(where, STREAM),
            )
        finally:
            run.count(STREAM, partitions=1, requests=self.thread_requests() - before)

    # -- reading ------------------------------------------------------------------------------

    def _pages(self, path: str, key: str, params: dict[str, Any]) -> Iterator[Any]:
        """Every item of a paged list, page by page (a generator: stop reading by stopping)."""
        number = 1
        while True:
            answer = self.get(path, params | {"page": number, "limit": PAGE})
            try:
                items, total = norm.page_of(answer, key)
            except RejectedPayload as exc:
                raise TrackerError(f"{path}: {exc}") from None
            yield from items
            if not items or (total is not None and number * PAGE >= total) or len(items) < PAGE:
                return
            number += 1

    def _changed(self, product: Product, kind: str, cursor: Cursor) -> list[Any]:
        """The listed objects of `kind` new or edited since the cursor (all on a first sync)."""
        path = f"/products/{product.id}/{LISTS[kind]}"
        known = (cursor.ids or {}).get(kind, 0)
        if cursor.edited is None or self.full:
            return list(self._pages(path, LISTS[kind], {"order": "id_desc"}))
        since = cursor.edited - self.settings.sync.overlap
        found: dict[Any, Any] = {}
        for item in self._pages(path, LISTS[kind], {"order": "lastEditedDate_desc"}):
            edited = norm.edited_at(item, self.tz)
            if edited is None or edited < since:
                break
            found[external_id_of(item)] = item
        for item in self._pages(path, LISTS[kind], {"order": "id_desc"}):
            ident = item.get("id") if isinstance(item, dict) else None
            if isinstance(ident, int) and ident <= known:
                break
            found.setdefault(external_id_of(item), item)
        return list(found.values())

    def _product(self, run: SyncRun, product: Product, before: int) -> None:
        cursor = Cursor()
        if not self.full:
            with self.engine.connect() as conn:
                state = get_state(conn, run.source_id, STREAM, product.id)
            cursor = Cursor.parse(state.cursor if state else None)
        releases = list(self._pages(f"/products/{product.id}/releases", "releases", {}))
        batch = Batch(raws=[Raw("releases", external_id_of(r), r) for r in releases])
        ids = dict(cursor.ids or {})
        for kind in ("story", "bug"):
            for listed in self._changed(product, kind, cursor):
                ident = listed.get("id") if isinstance(listed, dict) else None
                if isinstance(ident, int):
                    ids[kind] = max(ids.get(kind, 0), ident)
                self._object(product, kind, listed, releases, batch)
                if len(batch.raws) >= PAGE:
                    run.write(STREAM, batch)
                    batch = Batch()
        done = Cursor(run.started_at, ids)
        made = self.thread_requests() - before
        run.write(STREAM, batch, after=run.save_cursor(STREAM, product.id, done.dump(), made))

    def _object(
        self, product: Product, kind: str, listed: Any, releases: list[Any], batch: Batch
    ) -> None:
        """Read one object's detail and add its rows (or keep it as rejected) to `batch`."""
        ident = listed.get("id") if isinstance(listed, dict) else None
        payload: Any = listed
        key = f"{kind}-{ident}" if isinstance(ident, int) else external_id_of(listed)
        try:
            if not isinstance(ident, int):
                raise RejectedPayload(f"{kind}: missing id")
            answer = self.get(f"/{LISTS[kind]}/{ident}")
            payload = answer.get(kind, answer) if self.source.api == "v2" else answer
            self._rows(product, kind, payload, releases, batch)
        except RejectedPayload as exc:
            batch.raws.append(Raw(STREAM, key, payload, error=str(exc)))
            batch.rejected += 1
            log.warning("%s: rejected %s: %s", self.source.name, key, exc)
            return
        batch.raws.append(Raw(STREAM, key, payload))

    def _builds(self, ids: list[str], batch: Batch) -> dict[str, Any]:
        """The answers of builds `ids` (read once a sync; a build that answers 404 names
        nothing), new ones kept as raw `builds` rows in `batch`."""
        found = {}
        for ident in ids:
            if not ident.isdigit():
                continue
            with self.builds_lock:
                known = ident in self.builds
                answer = self.builds.get(ident)
            if not known:
                try:
                    answer = self.get(f"/builds/{ident}")
                except TrackerError as exc:
                    if exc.status != 404:
                        raise
                    answer = None
                if isinstance(answer, dict) and self.source.api == "v2":
                    answer = answer.get("build", answer)
                with self.builds_lock:
                    self.builds[ident] = answer
                if answer is not None:
                    batch.raws.append(Raw("builds", ident, answer))
            if answer is not None:
                found[ident] = answer
        return found

    def _rows(
        self, product: Product, kind: str, payload: Any, releases: list[Any], batch: Batch
    ) -> None:
        assert self.writer is not None
        module = payload.get("module") if isinstance(payload, dict) else None
        module_name = payload.get("moduleTitle") if isinstance(payload, dict) else None
        values = {
            "product": {product.id, product.name},
            "module": {str(module)} | ({str(module_name)} if module_name else set()),
        }
        service, raw = map_service(self.source.services, values)
        s = self.source
        if kind == "bug" and norm.is_incident(
            payload, s.incident_types, s.incident_severity, s.incident_modules, module_name
        ):
            builds = self._builds(norm.opened_builds(payload), batch)
            incident = norm.normalize_incident(
                payload, releases, self.tz, self.web, self.source.release_tags, builds
            )
            self.writer.batch(incidents=[norm.with_service(incident, service, raw)], batch=batch)
        else:
            item = norm.normalize_work_item(kind, payload, self.tz, self.web)
            self.writer.batch(items=[norm.with_service(item, service, raw)], batch=batch)
