"""A Kubernetes API simulator serving the sandbox cluster (`sandbox.kubernetes_org`) over real HTTP.

Routes (GET): `/version`, `/api/v1/namespaces`, `/apis/apps/v1/namespaces/{ns}/deployments`,
`/apis/apps/v1/namespaces/{ns}/replicasets`, `/api/v1/namespaces/{ns}/pods`, and the cluster-wide
`/apis/apps/v1/deployments`, `/apis/apps/v1/replicasets`, `/api/v1/pods`. Lists are `<Kind>List`
objects with `metadata.resourceVersion`; `limit` + `continue` paginate them (`metadata.continue`,
`remainingItemCount`), `labelSelector` filters by `key=value` terms. Bearer-token auth: a missing or
wrong token gets 401, a namespace the token may not read (`forbid`) 403 — both as real `Status`
objects. Objects follow the shapes of real ones (fixtures/gitops-engine): Deployments with revision
annotations and conditions, ReplicaSets with pod-template-hash, revision(-history) annotations and
ownerReferences, Pods with containerStatuses whose `imageID` takes the runtime's form
(containerd `repo@sha256:...`, docker `docker-pullable://repo@sha256:...`; pods on arm64 nodes
report a multi-arch image's platform manifest digest). `corrupt()` serves a malformed object.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from sandbox.kubernetes_org import KubernetesCluster
from sandbox.kubernetes_payloads import Renderer, k8s_time
from sandbox.model import Organisation
from sandbox.server import Request, Response, Router

DELETE = object()
KINDS = {  # resource -> (group/version, kind)
    "namespaces": ("v1", "Namespace"),
    "deployments": ("apps/v1", "Deployment"),
    "replicasets": ("apps/v1", "ReplicaSet"),
    "pods": ("v1", "Pod"),
}


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> Response:
    """A `Status` object, as the API server answers errors."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return Response(body, code)


