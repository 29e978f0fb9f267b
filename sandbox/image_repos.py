"""Several image repositories per project (DESIGN.md section 9), applied to a generated service after
its history (`split_repositories`, a post-pass that draws no random numbers, so every random stream
and id stays as it was).

About two thirds of the GitLab-built services push their images to one repository under the
project's registry prefix (`<prefix>/app` or `<prefix>/api`) instead of the prefix itself. Of the
Jenkins-built services a third push to one (`<prefix>/api`) and a third to two: the app image (what
every deployment rolls out, its digest unchanged) to `<prefix>/app` and a worker image to
`<prefix>/worker`, built from the same commit by the same pipeline, pushed seconds later and tagged
alike (its own `latest` included); their deploy jobs name the app image's repository (IMAGE). Only
Jenkins-built services get two: GitLab's deployments name no image, so two repositories would leave
every deployment of a GitLab-built service without a knowable image, which the GitLab-only ground
truth (tests/test_analytics_truth.py) relies on. The choice is a hash of the service's name, so a
service keeps its layout whatever else the organisation holds; the salt is one under which the
`small` organisation shows every layout and `tiny`'s one service keeps its images at the prefix.

`ImageRepo` is one repository as the registries show it (GitLab's registry API, Harbor, the OCI
API): its path under the registry host, its id, images and tag history.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sandbox.model import Image, Service
from sandbox.pipelines import digest_of

SALT = "image-repos-49"
WORKER = "worker"
WORKER_PUSH = timedelta(seconds=30)  # the worker image is pushed by the same package job, after


def layout(service: Service) -> tuple[str, ...]:
    """The sub-repositories a service pushes to: () for the prefix itself, ("app",) or ("api",)
    for one, ("app", "worker") for two (Jenkins-built services only)."""
    h = int(hashlib.sha256(f"{SALT}:{service.name}".encode()).hexdigest()[:8], 16)
    if service.builder == "jenkins":
        return ((), ("api",), ("app", WORKER))[h % 3]
    return ((), ("app",), ("api",))[h % 3]


def split_repositories(service: Service) -> None:
    """Move the service's images to its layout's repositories, adding a worker image beside each
    app image when it has two (ground truth: deployments keep the app image's digest)."""
    subs = layout(service)
    if not subs:
        return
    main = f"{service.image_repository}/{subs[0]}"
    for image in service.images:
        image.repository = main
    if WORKER not in subs:
        return
    workers: dict[str, Image] = {}
    for image in list(service.images):
        worker = Image(
            digest_of(WORKER, image.digest),
            f"{service.image_repository}/{WORKER}",
            image.revision,
            image.pushed_at + WORKER_PUSH,
            image.pipeline_id,
            image.tag,
        )
        workers[image.digest] = worker
        service.images.append(worker)
    service.tag_history += [
        (tag, workers[digest].digest, at + WORKER_PUSH) for tag, digest, at in service.tag_history
    ]


def deployable(service: Service) -> list[Image]:
    """The images deployments roll out: those of the service's first (app) repository."""
    main = repositories(service)[0].location
    return [i for i in service.images if i.repository == main]


@dataclass(frozen=True, eq=False)
class ImageRepo:
    """One registry repository of a service."""

    service: Service
    name: str  # "" (the project's prefix itself) or the sub-repository's name
    index: int  # its position among the service's repositories

    @property
    def path(self) -> str:
        """The repository's path under the registry host (GitLab's `path`, Harbor's name)."""
        return f"{self.service.path}/{self.name}" if self.name else self.service.path

    @property
    def location(self) -> str:
        """The name images are pulled by, `<host>/<path>`."""
        return f"{self.service.image_repository}/{self.name}".rstrip("/")

    @property
    def id(self) -> int:
        """Its registry id: the project's id for its first repository (as before repositories were
        split), an id no project has for the others."""
        return 1_000_000 * self.index + self.service.project_id

    @property
    def images(self) -> list[Image]:
        return [i for i in self.service.images if i.repository == self.location]

    @property
    def tag_history(self) -> list[tuple[str, str, datetime]]:
        """(tag, digest, at) of this repository's tag pushes, in generation order."""
        own = {i.digest for i in self.images}
        return [t for t in self.service.tag_history if t[1] in own]


def repositories(service: Service) -> list[ImageRepo]:
    """The service's image repositories, the app's first; the prefix itself before any push."""
    subs = layout(service) or ("",)
    return [ImageRepo(service, name, i) for i, name in enumerate(subs)]


def repository_of(service: Service, digest: str) -> str:
    """The repository (pulled-by name) holding `digest`, else the app's."""
    image = next((i for i in service.images if i.digest == digest), None)
    return image.repository if image else repositories(service)[0].location


__all__ = [
    "ImageRepo",
    "deployable",
    "layout",
    "repositories",
    "repository_of",
    "split_repositories",
]
