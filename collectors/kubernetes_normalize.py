"""Pure functions turning Kubernetes objects (apps/v1 Deployments and ReplicaSets, v1 Pods, as the API
returns them) into `observed_workload` rows — one per rollout revision of a workload — and, for a
cluster in `record` mode, `deployment` rows.

A revision's row (the decisions; DESIGN.md is silent):
- `observed_at`, when the revision began running: a ReplicaSet's first revision began when it was
  created (`creationTimestamp`). A rollback reuses the old ReplicaSet and only bumps its revision
  (the old numbers move to `deployment.kubernetes.io/revision-history`); the API keeps no time for
  that, except that the Deployment's current ReplicaSet's pods were created when it was scaled up
  again: the earliest pod `creationTimestamp` is taken. Other revisions of a reused ReplicaSet have
  no knowable start and get no row (their numbers are in the history annotation).
- `status` and `finished_at` come from the Deployment's conditions and hold for its current
  revision: `Progressing` `NewReplicaSetAvailable` is success (finished at that condition's
  `lastUpdateTime`), `ProgressDeadlineExceeded` failed, anything else running. Kubernetes keeps no
  outcome for an old ReplicaSet, so a superseded revision keeps the status a sync saw while it was
  current; one first seen superseded (or last seen running) is taken as a success.
- `digests`: of the current revision, what its pods' `imageID`s report (normalised to
  `sha256:...`; a multi-arch image may show its index or a platform manifest digest); of an older
  one (no pods left), the digests pinned in its pod template. `images` are the template's images.
- `ready`: the revision is the current one and all its replicas are ready.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from collectors.payload import Fields, RejectedPayload, Row, parse_time, rejects

REVISION = "deployment.kubernetes.io/revision"
HISTORY = "deployment.kubernetes.io/revision-history"
NAME_LABEL = "app.kubernetes.io/name"
_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})")
_SEEN = ("success", "failed")


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def scrubbed(obj: Any) -> Any:
    """`obj` without what often holds literal secrets, for the raw payload store: containers'
    `env` and `envFrom`, and the `last-applied-configuration` annotation (a copy of the manifest).
    Nothing the normaliser reads is dropped."""
    if isinstance(obj, list):
        return [scrubbed(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if key in _CONTAINER_LISTS and isinstance(value, list):
            value = [
                {k: v for k, v in c.items() if k not in ("env", "envFrom")}
                if isinstance(c, dict)
                else c
                for c in value
            ]
        elif key == "annotations" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != LAST_APPLIED}
        out[key] = scrubbed(value)
    return out


def image_id_digest(image_id: str | None) -> str | None:
    """The registry digest in a container status' `imageID`: containerd `repo@sha256:...`, Docker
    `docker-pullable://repo@sha256:...`; None for an empty one (not pulled yet) or a bare local
    image id (`docker://sha256:...`, `sha256:...`: a config digest, not a registry digest)."""
    if not image_id:
        return None
    m = _DIGEST.search(image_id)
    return m.group(1) if m else None


def ref_digest(image: str | None) -> str | None:
    """The digest an image reference pins (`repo@sha256:...`), or None for a tag reference."""
    m = _DIGEST.search(image or "")
    return m.group(1) if m else None


def _meta(obj: Any, what: str) -> tuple[Fields, Fields]:
    f = Fields(obj, what)
    meta = f.obj("metadata")
    meta.required("name")
    return f, meta


def _annotation(meta: Fields, key: str) -> str | None:
    value = (meta.raw("annotations") or {}).get(key)
    return value if isinstance(value, str) else None


def revision_of(meta: Fields) -> int:
    text = _annotation(meta, REVISION)
    if text is None or not text.isdigit():
        raise RejectedPayload(
            f"{meta.name('annotations')}[{REVISION!r}] is not a revision: {text!r}"
        )
    return int(text)


def history_of(meta: Fields) -> list[int]:
    text = _annotation(meta, HISTORY) or ""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise RejectedPayload(f"{meta.name('annotations')}[{HISTORY!r}] is not a list: {text!r}")
    return sorted(int(p) for p in parts)


def owned_by(obj: Any, kind: str, name: str) -> bool:
    """Whether `obj`'s controller owner reference names `kind`/`name`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") if isinstance(obj, dict) else None
    return any(
        isinstance(r, dict) and r.get("kind") == kind and r.get("name") == name for r in refs or []
    )


def rollout_status(deployment: Any) -> tuple[str, str, datetime | None]:
    """(success | failed | running, the raw condition reason, finished at) of a Deployment's
    current revision, from its `Progressing` condition."""
    f = Fields(deployment, "deployment")
    for i, c in enumerate(f.obj("status").objects("conditions")):
        if c.raw("type") != "Progressing":
            continue
        reason = c.string("reason") or ""
        if reason == "ProgressDeadlineExceeded":
            return "failed", reason, None
        if reason == "NewReplicaSetAvailable" and c.raw("status") == "True":
            return "success", reason, parse_time(c.raw("lastUpdateTime"), c.name("lastUpdateTime"))
        return "running", reason or f"conditions[{i}]", None
    return "running", "", None


def template_images(spec_owner: Fields) -> list[str]:
    template = spec_owner.obj("spec").obj("template").obj("spec")
    return [c.required("image") for c in template.objects("containers")]


