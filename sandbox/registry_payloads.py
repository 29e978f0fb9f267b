"""What the container registry holds for a generated organisation as of an instant, and how Harbor
v2.0 and the OCI distribution API show it (sandbox/registry_api.py serves these).

A service's images live in the repositories of its layout (`sandbox.image_repos`): the GitLab
project path (`acme/<team>/<service>`, pulled as `registry.sandbox.test/acme/<team>/<service>`) or
repositories under it (`acme/<team>/<service>/app`, `.../worker`); in Harbor that is project `acme`,
repository `acme/<team>/<service>[/<sub>]`. A tag shows the digest it pointed to at the
instant (`Service.tag_history`, the same history GitLab's registry API reads); the old digest of a
moved tag (`latest`) stays as an untagged artifact. Multi-arch images, platform digests, config
digests and labels come from `sandbox/oci.py`. The ground truth of what a registry collector should
store is `expected_images` and `expected_tags`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox.gitlab_payloads import current_tags
from sandbox.image_repos import ImageRepo, repositories
from sandbox.model import Image, Organisation, Service
from sandbox.oci import (
    CONFIG_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    config_digest,
    inherits_labels,
    is_multiarch,
    labels,
    platform_digests,
)
from sandbox.server import json_time

HOST = "registry.sandbox.test"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ROBOT = "robot$ci-pusher"  # who pushes, in the audit log


def _number(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


@dataclass(frozen=True, slots=True)
class Blob:
    """A manifest, an index or a config blob the registry stores under `digest`."""

    service: Service
    repo: ImageRepo  # the repository holding it
    image: Image
    platform: str  # "" for the image itself (its index or only manifest), os/arch for a child
    kind: str  # index | manifest | config


class RegistryView:
    """The registry's contents at `at`: repositories, tags, artifacts and blobs, cached per instant."""

    def __init__(self, org: Organisation, at: datetime | None = None) -> None:
        self.org = org
        self.at = at or org.now
        self.by_name = {r.path: r for s in org.services for r in repositories(s)}
        self.blobs: dict[str, Blob] = {}
        self.artifact_ids: dict[str, int] = {}
        self.events: list[tuple[datetime, ImageRepo, str, str]] = []  # (at, repo, tag, digest)
        for r in self.by_name.values():
            for image in r.images:
                self._index(r, image)
            self.events += [(at_, r, tag, digest) for tag, digest, at_ in r.tag_history]
        self.events.sort(key=lambda e: (e[0], e[1].path, e[2]))
        self.event_ids = {id(e): i + 1 for i, e in enumerate(self.events)}
        self._tags: dict[str, dict[str, tuple[str, datetime]]] = {}
        self._images: dict[str, list[Image]] = {}

    def _index(self, r: ImageRepo, image: Image) -> None:
        s = r.service
        platforms = platform_digests(s, image)
        self.blobs[image.digest] = Blob(s, r, image, "", "index" if platforms else "manifest")
        self.artifact_ids[image.digest] = len(self.artifact_ids) + 1
        self.blobs[config_digest(image)] = Blob(s, r, image, "", "config")
        for platform, digest in platforms.items():
            self.blobs[digest] = Blob(s, r, image, platform, "manifest")
            self.artifact_ids[digest] = len(self.artifact_ids) + 1
            self.blobs[config_digest(image, platform)] = Blob(s, r, image, platform, "config")

    def advance(self, at: datetime) -> None:
        self.at = at
        self._tags.clear()
        self._images.clear()

    # -- what exists at `at` ---------------------------------------------------------------------

    def services(self) -> list[ImageRepo]:
        """Repositories with at least one image pushed, by name."""
        return sorted((r for r in self.by_name.values() if self.images(r)), key=lambda r: r.path)

    def images(self, s: ImageRepo) -> list[Image]:
        """The repository's pushed images, newest first."""
        if s.path not in self._images:
            pushed = [i for i in s.images if i.pushed_at <= self.at]
            self._images[s.path] = sorted(pushed, key=lambda i: i.pushed_at, reverse=True)
        return self._images[s.path]

    def tags(self, s: ImageRepo) -> dict[str, tuple[str, datetime]]:
        """tag -> (digest, when the tag was pushed to point there)."""
        if s.path not in self._tags:
            self._tags[s.path] = current_tags(s, self.at)
        return self._tags[s.path]

    def blob(self, digest: str) -> Blob | None:
        """The manifest, index or config stored under `digest` (None before its push)."""
        blob = self.blobs.get(digest)
        return blob if blob is not None and blob.image.pushed_at <= self.at else None

    def updated_at(self, s: ImageRepo) -> datetime:
        return max(at for _, _, at in s.tag_history if at <= self.at)


