"""What the registry holds for an image beyond its digest: multi-arch indexes with their platform
manifests, config blobs and their labels. Derived deterministically from the generated images, so
the registry and Kubernetes simulators agree without storing anything more in the organisation.

An image of a multi-arch service is an OCI image index (`Image.digest` is the index digest, the one
tags point to and deployments name) referencing one manifest per platform. Under containerd a Pod's
`imageID` names the index digest; Docker's `docker-pullable://` form names the digest it pulled by,
which for a digest reference is the index too, while some runtimes report the platform manifest.
"""

from __future__ import annotations

import hashlib

from sandbox.model import Image, Service

PLATFORMS = ("linux/amd64", "linux/arm64")
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
BASE_IMAGE_SOURCE = "https://gitlab.sandbox.test/platform/base-images"


def _hash(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def is_multiarch(service: Service) -> bool:
    """About a third of the services publish multi-arch images (an index per build)."""
    return int(_hash("multiarch", service.name)[:8], 16) % 3 == 0


def inherits_labels(service: Service) -> bool:
    """About one service in eleven sets no labels of its own: its images carry the base image's
    `org.opencontainers.image.revision` and `.source`, which name another repository's commit."""
    return int(_hash("inherited", service.name)[:8], 16) % 11 == 0


def platform_digests(service: Service, image: Image) -> dict[str, str]:
    """platform -> manifest digest of a multi-arch image; empty for a single-platform image."""
    if not is_multiarch(service):
        return {}
    return {p: "sha256:" + _hash("platform", image.digest, p) for p in PLATFORMS}


def config_digest(image: Image, platform: str = "") -> str:
    """The digest of the image config blob (what GitLab's registry API calls `revision`)."""
    return "sha256:" + _hash("config", image.digest, platform)


def source_url(service: Service) -> str:
    return f"https://gitlab.sandbox.test/{service.path}"


def labels(service: Service, image: Image) -> dict[str, str]:
    """The config's `Labels`: OCI annotations naming the source commit, repository and build time;
    inherited from the base image for the services that set none of their own."""
    created = image.pushed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if inherits_labels(service):
        return {
            "org.opencontainers.image.revision": _hash("base", service.team)[:40],
            "org.opencontainers.image.source": BASE_IMAGE_SOURCE,
            "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
        }
    return {
        "org.opencontainers.image.revision": image.revision,
        "org.opencontainers.image.source": source_url(service),
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.title": service.name,
    }


__all__ = [
    "BASE_IMAGE_SOURCE",
    "CONFIG_MEDIA_TYPE",
    "INDEX_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "PLATFORMS",
    "config_digest",
    "inherits_labels",
    "is_multiarch",
    "labels",
    "platform_digests",
    "source_url",
]
