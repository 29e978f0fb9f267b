"""Kubernetes objects of the sandbox cluster as the API server renders them (apps/v1 Deployments and
ReplicaSets, v1 Pods), shaped on real ones (fixtures/gitops-engine); used by `sandbox.kubernetes_api`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sandbox.kubernetes_org import (
    HISTORY_LIMIT,
    POD_DELAY,
    PROGRESS_DEADLINE_S,
    KubernetesCluster,
    ReplicaSetState,
    Template,
    WorkloadState,
    image_of,
    replicas_of,
    safe_encode,
)
from sandbox.model import Organisation, Service
from sandbox.oci import platform_digests

NAME_LABEL = "app.kubernetes.io/name"


def k8s_time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def uid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts))))


class Renderer:
    """Renders one cluster's workloads; runtimes alternate by team (containerd, docker)."""

    def __init__(self, org: Organisation, cluster: KubernetesCluster) -> None:
        self.cluster = cluster
        self.runtimes = {
            t.name: ("docker" if i % 2 else "containerd") for i, t in enumerate(org.teams)
        }
        self.images = {s.name: {i.digest: i for i in s.images} for s in org.services}

    def meta(
        self, kind: str, ns: str | None, name: str, created: datetime, **extra: Any
    ) -> dict[str, Any]:
        meta = {
            "name": name,
            "uid": uid(self.cluster.name, kind, ns, name, created),
            "resourceVersion": str(int(created.timestamp()) % 10_000_000),
            "creationTimestamp": k8s_time(created),
        }
        if ns:
            meta["namespace"] = ns
        return meta | extra

    def namespace(self, ns: str, created: datetime) -> dict[str, Any]:
        meta = self.meta("Namespace", None, ns, created, labels={"kubernetes.io/metadata.name": ns})
        return {
            "metadata": meta,
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def template(self, st: WorkloadState, t: Template, hash_label: bool) -> dict[str, Any]:
        labels = {NAME_LABEL: st.name, "app.kubernetes.io/part-of": st.service.team}
        if hash_label:
            labels["pod-template-hash"] = t.hash
        meta: dict[str, Any] = {"creationTimestamp": None, "labels": labels}
        if t.restarted_at:
            meta["annotations"] = {"kubectl.kubernetes.io/restartedAt": k8s_time(t.restarted_at)}
        container = {
            "name": st.name,
            "image": t.image,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }
        spec = {
            "containers": [container],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
        }
        return {"metadata": meta, "spec": spec}

    def deployments(self, st: WorkloadState) -> list[dict[str, Any]]:
        n, cur, ok = replicas_of(st.environment), st.current, st.status == "success"
        serving = n if ok or st.previous else 0
        meta = self.meta(
            "Deployment",
            st.namespace,
            st.name,
            st.created_at,
            generation=st.generation,
            labels={NAME_LABEL: st.name},
            annotations={"deployment.kubernetes.io/revision": str(cur.revision)},
        )
        at = k8s_time(st.changed_at)
        available = {
            "type": "Available",
            "status": "True" if serving else "False",
            "reason": "MinimumReplicasAvailable" if serving else "MinimumReplicasUnavailable",
            "message": "Deployment has minimum availability."
            if serving
            else "Deployment does not have minimum availability.",
            "lastUpdateTime": at,
            "lastTransitionTime": k8s_time(st.created_at),
        }
        progressing = {
            "success": (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{cur.name}" has successfully progressed.',
            ),
            "running": ("True", "ReplicaSetUpdated", f'ReplicaSet "{cur.name}" is progressing.'),
            "failed": (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{cur.name}" has timed out progressing.',
            ),
        }[st.status]
        conditions = [
            available,
            {
                "type": "Progressing",
                "status": progressing[0],
                "reason": progressing[1],
                "message": progressing[2],
                "lastUpdateTime": at,
                "lastTransitionTime": at,
            },
        ]
        spec = {
            "replicas": n,
            "selector": {"matchLabels": {NAME_LABEL: st.name}},
            "template": self.template(st, cur.template, False),
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "revisionHistoryLimit": HISTORY_LIMIT,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_S,
        }
        total = n + (0 if ok else (n if st.previous else 0))
        state = {
            "observedGeneration": st.generation,
            "replicas": total,
            "updatedReplicas": n,
            "readyReplicas": serving,
            "availableReplicas": serving,
            "conditions": conditions,
        }
        if total - serving:
            state["unavailableReplicas"] = total - serving
        return [{"metadata": meta, "spec": spec, "status": state}]

    def _replicas(self, st: WorkloadState, rs: ReplicaSetState) -> tuple[int, int]:
        """(desired, ready) replicas of `rs`."""
        n = replicas_of(st.environment)
        if rs is st.current:
            return n, n if st.status == "success" else 0
        return (n, n) if rs is st.previous else (0, 0)

    def replicasets(self, st: WorkloadState) -> list[dict[str, Any]]:
        owner = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": st.name,
                "controller": True,
                "blockOwnerDeletion": True,
                "uid": uid(self.cluster.name, "Deployment", st.namespace, st.name, st.created_at),
            }
        ]
        out = []
        for rs in st.replica_sets:
            desired, ready = self._replicas(st, rs)
            n = replicas_of(st.environment)
            notes = {
                "deployment.kubernetes.io/desired-replicas": str(n),
                "deployment.kubernetes.io/max-replicas": str(n + 1),
                "deployment.kubernetes.io/revision": str(rs.revision),
            }
            if len(rs.revisions) > 1:
                notes["deployment.kubernetes.io/revision-history"] = ",".join(
                    str(r) for r, _ in rs.revisions[:-1]
                )
            labels = {NAME_LABEL: st.name, "pod-template-hash": rs.template.hash}
            meta = self.meta(
                "ReplicaSet",
                st.namespace,
                rs.name,
                rs.created_at,
                labels=labels,
                annotations=notes,
                ownerReferences=owner,
                generation=len(rs.revisions) * 2,
            )
            spec = {
                "replicas": desired,
                "selector": {"matchLabels": labels},
                "template": self.template(st, rs.template, True),
            }
            state = {
                "replicas": desired,
                "fullyLabeledReplicas": desired,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": len(rs.revisions) * 2,
            }
            out.append({"metadata": meta, "spec": spec, "status": state})
        return out

    def pods(self, st: WorkloadState) -> list[dict[str, Any]]:
        out = []
        for rs in st.replica_sets:
            desired, ready = self._replicas(st, rs)
            owner = [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs.name,
                    "controller": True,
                    "blockOwnerDeletion": True,
                    "uid": uid(
                        self.cluster.name, "ReplicaSet", st.namespace, rs.name, rs.created_at
                    ),
                }
            ]
            for i in range(desired):
                out.append(self._pod(st, rs, i, bool(ready), owner))
        return out

    def _pod(
        self, st: WorkloadState, rs: ReplicaSetState, i: int, ready: bool, owner: Any
    ) -> dict[str, Any]:
        created = rs.scaled_up_at + POD_DELAY
        name = f"{rs.name}-{safe_encode(f'{rs.name}/{rs.scaled_up_at}/{i}', 5)}"
        arch = "arm64" if i % 2 else "amd64"
        labels = {NAME_LABEL: st.name, "pod-template-hash": rs.template.hash}
        meta = self.meta(
            "Pod",
            st.namespace,
            name,
            created,
            labels=labels,
            ownerReferences=owner,
            generateName=f"{rs.name}-",
        )
        spec = self.template(st, rs.template, True)["spec"] | {
            "nodeName": f"{self.cluster.name}-{arch}-{i % 3}"
        }
        digest = self._pulled_digest(st.service, rs.template.digest, arch)
        repo = rs.template.image.split("@", 1)[0]
        runtime = self.runtimes.get(st.service.team, "containerd")
        image_id = (
            f"docker-pullable://{repo}@{digest}" if runtime == "docker" else f"{repo}@{digest}"
        )
        started = k8s_time(created + timedelta(seconds=3))
        failed = rs is st.current and st.status == "failed"
        state: dict[str, Any] = (
            {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": "back-off 5m0s restarting failed container",
                }
            }
            if failed
            else {"running": {"startedAt": started}}
        )
        container = {
            "name": st.name,
            "image": rs.template.image,
            "imageID": image_id,
            "ready": ready,
            "started": ready,
            "restartCount": 4 if failed else 0,
            "state": state,
            "lastState": {},
            "containerID": f"{runtime}://{safe_encode(name, 32)}",
        }
        ready_text = "True" if ready else "False"
        conditions = [
            {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": k8s_time(created)}
            for t, s in (
                ("Initialized", "True"),
                ("Ready", ready_text),
                ("ContainersReady", ready_text),
                ("PodScheduled", "True"),
            )
        ]
        status_ = {
            "phase": "Running",
            "conditions": conditions,
            "containerStatuses": [container],
            "hostIP": f"10.0.{i % 3}.1",
            "podIP": f"10.244.{i % 3}.{2 + i}",
            "qosClass": "BestEffort",
            "startTime": k8s_time(created),
        }
        return {"metadata": meta, "spec": spec, "status": status_}

    def _pulled_digest(self, service: Service, digest: str, arch: str) -> str:
        """The digest a pod's runtime reports: the index, or (arm64 nodes) the platform manifest."""
        if arch != "arm64":
            return digest
        image = self.images[service.name].get(digest) or image_of(service, digest)
        return platform_digests(service, image).get(f"linux/{arch}", digest)


__all__ = ["NAME_LABEL", "Renderer", "k8s_time", "uid"]
