"""Real-world data shapes (issue: numbers that hold on real-world data shapes): each is generated
by the sandbox with its ground truth, synced over real HTTP, and the figures equal the truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from analytics.derive import derive
from analytics.frames import lead_times
from analytics.metrics import metrics
from analytics.scope import Scope
from analytics.stats import percentile
from analytics.views.delivery import merge_requests_of
from collectors.frame import SyncOptions
from collectors.gitlab import GitLabCollector
from sandbox import reference as ref
from sandbox.duplicates import COPY
from sandbox.generate import generate
from sandbox.gitlab_payloads import unlisted_commits
from sandbox.model import Organisation
from sandbox.regions import regional_service
from sandbox.serve import Sandbox
from sandbox.server import FaultRule
from tests.sandbox_helpers import TOKEN_ENV, sandbox_settings
from tests.sandbox_load import load_org
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import (
    ChangeFailure,
    Commit,
    CommitParent,
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Environment,
    MergeRequest,
    Repo,
)

NOW = datetime(2025, 6, 2, tzinfo=UTC)
SECRET = "glpat-sandbox-secret"


def whole(org: Organisation) -> Scope:
    return Scope(org.start - timedelta(days=60), org.now + timedelta(days=1))


def synced(org: Organisation, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> dict:  # type: ignore[type-arg]
    """Sync `org` from the GitLab simulator over HTTP, derive; returns the metrics of all time."""
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    with Sandbox.start(org=org, token=SECRET) as running:
        settings = sandbox_settings(running)
        summary = GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine)).sync()  # type: ignore[arg-type]
    assert summary.ok, summary.errors
    derive(engine)
    with engine.connect() as conn:
        return metrics(conn, whole(org))


@pytest.fixture(scope="module")
def deleted_org() -> Organisation:
    """Every merged feature branch deleted on merge (GitLab's default)."""
    return generate(5, "small", NOW, jenkins=0, deleted_branches=1.0)


def stage_medians(org: Organisation) -> dict[str, float | None]:
    truth = [m for m in ref.merge_requests(org) if m.deployment_id is not None and not m.baseline]
    return {
        stage: percentile([v for m in truth if (v := getattr(m, stage)) is not None], 0.5)
        for stage in ("coding", "pickup", "review", "deploy", "cycle")
    }


def test_squash_merge_with_deleted_source_branch_keeps_lead_time_and_stages(
    deleted_org: Organisation, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The squashed commits are on no branch once the source branch is deleted: they come from the
    merge request's commits, and lead time starts at the first of them (DESIGN section 4)."""
    org = deleted_org
    hidden = {sha for s in org.services for sha in unlisted_commits(s, org.now)}
    assert len(hidden) > 20  # the shape is there: commits only a merge request lists
    figures = synced(org, engine, monkeypatch)
    with engine.connect() as conn:
        stored = set(conn.execute(select(Commit.sha).where(Commit.sha.in_(hidden))).scalars())
        with_parents = conn.execute(
            select(func.count()).where(CommitParent.sha.in_(hidden))
        ).scalar_one()
    assert stored == hidden and with_parents == 0
    expected = sorted(round(t.hours, 6) for t in ref.lead_times(org) if not t.is_merge)
    assert sorted(round(h, 6) for h in lead_times(engine, whole(org))["hours"]) == expected
    assert figures["lead_time"]["stages"] == pytest.approx(stage_medians(org))


def test_deleted_source_branches_give_the_same_figures_as_kept_ones(
    deleted_org: Organisation,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    kept_org = generate(5, "small", NOW, jenkins=0, deleted_branches=0.0)
    results = []
    for name, org in (("deleted", deleted_org), ("kept", kept_org)):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(engine)
        figures = synced(org, engine, monkeypatch)
        results.append((figures["lead_time"], sorted(lead_times(engine, whole(org))["hours"])))
        engine.dispose()
    assert results[0] == results[1]


def test_a_closed_duplicate_of_a_merged_merge_request_is_never_the_one_named(
    deleted_org: Organisation, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge request from a copy of a branch under review lists the same commits and is closed
    unmerged (`sandbox.duplicates`): synced like the others, it is stored closed beside the merged
    one, and each commit both list is the merged one's change (lead time stages equal the truth)."""
    org = deleted_org
    duplicates = [
        (s.path, m.iid, merged.iid, m.commits)
        for s in org.services
        for m in s.merge_requests
        if m.state == "closed"
        for merged in s.merge_requests
        if merged.state == "merged"
        and (merged.source_branch + COPY, merged.commits) == (m.source_branch, m.commits)
    ]
    assert duplicates  # the shape is there
    figures = synced(org, engine, monkeypatch)
    assert figures["lead_time"]["stages"] == pytest.approx(stage_medians(org))
    with engine.connect() as conn:
        repos = dict(conn.execute(select(Repo.path, Repo.id)).all())
        for path, closed, merged, commits in duplicates:
            repo = repos[path]
            states = dict(
                conn.execute(
                    select(MergeRequest.iid, MergeRequest.state).where(
                        MergeRequest.repo_id == repo, MergeRequest.iid.in_((closed, merged))
                    )
                ).all()
            )
            assert states == {closed: "closed", merged: "merged"}, path
            named = merge_requests_of(conn, {(repo, sha) for sha in commits})
            assert len(named) == len(commits) and closed not in {m["iid"] for m in named.values()}
            assert named[(repo, commits[-1])]["iid"] == merged, path


# -- late data -----------------------------------------------------------------------------------


def derived(engine: Engine) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """Every derived row, keyed by its deployment's external id (a merge request's first commit
    by its project's path) instead of surrogate ids."""
    ext = Deployment.external_id
    with engine.connect() as conn:
        return {
            "chain": sorted(
                conn.execute(
                    select(ext, DeploymentChain.baseline, DeploymentChain.rollback)
                    .add_columns(DeploymentChain.changes, DeploymentChain.finished_at)
                    .join(DeploymentChain, DeploymentChain.deployment_id == Deployment.id)
                ).all()
            ),
            "change": sorted(
                conn.execute(
                    select(ext, DeploymentChange.sha, DeploymentChange.started_at)
                    .add_columns(
                        DeploymentChange.is_merge,
                        DeploymentChange.first_in_environment,
                        DeploymentChange.first_in_production,
                    )
                    .join(DeploymentChange, DeploymentChange.deployment_id == Deployment.id)
                ).all()
            ),
            "failure": sorted(
                conn.execute(
                    select(ext, ChangeFailure.incident, ChangeFailure.rollback)
                    .add_columns(ChangeFailure.hotfix, ChangeFailure.recovered_at)
                    .join(ChangeFailure, ChangeFailure.deployment_id == Deployment.id)
                ).all()
            ),
            "first commit": sorted(
                conn.execute(
                    select(Repo.path, MergeRequest.iid, MergeRequest.first_commit_at).join(
                        Repo, Repo.id == MergeRequest.repo_id
                    )
                ).all()
            ),
        }


@pytest.fixture(scope="module")
def late_org() -> Organisation:
    return generate(7, "small", NOW, jenkins=0)


@pytest.fixture(scope="module")
def clean_derived(
    late_org: Organisation, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """`derived()` of a clean sync of `late_org` (SQLite), once for both backends' tests."""
    reference = make_engine(f"sqlite:///{tmp_path_factory.mktemp('clean') / 'clean.db'}")
    upgrade(reference)
    with pytest.MonkeyPatch.context() as mp:
        synced(late_org, reference, mp)
    figures = derived(reference)
    reference.dispose()
    return figures


def test_late_commits_and_merge_requests_re_derive_the_deployments_they_affect(
    engine: Engine,
    late_org: Organisation,
    clean_derived: dict[str, list[tuple]],  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sync whose commit and merge-request streams failed for some projects is derived; a clean
    resume brings the missing commits and merge requests late; the next (incremental) derive
    equals a clean sync's, table by table."""
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    with Sandbox.start(org=late_org, token=SECRET) as running:
        settings = sandbox_settings(running)
        source = settings.sources.gitlab[0]
        faults = running.gitlab_app.faults
        faults.add(FaultRule(path=r"/merge_requests/\d+/commits", kind="500", after=20))
        faults.add(FaultRule(path=r"/repository/commits", kind="500", after=3))
        broken = GitLabCollector(source, SyncOptions(settings, engine, max_retries=1)).sync()  # type: ignore[arg-type]
        assert not broken.ok
        derive(engine)
        assert derived(engine) != clean_derived  # derived from what it had: wrong
        faults.clear()
        assert GitLabCollector(source, SyncOptions(settings, engine)).sync().ok  # type: ignore[arg-type]
    summary = derive(engine)
    assert summary.chains > 0
    assert derived(engine) == clean_derived


# -- several production regions; a deploy job naming a service no code source knows ------------


@pytest.fixture
def loaded(engine: Engine) -> tuple[Organisation, Engine]:
    """The small organisation loaded as GitLab serves it, derived, on SQLite and PostgreSQL."""
    org = generate(1, "small", NOW)
    load_org(engine, org)
    derive(engine)
    return org, engine


def test_a_change_shipped_to_two_production_regions_counts_once(
    loaded: tuple[Organisation, Engine],
) -> None:
    """Deployment frequency counts both regions; lead time counts each change once, at its first
    production deployment in either; failures follow each region's chain."""
    org, engine = loaded
    service = regional_service(org)
    assert service is not None and "production-us" in service.environments
    scope = Scope(
        org.start - timedelta(days=60), org.now + timedelta(days=1), services=(service.name,)
    )
    with engine.connect() as conn:
        figures = metrics(conn, scope)
        regions = conn.execute(
            select(Environment.name, Environment.tier, Environment.position).where(
                Environment.name.in_(("production", "production-us"))
            )
        ).all()
    assert {(n, t, p) for n, t, p in regions} == {
        ("production", "production", 2),
        ("production-us", "production", 2),
    }
    production = [t for t in ref.production_deployments(org) if t.service == service.name]
    assert {t.environment for t in production} == {"production", "production-us"}
    assert figures["deployment_frequency"]["deployments"] == len(production)
    lead = [t for t in ref.lead_times(org) if t.service == service.name and not t.is_merge]
    assert figures["lead_time"]["changes"] == len(lead)  # once, not once per region
    shipped = sum(len(t.changes) for t in production)
    assert shipped > len(lead)  # the changes did reach production twice
    failures = {i: f for i, f in ref.change_failures(org).items() if f.failed}
    mine = [i for i in failures if i in {t.id for t in production}]
    assert figures["change_failure_rate"]["failed"] == len(mine)


def test_a_deploy_job_naming_a_service_no_code_source_knows_keeps_its_merge_requests(
    loaded: tuple[Organisation, Engine],
) -> None:
    """The deployments of `<team>-be` (a service GitLab does not know) carry the GitLab project's
    merge requests: the MR breakdown reads the deployment's repository, as the changes do."""
    org, engine = loaded
    aliased = next(s for s in org.services if s.deploy_name)
    scope = Scope(
        org.start - timedelta(days=60), org.now + timedelta(days=1), services=(aliased.deploy_name,)
    )
    with engine.connect() as conn:
        figures = metrics(conn, scope)
    graph = ref.CommitGraph(aliased)
    carriers = ref.first_carriers(graph, ref.service_production(aliased, graph))
    truth = [
        m
        for m in ref.merge_requests(org)
        if m.service == aliased.name and m.deployment_id is not None and not m.baseline
    ]
    assert carriers and truth
    assert figures["lead_time"]["merge_requests"] == len(truth)
    assert figures["lead_time"]["changes"] == len(
        [t for t in ref.lead_times(org) if t.service == aliased.name and not t.is_merge]
    )
