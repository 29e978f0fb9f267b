"""The SQL analytics equal the sandbox's ground truth (an independent reimplementation of the
definitions, sandbox/reference.py) on generated organisations: per deployment, per change, per
failure, and every headline figure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from analytics.derive import derive
from analytics.frames import lead_times
from analytics.metrics import metrics
from analytics.scope import Scope
from analytics.stats import percentile
from sandbox import reference as ref
from sandbox.generate import generate
from sandbox.image_repos import layout
from sandbox.model import Organisation
from tests.sandbox_load import load_org
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import ChangeFailure, Deployment, DeploymentChain, DeploymentChange

NOW = datetime(2025, 6, 2, tzinfo=UTC)


@pytest.fixture(scope="module", params=["small", "demo"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Organisation, Engine]]:
    org = generate(1, request.param, NOW)
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp(request.param) / 'w.db'}")
    upgrade(engine)
    load_org(engine, org)
    derive(engine)
    yield org, engine
    engine.dispose()


def whole(org: Organisation) -> Scope:
    return Scope(org.start - timedelta(days=60), org.now + timedelta(days=1))


def test_chains_and_changes_equal_the_truth(world: tuple[Organisation, Engine]) -> None:
    org, engine = world
    truth = ref.deployment_changes(org)
    with engine.connect() as conn:
        chains = {
            int(ext): (bool(b), bool(r))
            for ext, b, r in conn.execute(
                select(
                    Deployment.external_id, DeploymentChain.baseline, DeploymentChain.rollback
                ).join(DeploymentChain, DeploymentChain.deployment_id == Deployment.id)
            )
        }
        changes: dict[int, set[str]] = {}
        for ext, sha in conn.execute(
            select(Deployment.external_id, DeploymentChange.sha).join(
                DeploymentChange, DeploymentChange.deployment_id == Deployment.id
            )
        ):
            changes.setdefault(int(ext), set()).add(sha)
    assert chains == {i: (t.baseline, t.rollback) for i, t in truth.items()}
    assert changes == {i: set(t.changes) for i, t in truth.items() if t.changes}


def test_lead_times_equal_the_truth(world: tuple[Organisation, Engine]) -> None:
    org, engine = world
    expected = sorted(round(t.hours, 6) for t in ref.lead_times(org) if not t.is_merge)
    per_change = sorted(round(h, 6) for h in lead_times(engine, whole(org))["hours"])
    assert per_change == expected  # every change's lead time, not only the statistics
    result = metrics_of(engine, org)
    assert result["lead_time"]["changes"] == len(expected)
    assert result["lead_time"]["median_hours"] == pytest.approx(percentile(expected, 0.5), abs=1e-6)
    assert result["lead_time"]["p90_hours"] == pytest.approx(percentile(expected, 0.9), abs=1e-6)


def test_failed_changes_and_recoveries_equal_the_truth(world: tuple[Organisation, Engine]) -> None:
    org, engine = world
    truth = {i: f for i, f in ref.change_failures(org).items() if f.failed}
    recoveries = ref.recoveries(org)
    with engine.connect() as conn:
        found = {
            int(ext): (inc, rb, hf, rec)
            for ext, inc, rb, hf, rec in conn.execute(
                select(
                    Deployment.external_id,
                    ChangeFailure.incident,
                    ChangeFailure.rollback,
                    ChangeFailure.hotfix,
                    ChangeFailure.recovered_at,
                ).join(ChangeFailure, ChangeFailure.deployment_id == Deployment.id)
            )
        }
    assert set(found) == set(truth)
    for i, (incident, rollback, hotfix, recovered) in found.items():
        reasons = {
            name
            for name, flag in (("incident", incident), ("rollback", rollback), ("hotfix", hotfix))
            if flag
        }
        assert reasons == set(truth[i].reasons), i
        assert recovered == recoveries[i].recovered_at, i


def metrics_of(engine: Engine, org: Organisation) -> dict:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return metrics(conn, whole(org))


def test_headline_figures_equal_the_truth(world: tuple[Organisation, Engine]) -> None:
    org, engine = world
    figures = metrics_of(engine, org)
    production = ref.production_deployments(org)
    failures = {i: f for i, f in ref.change_failures(org).items() if f.failed}
    recovered = [r.hours for r in ref.recoveries(org).values() if r.hours is not None]
    assert figures["deployment_frequency"]["deployments"] == len(production)
    cfr = figures["change_failure_rate"]
    assert (cfr["failed"], cfr["deployments"]) == (len(failures), len(production))
    for reason in ("incident", "rollback", "hotfix"):
        assert cfr["reasons"][reason] == sum(1 for f in failures.values() if reason in f.reasons)
    assert figures["recovery_time"]["failures"] == len(recovered)
    assert figures["recovery_time"]["median_hours"] == pytest.approx(percentile(recovered, 0.5))
    restore = [i.hours_to_restore for i in ref.incidents(org) if i.hours_to_restore is not None]
    assert figures["recovery_time"]["incident_restore_median_hours"] == pytest.approx(
        percentile(restore, 0.5)
    )
    backwards = sum(1 for i in ref.incidents(org) if i.resolved_before_opened)
    assert backwards and figures["recovery_time"]["incidents_resolved_before_opened"] == backwards
    assert figures["rework_rate"]["rework"] == sum(1 for kinds in ref.rework(org).values() if kinds)
    rates = ref.deployment_failure_rates(org)
    assert {
        env: (v["failed"], v["attempts"])
        for env, v in figures["deployment_failure_rate"]["environments"].items()
    } == rates
    # top level: the scope's environment, production by default, like every other metric
    top = figures["deployment_failure_rate"]
    tiers = {e.canonical: e.tier for s in org.services for e in s.environments.values()}
    production = [v for env, v in rates.items() if tiers[env] == "production"]  # regions too
    assert len(production) == 2
    assert (top["failed"], top["attempts"]) == tuple(map(sum, zip(*production, strict=True)))
    # test and staging count apart
    assert sum(a for _, a in rates.values()) > rates["production"][1]


@pytest.mark.parametrize("days_before_now", [0, 30])
def test_merged_mrs_not_in_production_equal_the_truth(
    world: tuple[Organisation, Engine], days_before_now: int
) -> None:
    """Count and ages (merge -> the scope's end) of the merged MRs whose merge or squash commit no
    production deployment finished before the end carries; a month back, more were waiting."""
    org, engine = world
    until = org.now - timedelta(days=days_before_now)
    truth = ref.merged_not_in_production(org, until)
    first_production = {}
    for t in ref.production_deployments(org):
        first_production.setdefault(t.service, t.finished_at)
    # the warehouse has no history before a service's first production deployment: an MR merged
    # before it counts as carried by it (docs/METRICS.md)
    truth = [
        m
        for m in truth
        if first_production.get(m.service, until) >= until
        or m.merged_at > first_production[m.service]
    ]
    with engine.connect() as conn:
        got = metrics(conn, Scope(org.start - timedelta(days=60), until))["lead_time"]
    waiting = got["merged_not_in_production"]
    ages = [(until - m.merged_at).total_seconds() / 3600 for m in truth]
    assert truth and waiting["count"] == len(truth)
    assert waiting["median_age_hours"] == pytest.approx(percentile(ages, 0.5), abs=1e-6)
    assert waiting["oldest_age_hours"] == pytest.approx(max(ages), abs=1e-6)


def test_merge_request_stages_equal_the_truth(world: tuple[Organisation, Engine]) -> None:
    org, engine = world
    truth = [m for m in ref.merge_requests(org) if m.deployment_id is not None and not m.baseline]
    stages = metrics_of(engine, org)["lead_time"]["stages"]
    assert metrics_of(engine, org)["lead_time"]["merge_requests"] == len(truth)
    for stage in ("coding", "pickup", "review", "deploy", "cycle"):
        values = [getattr(m, stage) for m in truth if getattr(m, stage) is not None]
        assert stages[stage] == pytest.approx(percentile(values, 0.5)), stage


def test_small_org_on_postgresql(engine: Engine, tmp_path: Path) -> None:
    """The same organisation gives identical metrics on this backend and on SQLite."""
    org = generate(1, "small", NOW)
    other = make_engine(f"sqlite:///{tmp_path / 'sqlite.db'}")
    upgrade(other)
    results = []
    for e in (engine, other):
        load_org(e, org)
        derive(e)
        with e.connect() as conn:
            results.append(metrics(conn, whole(org), by="week"))
    assert results[0] == results[1]


def test_deployment_digests_resolved_from_gitlab_data(world: tuple[Organisation, Engine]) -> None:
    """GitLab's registry knows tags, not commits: a tag naming a commit gives the image its
    revision, and a deployment of that commit resolves to it. An image rebuilt for production is
    tagged `<sha>-<env>` (no revision by the default pattern), so GitLab data alone resolves its
    deployment to the first build; the registry collector's labels tell them apart. A service
    building each commit into two repositories (app and worker) whose deployments, loaded here
    GitLab's way, name no image has two candidates per commit: its deployments stay unresolved."""
    org, engine = world
    truth = {str(d.id): d for s in org.services for d in s.deployments}
    two = {str(d.id) for s in org.services if len(layout(s)) == 2 for d in s.deployments}
    # as are those of a service known by its deploy name only: no repository, no image named
    two |= {str(d.id) for s in org.services if s.deploy_name for d in s.deployments}
    with engine.connect() as conn:
        found = conn.execute(
            select(
                Deployment.external_id, Deployment.image_digest, Deployment.image_resolution
            ).where(Deployment.kind == "app")  # a migration deploys no image
        ).all()
    assert {how for ext, _, how in found if ext in two} <= {"none"}
    rows = [r for r in found if r.external_id not in two]
    assert {how for _, _, how in rows} == {"revision"}
    rebuilt = {i.digest for s in org.services for i in s.images if "-" in i.tag}  # `<sha>-<env>`
    wrong = [ext for ext, digest, _ in rows if digest != truth[ext].digest]
    assert wrong and all(truth[ext].digest in rebuilt for ext in wrong)
