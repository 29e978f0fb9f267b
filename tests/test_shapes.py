"""Real-world data shapes (issue: numbers that hold on real-world data shapes): each is generated
by the sandbox with its ground truth, synced over real HTTP, and the figures equal the truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from analytics.derive import derive
from analytics.dora import metrics
from analytics.frames import lead_times
from analytics.scope import Scope
from analytics.stats import percentile
from collectors.gitlab import GitLabCollector
from sandbox import reference as ref
from sandbox.generate import generate
from sandbox.gitlab_payloads import unlisted_commits
from sandbox.model import Organisation
from sandbox.serve import Sandbox
from tests.sandbox_helpers import TOKEN_ENV, sandbox_settings
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import Commit, CommitParent

NOW = datetime(2025, 6, 2, tzinfo=UTC)
SECRET = "glpat-sandbox-secret"


def whole(org: Organisation) -> Scope:
    return Scope(org.start - timedelta(days=60), org.now + timedelta(days=1))


def synced(org: Organisation, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> dict:  # type: ignore[type-arg]
    """Sync `org` from the GitLab simulator over HTTP, derive; returns the metrics of all time."""
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    with Sandbox.start(org=org, token=SECRET) as running:
        settings = sandbox_settings(running)
        summary = GitLabCollector(settings.sources.gitlab[0], settings, engine).sync()  # type: ignore[arg-type]
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
