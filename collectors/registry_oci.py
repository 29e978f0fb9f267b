"""OCI distribution API reading for the registry collector (see collectors/registry.py for the
decisions)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import httpx

from collectors import registry_normalize as norm
from collectors.payload import RejectedPayload
from collectors.registry_types import CodePaths
from collectors.sync import Batch, SyncRun
from warehouse.raw import Raw
from warehouse.schema import Image, ImageTag

if TYPE_CHECKING:
    from collectors.registry import RegistryCollector

HEADERS = {"Accept": norm.ACCEPT}


class OCIReader:
    stream = "tags"

    def __init__(self, collector: RegistryCollector, run: SyncRun) -> None:
        self.c, self.run = collector, run
        self.sources = CodePaths()

    @staticmethod
    def name(partition: str) -> str:
        return partition

    @staticmethod
    def group(partition: str) -> str:
        return partition

    def discover(self) -> list[str]:
        c = self.c
        before = c.thread_requests()
        c.request("GET", "/v2/")
        prefixes = [p.strip("/") for p in c.source.projects]
        names: list[str] = []
        for response in c.pages("/v2/_catalog", {"n": c.source.per_page}):
            for name in c.json(response, dict).get("repositories") or []:
                if not prefixes or any(name == p or name.startswith(p + "/") for p in prefixes):
                    names.append(str(name))
        self.sources = c.sources()
        self.run.count("catalog", requests=c.thread_requests() - before)
        return names

    def _manifest(self, name: str, reference: str, head: bool = False) -> httpx.Response:
        method = "HEAD" if head else "GET"
        return self.c.request(method, f"/v2/{name}/manifests/{reference}", headers=HEADERS)

    def sync(self, name: str) -> None:
        c, run = self.c, self.run
        before = c.thread_requests()
        repository = f"{c.host}/{name}"
        known = c.known(repository)
        tags: list[str] = []
        for response in c.pages(f"/v2/{name}/tags/list", {"n": c.source.per_page}):
            tags += [str(t) for t in c.json(response, dict).get("tags") or []]
        batch = Batch()
        batch.raws.append(Raw("tags", name, {"name": name, "tags": tags}))
        bodies: dict[str, tuple[Any, str | None]] = {}  # digest -> (manifest, media type)
        pointing: dict[str, str] = {}  # tag -> digest now
        for tag in tags:
            previous = known.tags.get(tag)
            if previous and not c.full and not c.mutable(tag):
                pointing[tag] = previous[0]
                continue
            response, digest = self._tag(name, tag, head=previous is not None)
            media_type = response.headers.get("Content-Type", "").split(";")[0] or None
            pointing[tag] = digest
            if response.request.method == "GET" and digest not in bodies:
                bodies[digest] = (_json(response), media_type)
            batch.raws.append(
                Raw(
                    "tag_digests",
                    f"{name}:{tag}",
                    {"tag": tag, "digest": digest, "type": media_type},
                )
            )
        images = self._images(name, repository, pointing, known, bodies, batch)
        rows, current = [], []
        for tag, digest in pointing.items():
            previous = known.tags.get(tag)
            if previous and previous[0] == digest:
                current.append((tag, digest, previous[1]))
            else:
                rows.append(norm.tag_row(repository, tag, digest, run.started_at, run.started_at))
        batch.add(Image, images)
        batch.add(ImageTag, rows)
        requests = c.thread_requests() - before
        touch = c.touch(run, repository, current)
        save = run.save_cursor("tags", name, None, requests)

        def after(conn: Any) -> None:
            touch(conn)
            save(conn)

        run.write("tags", batch, after=after)
        run.count("tags", requests=requests, partitions=1)

    def _tag(self, name: str, tag: str, head: bool) -> tuple[httpx.Response, str]:
        """The manifest response for a tag and the digest it points at: `Docker-Content-Digest`,
        else the sha256 of the manifest's bytes (a HEAD without the header is repeated as GET)."""
        response = self._manifest(name, tag, head=head)
        digest = response.headers.get("Docker-Content-Digest", "")
        if not digest and head:
            response = self._manifest(name, tag)
            digest = response.headers.get("Docker-Content-Digest", "")
        if not digest:
            digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        return response, digest

    def _images(
        self,
        name: str,
        repository: str,
        pointing: dict[str, str],
        known: Any,
        bodies: dict[str, tuple[Any, str | None]],
        batch: Batch,
    ) -> list[dict[str, Any]]:
        """Image rows of the digests tags point at that the warehouse does not hold yet."""
        rows: list[dict[str, Any]] = []
        sources = self.sources.get(repository)
        for digest in sorted(set(pointing.values())):
            if digest in known.images and not self.c.full:
                continue
            if digest in bodies:
                manifest, media_type = bodies[digest]
            else:
                response = self._manifest(name, digest)
                manifest = _json(response)
                media_type = response.headers.get("Content-Type", "").split(";")[0] or None
            payload: dict[str, Any] = {"manifest": manifest, "media_type": media_type}
            try:
                config = self._config(name, manifest, payload)
                rows += norm.normalize_oci_image(
                    repository, digest, media_type, manifest, config=config, sources=sources
                )
            except RejectedPayload as exc:
                batch.raws.append(Raw("manifests", f"{name}@{digest}", payload, error=str(exc)))
                batch.rejected += 1
                continue
            batch.raws.append(Raw("manifests", f"{name}@{digest}", payload))
        return rows

    def _config(self, name: str, manifest: Any, payload: dict[str, Any]) -> Any:
        """The config blob of an image manifest, or of one platform manifest of an index."""
        if not isinstance(manifest, dict):
            raise RejectedPayload(f"oci manifest: manifest is not an object: {manifest!r:.80}")
        if manifest.get("manifests") is not None:
            child = norm.index_child(manifest)
            if child is None:
                return None
            manifest = _json(self._manifest(name, child))
            payload["platform_manifest"] = manifest
            if not isinstance(manifest, dict):
                return None
        digest = norm.config_digest(manifest)
        if digest is None:
            return None
        config = _json(self.c.request("GET", f"/v2/{name}/blobs/{digest}"))
        payload["config"] = norm.scrubbed_config(config)
        return config

    def finish(self, failed: set[str]) -> None:
        return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"_unparsed": response.text[:2000]}


__all__ = ["OCIReader"]