class KubernetesSimulator:
    """Serves `cluster` as of `advance(at)`; `token` is the service account's bearer token."""

    def __init__(
        self,
        org: Organisation,
        token: str,
        at: datetime | None = None,
        forbidden: tuple[str, ...] = (),
        cluster: KubernetesCluster | None = None,
    ) -> None:
        self.org, self.token = org, token
        self.cluster = cluster or KubernetesCluster(org, at)
        if at is not None:
            self.cluster.advance(at)
        self.forbidden = set(forbidden)
        self.user = "system:serviceaccount:cdmetrics:reader"
        self.corruptions: dict[tuple[str, str, str], Callable[[dict[str, Any]], None]] = {}
        self.render = Renderer(org, self.cluster)
        self._cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.router = Router()
        r = self.router
        r.add("/version", self.version)
        r.add("/api/v1/namespaces", partial(self.list_objects, resource="namespaces"))
        for res, prefix in (
            ("deployments", "/apis/apps/v1"),
            ("replicasets", "/apis/apps/v1"),
            ("pods", "/api/v1"),
        ):
            r.add(f"{prefix}/namespaces/{{ns}}/{res}", partial(self.list_objects, resource=res))
            r.add(f"{prefix}/{res}", partial(self.list_objects, resource=res, cluster_wide=True))

    @property
    def at(self) -> datetime:
        return self.cluster.at

    def advance(self, at: datetime) -> None:
        """Show the cluster as it is at `at`."""
        self.cluster.advance(at)
        self._cache.clear()

    def forbid(self, *namespaces: str) -> None:
        """Make the token unable to read `namespaces` (403 Forbidden)."""
        self.forbidden.update(namespaces)

    def corrupt(
        self,
        resource: str,
        namespace: str,
        name: str,
        field: str | tuple[str, ...],
        value: Any = DELETE,
    ) -> None:
        """Serve object `name` with `field` (dotted, or a tuple of keys) set to `value` (or
        removed)."""

        def patch(obj: dict[str, Any]) -> None:
            *path, last = field.split(".") if isinstance(field, str) else field
            for part in path:
                obj = obj.setdefault(part, {})
            if value is DELETE:
                obj.pop(last, None)
            else:
                obj[last] = value

        self.corruptions[(resource, namespace, name)] = patch
        self._cache.clear()

    # -- routes --------------------------------------------------------------------------------

    def version(self, request: Request) -> Any:
        return self._denied(request, None, None) or {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.4",
            "platform": "linux/amd64",
        }

    def list_objects(self, request: Request, resource: str, cluster_wide: bool = False) -> Any:
        namespace = request.params.get("ns")
        denied = self._denied(request, resource, namespace)
        if denied:
            return denied
        namespaces = self.cluster.namespaces()
        if namespace is not None and namespace not in namespaces:
            return Response(self._envelope(resource, [], None, 0))
        wanted = [namespace] if namespace else list(namespaces)
        items = [o for ns in wanted for o in self._objects(resource, ns)]
        if resource == "namespaces":
            items = self._objects("namespaces", None)
        if selector := request.query.get("labelSelector"):
            terms = [t.split("=", 1) for t in selector.replace("==", "=").split(",") if "=" in t]
            items = [
                o
                for o in items
                if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in terms)
            ]
        start = 0
        if token := request.query.get("continue"):
            try:
                start = int(json.loads(base64.b64decode(token))["start"])
            except (ValueError, KeyError, TypeError):
                return status(400, "BadRequest", f"continue key is not valid: {token!r}")
        limit = int(request.query.get("limit") or 0) or len(items) or 1
        page, rest = items[start : start + limit], len(items) - start - limit
        nxt = (
            base64.b64encode(
                json.dumps({"start": start + limit, "rv": self._rv()}).encode()
            ).decode()
            if rest > 0
            else None
        )
        return Response(self._envelope(resource, page, nxt, max(rest, 0)))

    def _envelope(
        self, resource: str, items: list[Any], nxt: str | None, rest: int
    ) -> dict[str, Any]:
        version, kind = KINDS[resource]
        meta: dict[str, Any] = {"resourceVersion": self._rv()}
        if nxt:
            meta["continue"], meta["remainingItemCount"] = nxt, rest
        return {"kind": f"{kind}List", "apiVersion": version, "metadata": meta, "items": items}

    def _denied(
        self, request: Request, resource: str | None, namespace: str | None
    ) -> Response | None:
        header = request.headers.get("authorization", "")
        if not (
            header.startswith("Bearer ")
            and hmac.compare_digest(header[7:].encode(), self.token.encode())
        ):
            return status(401, "Unauthorized", "Unauthorized")
        blocked = (
            {namespace} & self.forbidden
            if namespace
            else (self.forbidden if resource != "namespaces" else set())
        )
        if blocked and resource:
            group = KINDS[resource][0].rpartition("/")[0]
            where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            return status(
                403,
                "Forbidden",
                f'{resource}{"." + group if group else ""} is forbidden: User "{self.user}" cannot list '
                f'resource "{resource}" in API group "{group}" {where}',
                {"kind": resource, **({"group": group} if group else {})},
            )
        return None

    def _rv(self) -> str:
        return str(int(self.at.timestamp()))

    # -- objects -------------------------------------------------------------------------------

    def _objects(self, resource: str, namespace: str | None) -> list[dict[str, Any]]:
        key = (resource, namespace, self.at)
        if key not in self._cache:
            if resource == "namespaces":
                objs = [
                    self.render.namespace(ns, at) for ns, at in self.cluster.namespaces().items()
                ]
            else:
                states = sorted(
                    (st for (ns, _), st in self.cluster.states().items() if ns == namespace),
                    key=lambda st: st.name,
                )
                objs = [o for st in states for o in getattr(self.render, resource)(st)]
            for o in objs:
                patch = self.corruptions.get((resource, namespace or "", o["metadata"]["name"]))
                if patch:
                    patch(o)
            self._cache[key] = objs
        return self._cache[key]


__all__ = ["DELETE", "KubernetesSimulator", "k8s_time", "status"]