def pod_digests(pods: list[Any]) -> list[str]:
    """The registry digests the pods' containers report, in pod order, each once."""
    out: list[str] = []
    for i, pod in enumerate(pods):
        status = Fields(pod, f"pods[{i}]").obj("status")
        for c in status.objects("containerStatuses"):
            digest = image_id_digest(c.string("imageID"))
            if digest and digest not in out:
                out.append(digest)
    return out


def service_name(deployment: Any, known: Mapping[str, int]) -> str | None:
    """The known service a Deployment runs: its name, else its `app.kubernetes.io/name` label."""
    meta = (deployment.get("metadata") or {}) if isinstance(deployment, dict) else {}
    name = meta.get("name")
    if name in known:
        return str(name)
    label = (meta.get("labels") or {}).get(NAME_LABEL)
    return str(label) if label in known else None


@rejects("workload")
def normalize_workload(
    deployment: Any,
    replicasets: list[Any],
    pods: list[Any],
    *,
    cluster: str,
    source_id: int | None,
    service_id: int | None,
    environment_id: int | None,
    seen: Mapping[str, str | None] | None = None,
) -> list[Row]:
    """`observed_workload` rows of one Deployment with its ReplicaSets and their Pods (see the
    module docstring). `seen` maps revisions already stored to their status."""
    seen = seen or {}
    _f, meta = _meta(deployment, "deployment")
    namespace, name = meta.required("namespace"), meta.required("name")
    current_revision = revision_of(meta)
    status, _, finished = rollout_status(deployment)
    rows: list[Row] = []
    for i, rs in enumerate(replicasets):
        rf, rmeta = _meta(rs, f"replicasets[{i}]")
        revision = revision_of(rmeta)
        created = parse_time(rmeta.raw("creationTimestamp"), rmeta.name("creationTimestamp"))
        if created is None:
            raise RejectedPayload(f"missing {rmeta.name('creationTimestamp')}")
        images = template_images(rf)
        template = [d for d in map(ref_digest, images) if d]
        current = revision == current_revision
        mine = [p for p in pods if owned_by(p, "ReplicaSet", rmeta.required("name"))]
        history = history_of(rmeta)
        starts = {(history or [revision])[0]: created}
        if current and history:
            times = [
                parse_time(p.get("metadata", {}).get("creationTimestamp"), "pod.creationTimestamp")
                for p in mine
            ]
            if any(times):
                starts[revision] = min(t for t in times if t)
        for number, began in starts.items():
            is_current = current and number == revision
            row: Row = {
                "source_id": source_id,
                "cluster": cluster,
                "namespace": namespace,
                "workload": name,
                "revision": str(number),
                "replica_set": rmeta.required("name"),
                "observed_at": began,
                "environment_id": environment_id,
                "service_id": service_id,
                "images": images,
                "digests": _ordered(pod_digests(mine), template) if is_current else template,
                "ready": is_current and _ready(rf),
            }
            if is_current:
                row |= {"status": status, "finished_at": finished}
            elif seen.get(str(number)) not in _SEEN:
                row |= {"status": "success", "finished_at": None}
            rows.append(row)
    return rows


def _ordered(reported: list[str], template: list[str]) -> list[str]:
    """Pod digests with the template's first when the pods report it; the template's if none."""
    if not reported:
        return template
    first = [d for d in template if d in reported]
    return first + sorted(d for d in reported if d not in first)


def _ready(rs: Fields) -> bool:
    wanted = rs.obj("spec").integer("replicas")
    ready = rs.obj("status").integer("readyReplicas") or 0
    return bool(wanted) and ready >= (wanted or 0)


def deployment_rows(
    observed: list[Row],
    current: str,
    raw_status: str,
    seen: Mapping[str, str | None] | None = None,
) -> list[Row]:
    """`deployment` rows for a cluster that records its own rollouts (`deployments = "record"`):
    one per observed revision (`current` is the Deployment's), its digest resolved by observation.
    A revision whose status was decided by an earlier sync (`seen`) keeps it."""
    seen = seen or {}
    out = []
    for row in observed:
        deployment: Row = {
            "source_id": row["source_id"],
            "external_id": f"{row['namespace']}/{row['workload']}#{row['revision']}",
            "service_id": row["service_id"],
            "environment_id": row["environment_id"],
            "raw_environment": row["namespace"],
            "created_at": row["observed_at"],
            "started_at": row["observed_at"],
            "image_digest": (row["digests"] or [None])[0],
            "image_ref": (row["images"] or [None])[0],
            "image_resolution": "observed" if row["digests"] else "none",
            "kind": "app",
        }
        if "status" in row:
            deployment |= {
                "status": row["status"],
                "raw_status": raw_status if row["revision"] == current else "superseded",
                "finished_at": row["finished_at"],
                "updated_at": row["finished_at"] or row["observed_at"],
            }
        else:  # decided by an earlier sync; written anyway, a deployment row may be new
            deployment |= {"status": seen.get(str(row["revision"])) or "success"}
        out.append(deployment)
    return out


__all__ = [
    "deployment_rows",
    "image_id_digest",
    "normalize_workload",
    "owned_by",
    "parse_time",
    "ref_digest",
    "rollout_status",
    "scrubbed",
    "service_name",
]
