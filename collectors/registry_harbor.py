"""Harbor v2.0 reading for the registry collector (see collectors/registry.py for the decisions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import select

from collectors import registry_normalize as norm
from collectors.payload import RejectedPayload, external_id_of, parse_time
from collectors.registry_types import CodePaths, RegistryError
from collectors.sync import Batch, SyncRun
from warehouse.raw import Raw
from warehouse.schema import Image, ImageTag, SyncState

if TYPE_CHECKING:
    from collectors.registry import RegistryCollector

API = "/api/v2.0"


@dataclass
class HarborRepo:
    project: str
    payload: dict[str, Any]
    pushes: list[tuple[str, datetime]] = field(default_factory=list)  # (tag, op_time)

    @property
    def name(self) -> str:
        return str(self.payload["name"])

    @property
    def path(self) -> str:
        """The repository name below the project, encoded twice as Harbor wants it in a path."""
        short = self.name.removeprefix(self.project + "/")
        return quote(quote(short, safe=""), safe="")


class HarborReader:
    stream = "artifacts"

    def __init__(self, collector: RegistryCollector, run: SyncRun) -> None:
        self.c, self.run = collector, run
        self.page = min(collector.source.per_page, 100)
        self.audit_cursors: dict[str, str] = {}
        self.sources = CodePaths()

    @staticmethod
    def name(partition: HarborRepo) -> str:
        return partition.name

    @staticmethod
    def group(partition: HarborRepo) -> str:
        return partition.project

    def _cursors(self) -> dict[tuple[str, str], str | None]:
        with self.c.engine.connect() as conn:
            rows = conn.execute(
                select(SyncState.stream, SyncState.partition, SyncState.cursor).where(
                    SyncState.source_id == self.run.source_id,
                    SyncState.stream.in_(("artifacts", "audit_log")),
                )
            )
            return {(s, p): c for s, p, c in rows}

    def discover(self) -> list[HarborRepo]:
        c, run = self.c, self.run
        before = c.thread_requests()
        projects = list(c.source.projects)
        if not projects:
            for response in c.pages(f"{API}/projects", {"page_size": self.page}):
                projects += [str(p["name"]) for p in c.json(response, list) if isinstance(p, dict)]
        cursors = {} if c.full else self._cursors()
        self.sources = c.sources()
        found: list[HarborRepo] = []
        batch = Batch()
        for project in projects:
            pushes = self._audit(project, cursors.get(("audit_log", project)), batch)
            for response in c.pages(
                f"{API}/projects/{quote(project, safe='')}/repositories", {"page_size": self.page}
            ):
                for payload in c.json(response, list):
                    if not isinstance(payload, dict) or not payload.get("name"):
                        raise RegistryError(
                            f"{c.source.name}: repository without a name in "
                            f"{c.where(response)}: {payload!r:.80}"
                        )
                    repo = HarborRepo(project, payload, pushes.get(str(payload.get("name")), []))
                    batch.raws.append(Raw("repositories", repo.name, payload))
                    if repo.pushes or cursors.get(("artifacts", repo.name)) != _stamp(payload):
                        found.append(repo)
        run.write("repositories", batch)
        run.count("repositories", requests=c.thread_requests() - before)
        return found

    def _audit(self, project: str, cursor: str | None, batch: Batch) -> dict[str, list]:
        """Tag pushes since the cursor (less the overlap), by repository name."""
        overlap = self.c.settings.sync.overlap
        since = parse_time(cursor, "cursor") if cursor else None
        until = self.run.started_at + timedelta(days=1)
        q = "operation=create,resource_type=artifact"
        if since is not None:
            q += f",op_time=[{_harbor_time(since - overlap)}~{_harbor_time(until)}]"
        pushes: dict[str, list[tuple[str, datetime]]] = {}
        newest = since
        url = f"{API}/projects/{quote(project, safe='')}/logs"
        for response in self.c.pages(url, {"q": q, "page_size": self.page}):
            for entry in self.c.json(response, list):
                ext = f"{project}:{external_id_of(entry)}"
                try:
                    parsed = norm.parse_audit_entry(entry)
                except RejectedPayload as exc:
                    batch.raws.append(Raw("audit_log", ext, entry, error=str(exc)))
                    batch.rejected += 1
                    continue
                batch.raws.append(Raw("audit_log", ext, entry))
                if parsed is None:
                    continue
                name, tag, at = parsed
                pushes.setdefault(name, []).append((tag, at))
                newest = at if newest is None or at > newest else newest
        if newest is not None:
            self.audit_cursors[project] = newest.isoformat()
        return pushes

    def sync(self, repo: HarborRepo) -> None:
        c, run = self.c, self.run
        before = c.thread_requests()
        repository = f"{c.host}/{repo.name}"
        known = c.known(repository)
        base = f"{API}/projects/{quote(repo.project, safe='')}/repositories/{repo.path}/artifacts"
        batch = Batch()
        images: list[dict[str, Any]] = []
        tags: dict[tuple[str, str, datetime], dict[str, Any]] = {}
        pushed: dict[str, datetime] = {}
        tagged: dict[tuple[str, str], datetime] = {}
        params = {"with_tag": "true", "with_label": "false", "page_size": self.page}
        sources = self.sources.get(repository)
        for response in c.pages(base, params):
            for artifact in c.json(response, list):
                digest = str(artifact.get("digest") or "") if isinstance(artifact, dict) else ""
                ext = f"{repo.name}@{digest or external_id_of(artifact)}"
                child = None
                references = artifact.get("references") if isinstance(artifact, dict) else None
                if references and (c.full or digest not in known.indexes):
                    child = self._child(base, references, repo, batch)
                try:
                    rows, tag_rows = norm.normalize_harbor_artifact(
                        artifact, repository, run.started_at, child=child, sources=sources
                    )
                except RejectedPayload as exc:
                    kept = norm.scrubbed_artifact(artifact)
                    batch.raws.append(Raw("artifacts", ext, kept, error=str(exc)))
                    batch.rejected += 1
                    continue
                batch.raws.append(Raw("artifacts", ext, norm.scrubbed_artifact(artifact)))
                images += rows
                pushed[digest] = rows[0]["pushed_at"]
                for row in tag_rows:
                    tags[(row["tag"], row["digest"], row["seen_at"])] = row
                    tagged[(row["tag"], row["digest"])] = row["seen_at"]
        for row in norm.history_rows(repo.pushes, pushed, tagged, repository, run.started_at):
            tags.setdefault((row["tag"], row["digest"], row["seen_at"]), row)
        batch.add(Image, images)
        batch.add(ImageTag, tags.values())
        current = [(t, d, s) for (t, d), s in tagged.items()]
        requests = c.thread_requests() - before
        save = run.save_cursor("artifacts", repo.name, _stamp(repo.payload), requests)
        touch = c.touch(run, repository, current)

        def after(conn: Any) -> None:
            touch(conn)
            save(conn)

        run.write("artifacts", batch, after=after)
        run.count("artifacts", requests=requests, partitions=1)

    def _child(self, base: str, references: Any, repo: HarborRepo, batch: Batch) -> Any:
        """One platform artifact of an index (linux/amd64 when there is one), for its labels."""
        digest = norm.preferred_platform(references, "child_digest")
        if not digest:
            return None
        response = self.c.request("GET", f"{base}/{digest}", params={"with_tag": "false"})
        child = self.c.json(response, dict)
        kept = norm.scrubbed_artifact(child)
        batch.raws.append(Raw("platform_artifacts", f"{repo.name}@{digest}", kept))
        return child

    def finish(self, failed: set[str]) -> None:
        """Save the audit log cursors of the projects whose repositories all synced."""
        for project, cursor in self.audit_cursors.items():
            if project not in failed:
                self.run.write(
                    "audit_log",
                    Batch(),
                    after=self.run.save_cursor("audit_log", project, cursor, 0),
                )


def _stamp(payload: dict[str, Any]) -> str:
    """The artifacts cursor of a repository: its `update_time` ("" when missing), saved and
    compared in this one form."""
    return str(payload.get("update_time") or "")


def _harbor_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


__all__ = ["HarborReader"]
