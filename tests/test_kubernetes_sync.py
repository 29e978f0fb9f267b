"""The Kubernetes collector (the official client, real HTTP) against the sandbox's Kubernetes
simulator: observed workloads equal the cluster's ground truth, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import Engine, func, insert, select

from collectors.frame import SyncOptions
from collectors.kubernetes import KubernetesCollector
from collectors.run import run_sync
from config.settings import Settings
from sandbox.generate import generate
from sandbox.kubernetes_org import ENVIRONMENTS, namespace_of
from sandbox.model import Organisation
from sandbox.serve import Sandbox
from tests.sandbox_helpers import (
    DATE_RETRY_AFTER,
    TOKEN_ENV,
    answer_429_with_a_date,
    assert_waited_retry_after,
    record_waits,
)
from warehouse.schema import Deployment, Environment, ObservedWorkload, RawPayload, Service

NOW = datetime(2025, 6, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def org() -> Organisation:
    return generate(1, "small", NOW)


@pytest.fixture
def sandbox(org: Organisation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv(TOKEN_ENV, "sandbox-token")
    with Sandbox.start(org=org, jenkins=False, kubernetes=True) as sb:
        yield sb


def settings_for(sb: Sandbox, tmp_path: Path, gitlab: bool = False, **source: Any) -> Settings:
    kubeconfig = sb.write_kubeconfig(tmp_path / "kubeconfig")
    namespaces = {namespace_of(t.name, e): e for t in sb.org.teams for e in ENVIRONMENTS}
    sources: dict[str, Any] = {
        "kubernetes": [
            {"name": "k8s", "cluster": "sandbox", "kubeconfig": str(kubeconfig),
             "context": "sandbox", "namespaces": namespaces, **source}
        ]
    }  # fmt: skip
    if gitlab:
        sources["gitlab"] = [
            {"name": "gitlab", "url": sb.gitlab_url, "token_env": TOKEN_ENV, "groups": ["acme"]}
        ]
    return Settings(sources=sources, sync={"requests_per_second": 0})


def sync(sb: Sandbox, engine: Engine, tmp_path: Path, **source: Any):  # type: ignore[no-untyped-def]
    settings = settings_for(sb, tmp_path, **source)
    return KubernetesCollector(settings.sources.kubernetes[0], SyncOptions(settings, engine)).sync()


def known_services(engine: Engine, org: Organisation) -> None:
    with engine.begin() as conn:
        # a service deployed under another name is known by it too (its deploy jobs name it)
        for name in sorted({n for s in org.services for n in (s.name, s.deployed_as)}):
            conn.execute(insert(Service).values(name=name, origin="config"))


def observed(engine: Engine) -> set[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                ObservedWorkload.namespace, ObservedWorkload.workload, ObservedWorkload.revision,
                ObservedWorkload.replica_set, ObservedWorkload.observed_at, ObservedWorkload.status,
                ObservedWorkload.finished_at, ObservedWorkload.digests, Service.name, Environment.name,
            )
            .join(Service, Service.id == ObservedWorkload.service_id)
            .join(Environment, Environment.id == ObservedWorkload.environment_id)
        )  # fmt: skip
        return {(*r[:7], r[7][0] if r[7] else None, r[8], r[9]) for r in rows}


def truth(sb: Sandbox, at: datetime | None = None) -> set[tuple[Any, ...]]:
    assert sb.kubernetes is not None
    return {
        (r["namespace"], r["workload"], str(r["revision"]), r["replica_set"], r["observed_at"],
         r["status"], r["finished_at"], r["digest"], r["service"], r["environment"])
        for r in sb.kubernetes.cluster.observed(at)
    }  # fmt: skip


def platform_aware(rows: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return {r[:7] + r[8:] for r in rows}


def test_observed_workloads_equal_the_ground_truth(
    sandbox: Sandbox, engine: Engine, tmp_path: Path
) -> None:
    known_services(engine, sandbox.org)
    summary = sync(sandbox, engine, tmp_path, page_size=3)  # pages of 3: continue tokens
    assert summary.ok, summary.errors
    assert observed(engine) == truth(sandbox)
    assert sandbox.kubernetes is not None and sandbox.kubernetes_app is not None
    cluster = sandbox.kubernetes.cluster
    # every hand change is a successful rollout of its digest at its time
    rows = observed(engine)
    for change in cluster.unrecorded_changes():
        assert any(
            r[8] == change.service and r[9] == change.environment and r[4] == change.at
            and r[7] == change.digest and r[5] == "success"
            for r in rows
        ), change  # fmt: skip
    # some deployments are resolvable by observation, and only those have a row of their start
    resolvable = {k: v for k, v in cluster.deployment_rollouts().items() if v}
    assert 0 < len(resolvable) < len(cluster.deployment_rollouts())
    starts = {(r[2], r[4]) for r in rows}
    assert all((str(rev), at) in starts for rev, at in resolvable.values())
    # paginated: more list requests than (namespaces x 3 resources)
    assert summary.requests > 6 * 3
    with engine.connect() as conn:
        raws = conn.execute(select(func.count()).select_from(RawPayload)).scalar_one()
    assert raws == len(cluster.states())
    # a re-sync changes nothing
    again = sync(sandbox, engine, tmp_path)
    assert again.ok and again.rows == 0
    assert observed(engine) == truth(sandbox)


@pytest.mark.parametrize(("ahead", "cap"), DATE_RETRY_AFTER)
def test_retry_after_as_an_http_date_is_obeyed_and_capped(
    sandbox: Sandbox, engine: Engine, tmp_path: Path, ahead: float, cap: float
) -> None:
    assert sandbox.kubernetes_app is not None
    known_services(engine, sandbox.org)
    rule = answer_429_with_a_date(sandbox.kubernetes_app, "/replicasets", ahead)
    settings = settings_for(sandbox, tmp_path)
    settings.sync.max_retry_after_s = cap
    collector = KubernetesCollector(settings.sources.kubernetes[0], SyncOptions(settings, engine))
    waits = record_waits(collector)
    summary = collector.sync()
    assert summary.ok, summary.errors
    assert rule.fired == 3
    assert_waited_retry_after(waits, ahead, cap)
    assert observed(engine) == truth(sandbox)


def test_rollback_reuses_the_replica_set(sandbox: Sandbox, engine: Engine, tmp_path: Path) -> None:
    known_services(engine, sandbox.org)
    rollback = next(d for s in sandbox.org.services for d in s.deployments if d.rollback)
    assert rollback.finished_at is not None
    at = rollback.finished_at + timedelta(minutes=5)  # the rolled-back-to ReplicaSet is current
    sandbox.advance(at)
    assert sync(sandbox, engine, tmp_path).ok
    assert observed(engine) == truth(sandbox, at)
    with engine.connect() as conn:
        rows = conn.execute(
            select(ObservedWorkload.namespace, ObservedWorkload.replica_set,
                   ObservedWorkload.revision, ObservedWorkload.observed_at)
        ).all()  # fmt: skip
    by_rs: dict[tuple[str, str | None], list[tuple[int, datetime]]] = {}
    for ns, rs, revision, began in rows:
        by_rs.setdefault((ns, rs), []).append((int(revision or 0), began))
    reused = [sorted(v) for v in by_rs.values() if len(v) > 1]
    assert len(reused) == 1
    (first, first_at), (latest, latest_at) = reused[0]
    assert latest > first + 1 and latest_at > first_at
    assert sandbox.kubernetes is not None
    resolved = sandbox.kubernetes.cluster.deployment_rollouts(at)[rollback.id]
    assert resolved == (latest, latest_at)


def test_advancing_time_picks_up_new_rollouts(
    sandbox: Sandbox, engine: Engine, tmp_path: Path
) -> None:
    known_services(engine, sandbox.org)
    earlier = NOW - timedelta(days=10)
    sandbox.advance(earlier)
    assert sync(sandbox, engine, tmp_path).ok
    assert observed(engine) == truth(sandbox, earlier)
    sandbox.advance(NOW)
    later = sync(sandbox, engine, tmp_path)
    assert later.ok and later.rows > 0
    now_truth = truth(sandbox, NOW)
    seen = observed(engine)
    # everything visible now is there; rows of revisions no longer knowable stay from before
    assert {r[:5] for r in now_truth} <= {r[:5] for r in seen}
    newer = {r for r in now_truth if r[4] > earlier}
    assert newer and newer <= seen


def test_forbidden_namespace_and_unreachable_cluster(
    sandbox: Sandbox, engine: Engine, tmp_path: Path
) -> None:
    assert sandbox.kubernetes is not None
    sandbox.kubernetes.forbid("checkout-staging")
    settings = settings_for(sandbox, tmp_path, gitlab=True)
    summaries = {s.name: s for s in run_sync(settings, engine, console=Console(file=None))}
    assert summaries["gitlab"].ok and summaries["gitlab"].rows > 0
    k8s = summaries["k8s"]
    assert len(k8s.errors) == 1
    assert "k8s: namespace checkout-staging of cluster sandbox: HTTP 403" in k8s.errors[0]
    assert "forbidden" in k8s.errors[0]
    with engine.connect() as conn:
        namespaces = set(conn.execute(select(ObservedWorkload.namespace).distinct()).scalars())
    assert "checkout-staging" not in namespaces and len(namespaces) == 5
    # unreachable: the server is gone
    assert sandbox.kubernetes_server is not None
    sandbox.kubernetes_server.stop()
    summaries = {s.name: s for s in run_sync(settings, engine, console=Console(file=None))}
    assert summaries["gitlab"].ok
    (error,) = summaries["k8s"].errors[:1]
    assert error.startswith("k8s: namespace ") and "cannot connect" in error


def test_record_mode_writes_deployments(sandbox: Sandbox, engine: Engine, tmp_path: Path) -> None:
    known_services(engine, sandbox.org)
    assert sync(sandbox, engine, tmp_path, deployments="record").ok
    with engine.connect() as conn:
        deployments = conn.execute(select(func.count()).select_from(Deployment)).scalar_one()
        resolution = set(conn.execute(select(Deployment.image_resolution).distinct()).scalars())
    assert deployments == len(truth(sandbox)) and resolution == {"observed"}


def test_malformed_workload_is_kept_and_counted(
    sandbox: Sandbox, engine: Engine, tmp_path: Path
) -> None:
    assert sandbox.kubernetes is not None
    sandbox.kubernetes.corrupt(
        "deployments", "payments-test", "payments-api",
        ("metadata", "annotations", "deployment.kubernetes.io/revision"), "x",
    )  # fmt: skip
    summary = sync(sandbox, engine, tmp_path)
    assert summary.ok and summary.rejected == 1
    with engine.connect() as conn:
        rejected = conn.execute(
            select(RawPayload.external_id).where(RawPayload.rejected.is_(True))
        ).scalar_one()
    assert rejected == "payments-test/payments-api"


def test_revisions_seen_before_their_service_was_known_get_it_later(
    sandbox: Sandbox, engine: Engine, tmp_path: Path
) -> None:
    """The cluster synced before the source that knows the services: revisions pruned since then
    are never shown again, and still get their service once it is known."""
    sandbox.advance(NOW - timedelta(days=20))
    assert sync(sandbox, engine, tmp_path).ok
    with engine.connect() as conn:
        orphans = conn.execute(
            select(func.count()).where(ObservedWorkload.service_id.is_(None))
        ).scalar_one()
    assert orphans > 0
    known_services(engine, sandbox.org)
    sandbox.advance(NOW)
    assert sync(sandbox, engine, tmp_path).ok
    with engine.connect() as conn:
        left = conn.execute(
            select(ObservedWorkload.workload).where(ObservedWorkload.service_id.is_(None))
        ).all()
    assert left == []
