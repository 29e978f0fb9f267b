"""Pure normalisers of container registry payloads (Harbor v2.0 artifacts and audit logs, OCI
manifests, indexes and config blobs) into `image` and `image_tag` rows.

- A repository is stored as `<host>/<name>` (`registry.example.com/team/app`), the name
  deployments pull it by; `digest` is the manifest (or index) digest tags point to.
- A multi-arch image is one `image` row for the index (`media_type` an index type) and one per
  platform manifest with `index_digest` and `platform` (`os/arch[/variant]`).
- `revision` (with `revision_origin` "label") comes from the `org.opencontainers.image.revision`
  label only when the `org.opencontainers.image.source` label names this image's own source
  repository: its path equals the repository's path below the host or one the repository is
  under (GitLab names a project's images `<project path>/api`; at least two segments, a group is no
  code repository), or the path of the code repository of the service that owns this image
  repository (`sources`). A label inherited from a base image
  names the base image's repository and sets nothing; `source_repository` keeps what it said.
  Columns a payload cannot tell are left out of the row, so an upsert leaves them as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from collectors.payload import Fields, RejectedPayload, Row, rejects

DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
REVISION_LABEL = "org.opencontainers.image.revision"
SOURCE_LABEL = "org.opencontainers.image.source"
INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
ACCEPT = ", ".join(sorted(INDEX_TYPES | MANIFEST_TYPES))
AUDIT_TOLERANCE = timedelta(seconds=2)


# -- names and labels ----------------------------------------------------------------------------


def repository_path(repository: str) -> str:
    """`team/app` of `registry.example.com/team/app` (a first part with a dot, a colon or
    `localhost` is a host)."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return repository


def source_path(url: str | None) -> str | None:
    """The lower-cased repository path a source URL names: `https://host/a/b.git`,
    `git@host:a/b.git` and `ssh://git@host/a/b` all give `a/b`."""
    if not url:
        return None
    text = url.strip()
    if "://" in text:
        path = urlsplit(text).path
    elif re.match(r"^[\w.-]+@[\w.-]+:", text):
        path = text.split(":", 1)[1]
    else:
        path = text
    path = path.strip("/").removesuffix(".git").strip("/")
    return path.lower() or None


def label_evidence(
    labels: Mapping[str, Any] | None, repository: str, sources: Iterable[str] = ()
) -> Row:
    """`source_repository`, plus `revision` and `revision_origin` when the labels are the image's
    own (see the module docstring)."""
    labels = labels or {}
    source = labels.get(SOURCE_LABEL)
    source = source if isinstance(source, str) and source else None
    row: Row = {"source_repository": source}
    revision = labels.get(REVISION_LABEL)
    own = {*_enclosing(repository_path(repository).lower()), *(s.lower() for s in sources)}
    if (
        isinstance(revision, str)
        and COMMIT.fullmatch(revision.lower())
        and source_path(source) in own
    ):
        row["revision"] = revision.lower()
        row["revision_origin"] = "label"
    return row


def _enclosing(path: str) -> list[str]:
    """`path` and the paths it is under with at least two segments (`a/b/c`: `a/b/c`, `a/b`)."""
    parts = path.split("/")
    return [path] + ["/".join(parts[:n]) for n in range(2, len(parts))]


def platform_of(platform: Any) -> str | None:
    """`os/arch[/variant]` of an OCI or Harbor platform object."""
    if not isinstance(platform, Mapping):
        return None
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    if not all(isinstance(p, str) and p for p in parts[:2]):
        return None
    return "/".join(str(p) for p in parts if isinstance(p, str) and p)


def _digest(f: Fields, key: str) -> str:
    value = f.required(key)
    if not DIGEST.fullmatch(value):
        raise RejectedPayload(f"{f.name(key)} is not an algorithm:hex digest: {value!r}")
    return value


def _labels(config: Any, path: str) -> Mapping[str, Any]:
    """`config.Labels` of an image config (or Harbor's `extra_attrs`)."""
    if config is None:
        return {}
    labels = Fields(config, path).obj("config").raw("Labels")
    if labels is not None and not isinstance(labels, Mapping):
        raise RejectedPayload(f"{path}.config.Labels is not an object")
    return labels or {}


