"""The Kubernetes collector (the official `kubernetes` client): per namespace, in parallel under one
rate limiter, the Deployments, ReplicaSets and Pods, `limit` + `continue` pages of `page_size`;
each Deployment with its ReplicaSets and their Pods becomes `observed_workload` rows (one per rollout
revision; collectors/kubernetes_normalize.py says what each column means) and, in `record` mode,
`deployment` rows.

Decisions where DESIGN.md is silent:
- Configuration: the kubeconfig file and context of the source (`kubeconfig`, `context`), or the
  client's usual lookup; the in-cluster service account when neither is set and the process runs in
  a pod. The client is built per source (no global configuration), with the shared retry policy
  as a urllib3 `Retry` (`collectors.http.urllib3_retry`), the shared rate limiter and counting.
- Lists are read as raw JSON (`_preload_content=False`): the raw payload is kept verbatim and a
  malformed object is rejected by our normaliser instead of failing the client's deserialisation.
  Raw payloads: stream `workloads`, one per Deployment (`<namespace>/<name>`), composite
  `{"item": deployment, "replicasets": [...], "pods": [...]}`.
- Namespaces come from `namespaces` (namespace -> environment, mapped through the aliases); with
  none configured, every namespace the credentials may list, the environment guessed from the last
  `-` part of its name (`payments-production`) and left empty when nothing recognises it.
- Services are matched, never created: the Deployment's name, else its `app.kubernetes.io/name`.
- Every sync reads the namespaces whole (a cluster shows its present state, not a history);
  upserts make a sync with nothing new write nothing. A namespace that fails (403, unreachable) is
  recorded in sync_state and the summary, naming the source and namespace; the others go on.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.rest import ApiException
from sqlalchemy import select, update

from collectors import kubernetes_normalize as norm
from collectors.frame import Collector, SyncOptions
from collectors.http import (
    MalformedBody,
    redact_url,
    urllib3_retry,
)
from collectors.payload import RejectedPayload
from collectors.refs import EnvironmentRef, Refs
from collectors.sync import Batch, SyncRun
from config.settings import KubernetesSource
from warehouse.raw import Raw
from warehouse.schema import Deployment, ObservedWorkload, Service

log = logging.getLogger(__name__)
# a connection dropped or stalled while a list's body is read (`_preload_content=False` reads it
# after urllib3's own retries are over): retried by the shared policy like any transient error
BODY_ERRORS = (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError)
STREAM = "workloads"


class ClusterError(Exception):
    """The cluster cannot be reached or configured; the message names the source."""


class KubernetesCollector(Collector[str]):
    """Syncs one `[[sources.kubernetes]]` into the warehouse; a partition is a namespace. The
    threads share one `ApiClient` (its connection pool is thread-safe, sized for them all)."""

    kind = "kubernetes"
    unit = "namespaces"
    listing_errors = (ClusterError, MalformedBody, ApiException, urllib3.exceptions.HTTPError)

    def __init__(self, source: KubernetesSource, options: SyncOptions) -> None:
        super().__init__(source, options)
        self.cluster = source.cluster or source.name
        self.counter = self.new_counter()
        self.refs = Refs.from_settings(self.settings)
        self.url = source.url or ""
        self._client: kubernetes.client.ApiClient | None = None
        # set by `partitions`: service name -> id, namespace -> environment id
        self.services: dict[str, int] = {}
        self.environments: dict[str, int] = {}

    # -- the client ----------------------------------------------------------------------------

    def api_client(self) -> kubernetes.client.ApiClient:
        """The client for this source's cluster (built once)."""
        if self._client is not None:
            return self._client
        config = kubernetes.client.Configuration()
        try:
            if (
                self.source.kubeconfig is None
                and self.source.context is None
                and os.environ.get("KUBERNETES_SERVICE_HOST")
            ):
                kubernetes.config.load_incluster_config(client_configuration=config)
            else:
                kubernetes.config.load_kube_config(
                    config_file=self.source.kubeconfig,
                    context=self.source.context,
                    client_configuration=config,
                    persist_config=False,
                )
        except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
            raise ClusterError(
                f"{self.source.name}: cannot configure the Kubernetes client from "
                f"{self.source.kubeconfig or 'the default kubeconfig'}"
                f"{f' (context {self.source.context})' if self.source.context else ''}: {exc}"
            ) from None
        config.retries = urllib3_retry(self.retry, self.counter)
        config.connection_pool_maxsize = self.settings.sync.parallelism + 1
        self.url = config.host
        self._client = kubernetes.client.ApiClient(config)
        return self._client

    def _made(self) -> int:
        return int(getattr(self._local, "requests", 0))

    def list_objects(self, resource: str, namespace: str | None = None) -> list[Any]:
        """Every object of `resource` (namespaces, deployments, replicasets, pods), page by page."""
        client = self.api_client()
        core, apps = kubernetes.client.CoreV1Api(client), kubernetes.client.AppsV1Api(client)
        calls: dict[str, Callable[..., Any]] = {
            "deployments": apps.list_namespaced_deployment,
            "replicasets": apps.list_namespaced_replica_set,
            "pods": core.list_namespaced_pod,
        }
        items: list[Any] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "limit": self.source.page_size,
                "_preload_content": False,
                "_request_timeout": self.settings.sync.timeout_s,
            }
            if token:
                kwargs["_continue"] = token

            def page(kwargs: dict[str, Any] = kwargs) -> tuple[bytes, str]:
                self.limiter.acquire()
                self.counter.add()
                self._local.requests = self._made() + 1
                response: Any = (
                    core.list_namespace(**kwargs)
                    if resource == "namespaces"
                    else calls[resource](namespace, **kwargs)
                )
                # the body is read here, outside urllib3's retries
                return bytes(response.data), str(response.geturl() or "")

            data, url = self.retry.call(page, lambda _: (200, None), BODY_ERRORS)
            try:
                body = json.loads(data)
            except ValueError as exc:
                raise MalformedBody(f"{self.url}{url}", data, exc) from None
            items.extend(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return items

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, ApiException):
            try:
                message = json.loads(exc.body or "{}").get("message")
            except ValueError:
                message = None
            return f"HTTP {exc.status} {exc.reason}" + (f": {message}" if message else "")
        if isinstance(exc, urllib3.exceptions.MaxRetryError):
            return f"cannot connect ({type(exc.reason).__name__ if exc.reason else 'no answer'})"
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def _hint(self) -> str:
        where = self.source.kubeconfig or "the default kubeconfig"
        context = f", context {self.source.context}" if self.source.context else ""
        return f"check the cluster URL and credentials in {where}{context}"

    # -- the sync ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def cannot_list(self, exc: Exception) -> str:
        if isinstance(exc, ClusterError | MalformedBody):
            return str(exc)
        return (
            f"{self.source.name}: cannot list namespaces of cluster {self.cluster} at "
            f"{redact_url(self.url)}: {self._describe(exc)}; {self._hint()}"
        )

    def partitions(self, run: SyncRun) -> list[str]:
        targets = self._targets()
        self.services = self._services()
        self.environments = self._environments(run, targets)
        return list(targets)

    def lease_of(self, namespace: str) -> tuple[str, str]:
        return STREAM, namespace  # a lease per namespace, on its cursor's row

    def sync_partition(self, run: SyncRun, namespace: str) -> None:
        run.attempt(  # a database error or a bug fails the namespace only
            STREAM,
            namespace,
            f"namespace {namespace} of cluster {self.cluster}",
            partial(
                self.sync_namespace,
                run,
                namespace,
                self.services,
                self.environments.get(namespace),
            ),
        )

    def finish(self, run: SyncRun) -> None:
        self._adopt(run)

    def _adopt(self, run: SyncRun) -> None:
        """Revisions stored before their service was known (the cluster synced before the source
        that knows the service) get it once it is: a workload is named after its service. The
        revisions still shown get it from their own rows anyway; pruned ones only from here."""
        w = ObservedWorkload
        with self.engine.begin() as conn:
            conn.execute(
                update(w)
                .where(w.source_id == run.source_id, w.service_id.is_(None))
                .values(
                    service_id=select(Service.id)
                    .where(Service.name == w.workload)
                    .scalar_subquery()
                )
            )

    def _targets(self) -> dict[str, str | None]:
        """namespace -> raw environment name (None: none recognised)."""
        self.api_client()
        if self.source.namespaces:
            return dict(self.source.namespaces)
        found = {}
        for ns in self.list_objects("namespaces"):
            name = str((ns.get("metadata") or {}).get("name") or "")
            if name:
                guess = self.refs.mapper.canonical(name.rsplit("-", 1)[-1])
                found[name] = name.rsplit("-", 1)[-1] if guess.tier != "other" else None
        return found

    def _services(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {name: sid for name, sid in conn.execute(select(Service.name, Service.id))}

    def _environments(self, run: SyncRun, targets: dict[str, str | None]) -> dict[str, int]:
        out: dict[str, int] = {}

        def ensure(conn: Any) -> None:
            for ns, raw in targets.items():
                if raw:
                    out[ns] = self.refs.id(conn, EnvironmentRef(raw))

        run.write(STREAM, Batch(), after=ensure)
        return out

    def sync_namespace(
        self, run: SyncRun, namespace: str, services: dict[str, int], environment_id: int | None
    ) -> None:
        """One namespace's workloads; a failure is recorded and the sync goes on."""
        before = self._made()
        try:
            deployments = self.list_objects("deployments", namespace)
            replicasets = self.list_objects("replicasets", namespace)
            pods = self.list_objects("pods", namespace)
        except (ApiException, urllib3.exceptions.HTTPError, ClusterError, MalformedBody) as exc:
            run.fail(
                STREAM,
                namespace,
                f"{self.source.name}: namespace {namespace} of cluster {self.cluster}: "
                f"{self._describe(exc)}; "
                + (
                    "grant the credentials list on deployments, replicasets and pods there"
                    if isinstance(exc, ApiException) and exc.status == 403
                    else "the next sync reads it again"
                    if isinstance(exc, MalformedBody)
                    else self._hint()
                ),
                exc,
            )
            run.count(STREAM, requests=self._made() - before, partitions=1)
            return
        seen = self._seen(namespace)
        by_owner: dict[str, list[Any]] = defaultdict(list)
        for rs in replicasets:
            for ref in (rs.get("metadata") or {}).get("ownerReferences") or []:
                if isinstance(ref, dict) and ref.get("kind") == "Deployment":
                    by_owner[str(ref.get("name"))].append(rs)
        pods_of: dict[str, list[Any]] = defaultdict(list)
        for pod in pods:
            for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
                if isinstance(ref, dict) and ref.get("kind") == "ReplicaSet":
                    pods_of[str(ref.get("name"))].append(pod)
        batch = Batch()
        for i, d in enumerate(deployments):
            name = str(((d.get("metadata") or {}) if isinstance(d, dict) else {}).get("name") or i)
            owned = by_owner.get(name, [])
            mine = [p for rs in owned for p in pods_of.get(str(rs["metadata"].get("name")), [])]
            key = f"{namespace}/{name}"
            payload = norm.scrubbed({"item": d, "replicasets": owned, "pods": mine})
            try:
                service = norm.service_name(d, services)
                rows = norm.normalize_workload(
                    d, owned, mine, cluster=self.cluster, source_id=run.source_id,
                    service_id=services.get(service) if service else None,
                    environment_id=environment_id, seen=seen.get(name, {}),
                )  # fmt: skip
            except RejectedPayload as exc:
                batch.raws.append(Raw(STREAM, key, payload, error=str(exc)))
                batch.rejected += 1
                log.warning("%s: rejected workload %s: %s", self.source.name, key, exc)
                continue
            batch.raws.append(Raw(STREAM, key, payload))
            batch.add(ObservedWorkload, rows)
            if self.source.deployments == "record":
                _, reason, _ = norm.rollout_status(d)
                current = str(d["metadata"]["annotations"][norm.REVISION])
                batch.add(
                    Deployment, norm.deployment_rows(rows, current, reason, seen.get(name, {}))
                )
        made = self._made() - before
        run.write(STREAM, batch, after=run.save_cursor(STREAM, namespace, None, made))
        run.count(STREAM, requests=self._made() - before, partitions=1)

    def _seen(self, namespace: str) -> dict[str, dict[str, str | None]]:
        """workload -> revision -> the status stored for it."""
        w = ObservedWorkload
        out: dict[str, dict[str, str | None]] = defaultdict(dict)
        with self.engine.connect() as conn:
            for workload, revision, status in conn.execute(
                select(w.workload, w.revision, w.status).where(
                    w.cluster == self.cluster, w.namespace == namespace
                )
            ):
                out[workload][str(revision)] = status
        return out


__all__ = ["ClusterError", "KubernetesCollector"]
