"""The Kubernetes normaliser on real objects (tests/fixtures/kubernetes: gitops-engine's recorded
Deployments and Pods, see SOURCES.md there) and on named edge cases."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collectors import kubernetes_normalize as norm
from collectors.payload import RejectedPayload

FIXTURES = Path(__file__).parent / "fixtures" / "kubernetes"
DIGEST = "sha256:" + "ab" * 32


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_image_id_forms() -> None:
    pod = load("pod-running-restart-always")
    image_id = pod["status"]["containerStatuses"][0]["imageID"]
    assert image_id.startswith("docker-pullable://alpine@sha256:")
    assert norm.image_id_digest(image_id) == image_id.split("@")[1]
    assert norm.image_id_digest(f"registry.sandbox.test/a/b@{DIGEST}") == DIGEST  # containerd
    assert norm.image_id_digest("docker://sha256:" + "cd" * 32) is None  # local image id
    assert norm.image_id_digest("sha256:" + "cd" * 32) is None
    assert norm.image_id_digest("") is None  # not pulled yet
    assert norm.pod_digests([load("pod-imagepullbackoff")]) == []
    assert norm.pod_digests([pod, pod]) == [image_id.split("@")[1]]
    assert norm.ref_digest(f"r/x@{DIGEST}") == DIGEST and norm.ref_digest("r/x:1.0") is None


def test_degraded_deployment_is_failed() -> None:
    status, reason, finished = norm.rollout_status(load("deployment-degraded"))
    assert (status, reason, finished) == ("failed", "ProgressDeadlineExceeded", None)


def test_progressing_deployment_is_running() -> None:
    status, reason, _ = norm.rollout_status(load("deployment-progressing"))
    assert (status, reason) == ("running", "ReplicaSetUpdated")


def test_space_separated_and_rfc3339_times() -> None:
    at = datetime(2018, 7, 18, 4, 40, 44, tzinfo=UTC)
    assert norm.parse_time("2018-07-18 04:40:44+00:00", "t") == at
    assert norm.parse_time("2018-07-18T04:40:44Z", "t") == at
    with pytest.raises(RejectedPayload, match="bad timestamp in t"):
        norm.parse_time("yesterday", "t")


def _replicaset(name: str, revision: int, created: str, image: str, history: str = "") -> Any:
    notes = {norm.REVISION: str(revision)}
    if history:
        notes[norm.HISTORY] = history
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": created,
            "annotations": notes,
            "ownerReferences": [{"kind": "Deployment", "name": "guestbook-ui", "controller": True}],
        },
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": image}]}}},
        "status": {"replicas": 1, "readyReplicas": 1},
    }


def _workload(status: str = "success") -> tuple[Any, list[Any], list[Any]]:
    deployment = load("deployment-degraded")
    deployment["metadata"]["annotations"][norm.REVISION] = "3"
    if status == "success":
        deployment["status"]["conditions"][1] |= {
            "status": "True",
            "reason": "NewReplicaSetAvailable",
            "lastUpdateTime": "2018-07-18T06:30:00Z",
        }
    old = _replicaset("guestbook-ui-a", 2, "2018-07-18T05:00:00Z", f"gb@{'sha256:' + '11' * 32}")
    reused = _replicaset("guestbook-ui-b", 3, "2018-07-18T04:40:44Z", f"gb@{DIGEST}", "1")
    pod = load("pod-running-restart-always")
    pod["metadata"]["creationTimestamp"] = "2018-07-18T06:29:00Z"
    pod["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "guestbook-ui-b"}]
    return deployment, [old, reused], [pod]


def test_rollback_reuse_gives_rows_for_knowable_revisions() -> None:
    deployment, sets, pods = _workload()
    rows = norm.normalize_workload(
        deployment, sets, pods, cluster="c", source_id=1, service_id=None, environment_id=None
    )
    by_revision = {r["revision"]: r for r in rows}
    assert sorted(by_revision) == ["1", "2", "3"]
    # revision 1: the reused ReplicaSet's creation; revision 3 (current): its pods' creation
    assert by_revision["1"]["observed_at"] == datetime(2018, 7, 18, 4, 40, 44, tzinfo=UTC)
    assert by_revision["3"]["observed_at"] == datetime(2018, 7, 18, 6, 29, tzinfo=UTC)
    assert by_revision["3"]["status"] == "success" and by_revision["3"]["ready"]
    assert by_revision["3"]["finished_at"] == datetime(2018, 7, 18, 6, 30, tzinfo=UTC)
    assert by_revision["3"]["digests"][0].startswith("sha256:621c2f39")  # what the pod runs
    assert by_revision["2"]["digests"] == ["sha256:" + "11" * 32]  # the template's
    assert by_revision["2"]["status"] == "success" and not by_revision["2"]["ready"]


def test_superseded_revision_keeps_the_status_seen_while_current() -> None:
    deployment, sets, pods = _workload()
    rows = norm.normalize_workload(
        deployment, sets, pods, cluster="c", source_id=1, service_id=None,
        environment_id=None, seen={"2": "failed", "1": "running"},
    )  # fmt: skip
    by_revision = {r["revision"]: r for r in rows}
    assert "status" not in by_revision["2"]  # the stored "failed" stays
    assert by_revision["1"]["status"] == "success"  # running then replaced: inferred


def test_failed_current_revision() -> None:
    deployment, sets, _pods = _workload("failed")
    rows = norm.normalize_workload(
        deployment, sets, [], cluster="c", source_id=1, service_id=None, environment_id=None
    )
    assert [
        r for r in rows if r["revision"] == "3"
    ] == []  # a reused ReplicaSet without pods: its current start is unknowable
    sets[1]["metadata"]["annotations"].pop(norm.HISTORY)
    rows = norm.normalize_workload(
        deployment, sets, [], cluster="c", source_id=1, service_id=None, environment_id=None
    )
    (row,) = [r for r in rows if r["revision"] == "3"]
    assert row["status"] == "failed" and row["finished_at"] is None
    assert row["digests"] == [DIGEST]  # no pod reports one: the template's


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("metadata", "name"), None, "missing deployment.metadata.name"),
        (("metadata", "annotations", norm.REVISION), "x", "is not a revision"),
    ],
)
def test_malformed_deployment_is_rejected(path: tuple[str, ...], value: Any, message: str) -> None:
    deployment, sets, pods = _workload()
    broken = copy.deepcopy(deployment)
    target = broken
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(RejectedPayload, match=message):
        norm.normalize_workload(
            broken, sets, pods, cluster="c", source_id=1, service_id=None, environment_id=None
        )


def test_record_mode_rows() -> None:
    deployment, sets, pods = _workload()
    rows = norm.normalize_workload(
        deployment, sets, pods, cluster="c", source_id=1, service_id=5, environment_id=6
    )
    recorded = {
        d["external_id"]: d for d in norm.deployment_rows(rows, "3", "NewReplicaSetAvailable")
    }
    current = recorded["default/guestbook-ui#3"]
    assert current["status"] == "success" and current["image_resolution"] == "observed"
    assert current["raw_status"] == "NewReplicaSetAvailable" and current["kind"] == "app"
    assert recorded["default/guestbook-ui#2"]["raw_status"] == "superseded"


def test_record_mode_keeps_a_status_decided_earlier() -> None:
    deployment, sets, pods = _workload()
    rows = norm.normalize_workload(
        deployment, sets, pods, cluster="c", source_id=1, service_id=5,
        environment_id=6, seen={"2": "failed"},
    )  # fmt: skip
    recorded = {
        d["external_id"]: d
        for d in norm.deployment_rows(rows, "3", "NewReplicaSetAvailable", {"2": "failed"})
    }
    assert recorded["default/guestbook-ui#2"]["status"] == "failed"  # a new row may be inserted


def test_an_impossible_date_is_rejected_not_raised() -> None:
    with pytest.raises(RejectedPayload, match="bad timestamp"):
        norm.parse_time("2025-13-01T07:17:23Z", "metadata.creationTimestamp")


def test_raw_payloads_lose_what_often_holds_secrets() -> None:
    deployment, sets, pods = _workload()
    deployment = copy.deepcopy(deployment)
    spec = deployment["spec"]["template"]["spec"]
    spec["containers"][0]["env"] = [{"name": "DB_PASSWORD", "value": "hunter2"}]
    spec["initContainers"] = [{"name": "init", "envFrom": [{"secretRef": {"name": "s"}}]}]
    deployment["metadata"]["annotations"][norm.LAST_APPLIED] = '{"env": "hunter2"}'
    kept = norm.scrubbed({"item": deployment, "replicasets": sets, "pods": pods})
    assert "hunter2" not in json.dumps(kept) and "secretRef" not in json.dumps(kept)
    assert kept["item"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert norm.REVISION in kept["item"]["metadata"]["annotations"]
    rows = norm.normalize_workload(
        kept["item"], kept["replicasets"], kept["pods"], cluster="c", source_id=1,
        service_id=None, environment_id=None,
    )  # fmt: skip
    assert rows == norm.normalize_workload(
        deployment, sets, pods, cluster="c", source_id=1, service_id=None, environment_id=None
    )  # re-deriving from the kept payload gives the same rows
