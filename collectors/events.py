"""Pushed events (webhooks, CDEvents) into the warehouse: one write path for every receiver.

Receivers do not fetch, they are sent payloads, one at a time and out of order. A pure mapping
(`collectors.webhooks`, `collectors.cdevents`) turns each payload into an `Event`: the raw payload
with its stream and external id, and the fact rows it yields. Rows name their dimensions (source,
repository, service, environment) by *reference* (`SourceRef`, `RepoRef`, `ServiceRef`,
`EnvironmentRef`), since a pure function cannot know their ids; `EventWriter.write` resolves them
(ensuring the dimension rows, with an in-process cache), stores the raw payloads and upserts the
rows, all in one transaction.

Decisions:
- A payload the mapping rejects is not stored here: the caller answers with the reason (HTTP 422,
  an import's rejected line) and counts it. Accepted payloads are kept verbatim in `raw_payload`;
  replaying one changes nothing (its natural key is the same and the upserts find nothing to do).
- A row leaves out what its payload cannot know, so a webhook never erases what a poll filled.
- `Fact.mode` `insert` rows are written only when their natural key is new (first-seen values: an
  incident resolved before it was reported opens at its resolution until the report arrives);
  `update` rows only change an existing row (a partial row cannot be upserted: the database checks
  NOT NULL columns before it finds the conflict).
- A deployment that names an image digest and no commit takes the commit the warehouse knows for
  that image (`image.revision`), so lead time and rollbacks by ancestry work for pushed events.
- The dimension cache holds ids only after the transaction that created them committed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from sqlalchemy import Connection, Engine, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from collectors.refs import Ref, Refs, SourceRef
from config.settings import PROMOTION_PATH, Settings, TeamSettings, owning_team
from warehouse.raw import Raw, store_raw
from warehouse.schema import Base, Deployment, Image, table_of
from warehouse.upsert import natural_key_columns, upsert
from warehouse.vocabulary import DEFAULT_ALIASES, DEFAULT_REGIONS


@dataclass
class Fact:
    """One row for `table`; values may be references, resolved to ids when written. `mode`:
    `upsert` (insert or update), `insert` (only when the natural key is new: first-seen values),
    `update` (only an existing row: a partial row without the columns an insert needs)."""

    table: type[Base]
    row: dict[str, Any]
    mode: Literal["upsert", "insert", "update"] = "upsert"


@dataclass
class Event:
    """One accepted payload: where its raw form is kept, and what it yields."""

    stream: str
    external_id: str
    payload: Any
    facts: list[Fact] = field(default_factory=list)
    dimensions: list[Ref] = field(default_factory=list)  # rows to ensure even without facts


@dataclass
class WriteResult:
    """What one `write` did: payloads new or changed, replays, and rows written per table."""

    received: int = 0
    stored: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.received - self.stored

    def changed(self, *tables: type[Base]) -> bool:
        """Whether any row of `tables` was inserted or changed."""
        return any(self.rows.get(table_of(t).name, 0) for t in tables)

    def as_json(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rows": dict(sorted(self.rows.items())),
        }


# --- image references -------------------------------------------------------------------------

_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_BARE_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    """An image reference as a source wrote it: digest when it names one, repository when known."""

    digest: str | None
    repository: str | None
    reference: str | None  # `repository@digest` or `repository:tag`


def parse_image(value: str | None) -> ImageRef:
    """Read a container image reference: a purl `pkg:oci/name@sha256%3A…?repository_url=…`,
    `repo@sha256:…`, `repo:tag`, `sha256:…` or a bare sha256. Anything else (a golang purl, a
    file name) is not an image: every field None."""
    if not value:
        return ImageRef(None, None, None)
    if value.startswith("pkg:"):
        return _oci_purl(value)
    if "@" in value:
        repository, _, digest = value.rpartition("@")
        if _DIGEST.match(digest) and repository:
            return ImageRef(digest, repository, f"{repository}@{digest}")
        return ImageRef(None, None, None)
    if _DIGEST.match(value):
        return ImageRef(value, None, None)
    if _BARE_SHA256.match(value):
        return ImageRef(f"sha256:{value}", None, None)
    repository, _, tag = value.rpartition(":")
    if repository and tag and "/" not in tag and " " not in value:
        return ImageRef(None, repository, value)
    return ImageRef(None, None, None)


def _oci_purl(value: str) -> ImageRef:
    """purl spec: `pkg:oci/<name>@<digest, %-encoded>?repository_url=<registry/repo>&tag=<tag>`."""
    if not value.startswith("pkg:oci/"):
        return ImageRef(None, None, None)
    body, _, query = value[len("pkg:oci/") :].partition("?")
    name, _, version = body.partition("@")
    qualifiers = {k: v[-1] for k, v in parse_qs(query).items()}
    repository = qualifiers.get("repository_url") or unquote(name) or None
    digest = unquote(version) if version else None
    if digest is None or not _DIGEST.match(digest):
        tag = qualifiers.get("tag")
        reference = f"{repository}:{tag}" if repository and tag else None
        return ImageRef(None, repository, reference)
    return ImageRef(digest, repository, f"{repository}@{digest}" if repository else None)


# --- the writer -------------------------------------------------------------------------------


class EventWriter:
    """Writes events into one warehouse. Thread-safe; keep one per process (it caches ids)."""

    def __init__(
        self,
        engine: Engine,
        *,
        teams: Sequence[TeamSettings] = (),
        aliases: Mapping[str, Sequence[str]] = DEFAULT_ALIASES,
        regions: str = DEFAULT_REGIONS,
        promotion_path: Sequence[str] = PROMOTION_PATH,
    ) -> None:
        self.engine = engine
        teams = list(teams)  # `[[teams]]`, in config order
        self.refs = Refs(
            team_of=lambda service: owning_team(teams, service),
            aliases=aliases,
            regions=regions,
            promotion_path=promotion_path,
        )
        # SQLite has one writer: serialise our own writes (derive takes this lock too)
        self.lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the single-writer lock where the warehouse has one (SQLite)."""
        if self.lock is None:
            yield
            return
        with self.lock:
            yield

    def write(self, raw_source: SourceRef, events: Sequence[Event]) -> WriteResult:
        """Store the raw payloads under `raw_source` and every fact, in one transaction."""
        result = WriteResult(received=len(events))
        if not events:
            return result
        pending: dict[Ref, int] = {}
        with self.writing(), self.engine.begin() as conn:
            source_id = self.refs.id(conn, raw_source, pending)
            raws = [Raw(e.stream, e.external_id, e.payload) for e in events]
            result.stored = store_raw(conn, source_id, raws)
            for event in events:
                for ref in event.dimensions:
                    self.refs.id(conn, ref, pending)
            for table, mode, rows in _grouped(e.facts for e in events):
                resolved = [self.refs.resolve(conn, row, pending) for row in rows]
                if table is Deployment:
                    _commits_of_images(conn, resolved)
                if mode == "insert":
                    written = insert_missing(conn, table, resolved)
                elif mode == "update":
                    written = update_existing(conn, table, resolved)
                else:  # runs of one column set, so a later row of the same key wins
                    written = sum(upsert(conn, table, run) for run in _runs(resolved))
                name = table_of(table).name
                result.rows[name] = result.rows.get(name, 0) + written
        self.refs.remember(pending)
        return result