# -- OCI distribution payloads -----------------------------------------------------------------


def _os_arch(platform: str) -> dict[str, str]:
    os_, arch, *variant = platform.split("/")
    return {"architecture": arch, "os": os_, **({"variant": variant[0]} if variant else {})}


def manifest(blob: Blob) -> tuple[dict[str, Any], str]:
    """(body, media type) of the index or image manifest `blob`."""
    s, image = blob.service, blob.image
    if blob.kind == "index":
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": digest,
                    "size": 1000 + _number(digest) % 500,
                    "platform": _os_arch(platform),
                }
                for platform, digest in platform_digests(s, image).items()
            ],
        }
        return body, INDEX_MEDIA_TYPE
    config = config_digest(image, blob.platform)
    body = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config, "size": 1400},
        "layers": [
            {
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": "sha256:" + hashlib.sha256(f"{config}:{n}".encode()).hexdigest(),
                "size": 1_000_000 + _number(config, n) % 30_000_000,
            }
            for n in range(3)
        ],
    }
    return body, MANIFEST_MEDIA_TYPE


def config(blob: Blob) -> dict[str, Any]:
    """The image config blob: platform, creation time and the labels."""
    platform = blob.platform or "linux/amd64"
    return {
        **_os_arch(platform),
        "created": json_time(blob.image.pushed_at),
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": [f"/usr/local/bin/{blob.service.name}"],
            "Labels": labels(blob.service, blob.image),
        },
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created": json_time(blob.image.pushed_at), "created_by": "buildkit"}],
    }


# -- Harbor v2.0 payloads ----------------------------------------------------------------------


def harbor_project(view: RegistryView, name: str, project_id: int) -> dict[str, Any]:
    services = [s for s in view.services() if s.path.split("/", 1)[0] == name]
    first = min((i.pushed_at for s in services for i in s.images), default=view.org.start)
    return {
        "project_id": project_id,
        "name": name,
        "owner_id": 1,
        "owner_name": "admin",
        "registry_id": None,
        "creation_time": json_time(min(first, view.org.start)),
        "update_time": json_time(view.org.start),
        "deleted": False,
        "togglable": True,
        "current_user_role_id": 3,
        "current_user_role_ids": [3],
        "repo_count": len(services),
        "chart_count": 0,
        "metadata": {"public": "false", "auto_scan": "false", "severity": "low"},
        "cve_allowlist": {"id": project_id, "project_id": project_id, "items": []},
    }


def harbor_repository(view: RegistryView, s: ImageRepo, project_id: int) -> dict[str, Any]:
    images = view.images(s)
    return {
        "id": s.id,
        "project_id": project_id,
        "name": s.path,
        "description": "",
        "artifact_count": len(images),
        "pull_count": 3 * len(images),
        "creation_time": json_time(images[-1].pushed_at),
        "update_time": json_time(view.updated_at(s)),
    }