KEPT_CONFIG = ("architecture", "os", "variant", "created", "author")


def scrubbed_config(config: Any) -> Any:
    """An image config (or Harbor's `extra_attrs`) as kept in the raw payload store: its labels,
    platform and build time; never `Env`, `Cmd`, `history` (build arguments) or
    `container_config`, which can hold literal secrets. A malformed one is kept as it is."""
    if not isinstance(config, Mapping):
        return config
    out = {k: config[k] for k in KEPT_CONFIG if k in config}
    inner = config.get("config")
    if isinstance(inner, Mapping):
        out["config"] = {"Labels": inner["Labels"]} if "Labels" in inner else {}
    elif inner is not None:
        out["config"] = inner
    return out


def scrubbed_artifact(artifact: Any) -> Any:
    """A Harbor artifact with its `extra_attrs` scrubbed (`scrubbed_config`)."""
    if not isinstance(artifact, Mapping) or "extra_attrs" not in artifact:
        return artifact
    return {**artifact, "extra_attrs": scrubbed_config(artifact["extra_attrs"])}


def tag_row(repository: str, tag: str, digest: str, seen_at: datetime, now: datetime) -> Row:
    """One `image_tag` row: `tag` pointed at `digest` from `seen_at` (and still did at `now`)."""
    return {
        "repository": repository,
        "tag": tag,
        "digest": digest,
        "seen_at": seen_at,
        "last_seen_at": max(now, seen_at),
    }


# -- Harbor ----------------------------------------------------------------------------------------


@rejects("harbor artifact")
def normalize_harbor_artifact(
    artifact: Any,
    repository: str,
    now: datetime,
    *,
    child: Any = None,
    sources: Iterable[str] = (),
) -> tuple[list[Row], list[Row]]:
    """(image rows, image_tag rows) of one artifact of Harbor's artifacts listing.

    An index (`references`) has no config of its own: its labels are those of `child`, one of its
    platform artifacts read separately; without `child` the label columns are left out.
    """
    f = Fields(artifact)
    digest = _digest(f, "digest")
    media_type = f.string("manifest_media_type") or f.string("media_type")
    pushed_at = f.required_time("push_time")
    image: Row = {
        "digest": digest,
        "repository": repository,
        "media_type": media_type,
        "pushed_at": pushed_at,
    }
    rows = [image]
    references = f.objects("references")
    if references or media_type in INDEX_TYPES:
        evidence: Row = {}
        child_type = None
        if child is not None:
            c = Fields(child, "child")
            evidence = label_evidence(
                _labels(c.raw("extra_attrs"), "child.extra_attrs"), repository, sources
            )
            child_type = c.string("manifest_media_type")
        image.update(evidence)
        for ref in references:
            row: Row = {
                "digest": _digest(ref, "child_digest"),
                "repository": repository,
                "pushed_at": pushed_at,
                "index_digest": digest,
                "platform": platform_of(ref.raw("platform")),
                **evidence,
            }
            if child_type:
                row["media_type"] = child_type
            rows.append(row)
    else:
        image.update(
            label_evidence(_labels(f.raw("extra_attrs"), "extra_attrs"), repository, sources)
        )
    tags = [
        tag_row(repository, t.required("name"), digest, t.required_time("push_time"), now)
        for t in f.objects("tags")
    ]
    return rows, tags


@rejects("harbor audit log")
def parse_audit_entry(entry: Any) -> tuple[str, str, datetime] | None:
    """(repository name, tag, op_time) of a tag push (`create` of `<repository>:<tag>`); None for
    any other entry (pulls, deletions, pushes by digest)."""
    f = Fields(entry)
    if f.string("operation") != "create" or f.string("resource_type") not in (None, "artifact"):
        return None
    resource = f.required("resource")
    name, sep, tag = resource.rpartition(":")
    if not sep or "@" in resource or "/" in tag or not name:
        return None
    return name, tag, f.required_time("op_time")