_MODES = ("insert", "upsert", "update")  # the order a table's rows are written in


def _grouped(facts_per_event: Any) -> list[tuple[type[Base], str, list[dict[str, Any]]]]:
    """Facts grouped by table (first-seen order) and mode: inserts, then upserts, then updates."""
    order: list[type[Base]] = []
    groups: dict[tuple[type[Base], str], list[dict[str, Any]]] = {}
    for facts in facts_per_event:
        for fact in facts:
            if fact.table not in order:
                order.append(fact.table)
            groups.setdefault((fact.table, fact.mode), []).append(fact.row)
    return [
        (table, mode, groups[(table, mode)])
        for table in order
        for mode in _MODES
        if (table, mode) in groups
    ]


def _runs(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows with the same columns (`upsert` groups by columns, which would reorder)."""
    run: list[dict[str, Any]] = []
    for row in rows:
        if run and row.keys() != run[-1].keys():
            yield run
            run = []
        run.append(row)
    if run:
        yield run


def insert_missing(conn: Connection, table: type[Base], rows: list[dict[str, Any]]) -> int:
    """Insert rows whose natural key is new and leave existing rows alone; returns rows inserted."""
    target = table_of(table)
    key = natural_key_columns(target)
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    written = 0
    for row in rows:
        stmt = dialect.insert(target).values(row).on_conflict_do_nothing(index_elements=list(key))
        written += max(conn.execute(stmt).rowcount, 0)
    return written


def update_existing(conn: Connection, table: type[Base], rows: list[dict[str, Any]]) -> int:
    """Update rows found by their natural key (rows not there are skipped); returns rows changed."""
    target = table_of(table)
    key = natural_key_columns(target)
    written = 0
    for row in rows:
        values = {k: v for k, v in row.items() if k not in key}
        changed = or_(*(target.c[k].is_distinct_from(v) for k, v in values.items()))
        where = [*(target.c[k] == row[k] for k in key), changed]
        written += max(conn.execute(update(target).where(*where).values(values)).rowcount, 0)
    return written


_REVISION = select(Image.revision).where(Image.digest == bindparam("digest"))


def _commits_of_images(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Give deployments that name a digest but no commit the commit their image was built from."""
    digests = {r["image_digest"] for r in rows if r.get("image_digest") and "sha" not in r}
    if not digests:
        return
    revisions: dict[str, str] = {}
    for digest in sorted(digests):  # one indexed lookup each: cheaper than an IN list for a few
        revision = conn.execute(_REVISION, {"digest": digest}).scalar()
        if revision:
            revisions[digest] = revision
    for row in rows:
        revision = revisions.get(str(row.get("image_digest")))
        if revision and "sha" not in row:
            row["sha"] = revision


def writer_for(engine: Engine, settings: Settings | None) -> EventWriter:
    """An event writer with the configuration's teams and environment aliases."""
    if settings is None:
        return EventWriter(engine)
    return EventWriter(
        engine,
        teams=settings.teams,
        aliases=settings.environments.aliases,
        regions=settings.environments.regions,
        promotion_path=settings.environments.promotion_path,
    )


__all__ = [
    "Event",
    "EventWriter",
    "Fact",
    "ImageRef",
    "WriteResult",
    "insert_missing",
    "parse_image",
    "update_existing",
    "writer_for",
]