def harbor_artifact(
    view: RegistryView, blob: Blob, project_id: int, with_tag: bool = True
) -> dict[str, Any]:
    """An artifact as the artifacts listing shows it: an index lists its platform manifests in
    `references` and has no config of its own; an image manifest carries its config's labels in
    `extra_attrs.config`."""
    s, image = blob.service, blob.image
    digest = image.digest if not blob.platform else platform_digests(s, image)[blob.platform]
    artifact_id = view.artifact_ids[digest]
    project, name = blob.repo.path.split("/", 1)
    _, media_type = manifest(blob)
    artifact: dict[str, Any] = {
        "id": artifact_id,
        "type": "IMAGE",
        "media_type": CONFIG_MEDIA_TYPE if blob.kind == "manifest" else media_type,
        "manifest_media_type": media_type,
        "project_id": project_id,
        "repository_id": blob.repo.id,
        "digest": digest,
        "size": 48_000_000 + image.pipeline_id % 1000,
        "icon": "sha256:0048162a053eef4d4ce3fe7518615bef084403614f8bca43b40ae2e762e11e06",
        "push_time": json_time(image.pushed_at),
        "pull_time": json_time(image.pushed_at),
        "annotations": None,
        "labels": None,
        "references": None,
        "tags": None,
        "extra_attrs": {},
        "addition_links": {
            "build_history": {
                "absolute": False,
                "href": f"/api/v2.0/projects/{project}/repositories/{_twice(name)}"
                f"/artifacts/{digest}/additions/build_history",
            }
        },
        "accessories": None,
    }
    if blob.kind == "index":
        artifact["references"] = [
            {
                "parent_id": artifact_id,
                "child_id": view.artifact_ids[child],
                "child_digest": child,
                "platform": _os_arch(platform),
                "annotations": None,
                "urls": None,
            }
            for platform, child in platform_digests(s, image).items()
        ]
    else:
        cfg = config(blob)
        artifact["extra_attrs"] = {
            "architecture": cfg["architecture"],
            "os": cfg["os"],
            "author": "",
            "created": cfg["created"],
            "config": cfg["config"],
        }
    if with_tag and not blob.platform:
        artifact["tags"] = [
            {
                "id": _number("tag", digest, tag),
                "repository_id": blob.repo.id,
                "artifact_id": artifact_id,
                "name": tag,
                "push_time": json_time(pushed),
                "pull_time": json_time(pushed),
                "immutable": False,
                "signed": False,
            }
            for tag, (tagged, pushed) in sorted(view.tags(blob.repo).items())
            if tagged == digest
        ] or None
    return artifact


def _twice(name: str) -> str:
    return name.replace("/", "%252F")


def audit_log(view: RegistryView, event: tuple[datetime, ImageRepo, str, str]) -> dict[str, Any]:
    """The audit log entry of a push: Harbor records `create` of `<repository>:<tag>` (no digest)."""
    at, s, tag, _ = event
    return {
        "id": view.event_ids[id(event)],
        "username": ROBOT,
        "resource": f"{s.path}:{tag}",
        "resource_type": "artifact",
        "operation": "create",
        "op_time": json_time(at),
    }


# -- ground truth -------------------------------------------------------------------------------


def expected_images(org: Organisation, at: datetime | None = None) -> dict[str, dict[str, Any]]:
    """digest -> the image row a registry collector should store (every image pushed by `at`)."""
    at = at or org.now
    rows: dict[str, dict[str, Any]] = {}
    for s in org.services:
        for image in s.images:
            if image.pushed_at > at:
                continue
            found = labels(s, image)
            trusted = not inherits_labels(s)
            base = {
                "repository": image.repository,
                "pushed_at": image.pushed_at,
                "revision": image.revision if trusted else None,
                "revision_origin": "label" if trusted else None,
                "source_repository": found["org.opencontainers.image.source"],
            }
            platforms = platform_digests(s, image)
            kind = INDEX_MEDIA_TYPE if is_multiarch(s) else MANIFEST_MEDIA_TYPE
            rows[image.digest] = {
                **base,
                "media_type": kind,
                "index_digest": None,
                "platform": None,
            }
            for platform, digest in platforms.items():
                rows[digest] = {
                    **base,
                    "media_type": MANIFEST_MEDIA_TYPE,
                    "index_digest": image.digest,
                    "platform": platform,
                }
    return rows


def expected_tags(
    org: Organisation, at: datetime | None = None
) -> set[tuple[str, str, str, datetime]]:
    """(repository, tag, digest, pushed at) of every tag push by `at`: the full tag history."""
    at = at or org.now
    return {
        (r.location, tag, digest, pushed)
        for s in org.services
        for r in repositories(s)
        for tag, digest, pushed in r.tag_history
        if pushed <= at
    }


def current(org: Organisation, at: datetime | None = None) -> set[tuple[str, str, str]]:
    """(repository, tag, digest) of the tags as they are at `at`."""
    at = at or org.now
    return {
        (r.location, tag, digest)
        for s in org.services
        for r in repositories(s)
        for tag, (digest, _) in current_tags(r, at).items()
    }


__all__ = [
    "HOST",
    "Blob",
    "RegistryView",
    "audit_log",
    "config",
    "current",
    "expected_images",
    "expected_tags",
    "harbor_artifact",
    "harbor_project",
    "harbor_repository",
    "manifest",
]