def history_rows(
    pushes: Iterable[tuple[str, datetime]],
    artifacts: Mapping[str, datetime],
    tagged: Mapping[tuple[str, str], datetime],
    repository: str,
    now: datetime,
) -> list[Row]:
    """`image_tag` rows of a repository's tag pushes from the audit log, which names no digest:
    a push's digest is that of the artifact pushed then (within `AUDIT_TOLERANCE`, the closest; a
    tie is skipped). `artifacts`: digest -> push time; `tagged`: (tag, digest) -> the push time of
    that tag as the artifacts listing shows it now, used as `seen_at` when it is the same push."""
    rows: dict[tuple[str, str, datetime], Row] = {}
    for tag, op_time in pushes:
        near = sorted(
            (abs(pushed - op_time), digest)
            for digest, pushed in artifacts.items()
            if abs(pushed - op_time) <= AUDIT_TOLERANCE
        )
        if not near or (len(near) > 1 and near[0][0] == near[1][0]):
            continue
        digest = near[0][1]
        listed = tagged.get((tag, digest))
        seen_at = listed if listed and abs(listed - op_time) <= AUDIT_TOLERANCE else op_time
        rows[(tag, digest, seen_at)] = tag_row(repository, tag, digest, seen_at, seen_at)
    return list(rows.values())


# -- OCI distribution -----------------------------------------------------------------------------


@rejects("oci manifest")
def normalize_oci_image(
    repository: str,
    digest: str,
    media_type: str | None,
    manifest: Any,
    *,
    config: Any = None,
    sources: Iterable[str] = (),
) -> list[Row]:
    """The image rows of a manifest or index fetched by digest; `config` is the image config
    blob (of one platform manifest, for an index)."""
    f = Fields(manifest, "manifest")
    if not DIGEST.fullmatch(digest or ""):
        raise RejectedPayload(f"Docker-Content-Digest is not a digest: {digest!r}")
    media_type = f.string("mediaType") or media_type
    evidence = label_evidence(_labels(config, "config"), repository, sources) if config else {}
    image: Row = {"digest": digest, "repository": repository, "media_type": media_type, **evidence}
    rows = [image]
    if media_type in INDEX_TYPES or f.has("manifests"):
        for m in f.objects("manifests"):
            rows.append(
                {
                    "digest": _digest(m, "digest"),
                    "repository": repository,
                    "media_type": m.string("mediaType"),
                    "index_digest": digest,
                    "platform": platform_of(m.raw("platform")),
                    **evidence,
                }
            )
    elif not f.has("config"):
        raise RejectedPayload("manifest has neither manifests nor config")
    return rows


def preferred_platform(entries: Any, digest_key: str) -> str | None:
    """Of an index's platform entries (OCI `manifests`, Harbor `references`), the digest whose
    config the index's labels are read from: the first linux/amd64 one, else the first."""
    found = [
        e for e in entries or [] if isinstance(e, Mapping) and isinstance(e.get(digest_key), str)
    ]
    for e in found:
        if platform_of(e.get("platform")) == "linux/amd64":
            return str(e[digest_key])
    return str(found[0][digest_key]) if found else None


def index_child(manifest: Mapping[str, Any]) -> str | None:
    """The platform manifest of an OCI index whose config gives the index's labels."""
    return preferred_platform(manifest.get("manifests"), "digest")


def config_digest(manifest: Mapping[str, Any]) -> str | None:
    """The config blob digest of an image manifest."""
    config = manifest.get("config")
    digest = config.get("digest") if isinstance(config, Mapping) else None
    return digest if isinstance(digest, str) else None


__all__ = [
    "ACCEPT",
    "INDEX_TYPES",
    "config_digest",
    "history_rows",
    "index_child",
    "label_evidence",
    "normalize_harbor_artifact",
    "normalize_oci_image",
    "parse_audit_entry",
    "platform_of",
    "preferred_platform",
    "repository_path",
    "scrubbed_artifact",
    "scrubbed_config",
    "source_path",
    "tag_row",
]
