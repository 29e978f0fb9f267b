"""An SVN service built by Jenkins and deployed, end to end: `cdmetrics sync` reads the sandbox's
Subversion repository (svnserve, a password) and its Jenkins controller (the Jenkins simulator
over HTTP), derives, and `metrics` and the dashboard's data functions give the lead time and
deployment frequency of the ground truth (sandbox/svn_jenkins.py), on SQLite and PostgreSQL.
Also the Jenkins normaliser's reading of the Subversion plugin's payloads."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from analytics.rules import FailureRules
from analytics.scope import Scope
from collectors import jenkins_normalize as norm
from config.settings import Settings
from sandbox.jenkins_api import JenkinsSimulator
from sandbox.server import SimulatorApp, SimulatorServer
from sandbox.svn_jenkins import SERVICE, SvnDeliveryTruth, delivery_truth, jenkins_organisation
from sandbox.svn_repo import PASSWORD, USER, SvnRepository, start_repository
from tests.conftest import pg_schema, schema_url
from tests.test_cli import run
from warehouse.engine import open_warehouse
from warehouse.schema import Deployment, Pipeline

SINCE, UNTIL = "2026-11-01", "2026-11-30"
JENKINS_TOKEN = "jenkins-token"
pytestmark = pytest.mark.skipif(
    not all(shutil.which(c) for c in ("svn", "svnadmin", "svnserve")),
    reason="needs Debian's subversion (make install adds it)",
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SvnRepository, str]]:
    """The Subversion repository (served) and the Jenkins simulator's URL."""
    repo = start_repository(tmp_path_factory.mktemp("svn"))
    jenkins = JenkinsSimulator(jenkins_organisation(repo), "builder", JENKINS_TOKEN)
    server = SimulatorServer(SimulatorApp(jenkins.router, auth=jenkins.authorised))
    server.start()
    yield repo, server.url
    server.stop()
    repo.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def synced(
    request: pytest.FixtureRequest,
    world: tuple[SvnRepository, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """(warehouse URL, folder, sync summary) after `cdmetrics sync` of both sources."""
    repo, jenkins_url = world
    folder = tmp_path_factory.mktemp("svn-delivery")
    (folder / "cdmetrics.toml").write_text(
        f"""
[[sources.svn]]
name = "svn"
url = "{repo.url}"
username_env = "SVN_USER"
password_env = "SVN_PASSWORD"
service = "{SERVICE}"

[[sources.jenkins]]
name = "jenkins"
url = "{jenkins_url}"
""",
        encoding="utf-8",
    )
    with pg_schema() if request.param == "postgresql" else _nothing() as found:
        url = schema_url(found[1]) if found else f"sqlite:///{folder / 'w.db'}"
        result = run(folder, "--warehouse", url, "sync", env=ENV)
        assert result.returncode == 0, result.stderr
        yield url, folder, json.loads(result.stdout.strip().splitlines()[-1])


ENV = {
    "SVN_USER": USER,
    "SVN_PASSWORD": PASSWORD,
    "JENKINS_USER": "builder",
    "JENKINS_TOKEN": JENKINS_TOKEN,
}


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _truth(world: tuple[SvnRepository, str]) -> SvnDeliveryTruth:
    return delivery_truth(world[0])


def _expected(truth: SvnDeliveryTruth) -> dict[str, Any]:
    hours = pd.Series(truth.lead_times_hours)
    production = truth.production
    return {
        "deployments": len(production),
        "deployment_days": len({d.finished_at.date() for d in production}),
        "changes": len(hours),
        "median_hours": float(hours.quantile(0.5)),
        "p90_hours": float(hours.quantile(0.9)),
    }


def _figures(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "deployments": answer["deployment_frequency"]["deployments"],
        "deployment_days": answer["deployment_frequency"]["deployment_days"],
        "changes": answer["lead_time"]["changes"],
        "median_hours": answer["lead_time"]["median_hours"],
        "p90_hours": answer["lead_time"]["p90_hours"],
    }


def test_the_sync_links_builds_and_deployments_to_revisions(
    synced: tuple[str, Path, dict[str, Any]], world: tuple[SvnRepository, str]
) -> None:
    url, _, summary = synced
    assert summary["sources"]["svn"]["ok"] and summary["sources"]["jenkins"]["ok"]
    engine = open_warehouse(url)
    try:
        with engine.connect() as conn:
            pipelines = set(conn.execute(select(Pipeline.sha, Pipeline.ref)).all())
            deployments = set(
                conn.execute(select(Deployment.sha, Deployment.repo_id.is_not(None))).all()
            )
    finally:
        engine.dispose()
    assert pipelines == {(f"r{r}", "trunk") for r in (2, 3, 7, 8, 10, 11, 18, 19)}
    truth = _truth(world)
    assert deployments == {(f"r{d.revision}", True) for d in truth.deployments}


def test_metrics_give_the_truths_lead_time_and_deployment_frequency(
    synced: tuple[str, Path, dict[str, Any]], world: tuple[SvnRepository, str]
) -> None:
    url, folder, _ = synced
    result = run(
        folder, "--warehouse", url, "metrics", "--since", SINCE, "--until", UNTIL,
        "--service", SERVICE, "--format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = _expected(_truth(world))
    assert expected["changes"] == 8  # r4-r7 (r8 is the merge), r10-r11, r18-r19
    assert _figures(json.loads(result.stdout)) == pytest.approx(expected)


def test_the_dashboards_data_give_the_same_figures(
    synced: tuple[str, Path, dict[str, Any]], world: tuple[SvnRepository, str]
) -> None:
    from dashboard import data, tiles

    url, _, _ = synced
    scope = Scope.parse(SINCE, UNTIL, services=(SERVICE,), timezone="UTC")
    rules = FailureRules.from_settings(Settings())
    figures = data.metrics(url, scope, rules, tuple(tiles.DORA), tiles.PARTS)["total"]
    assert _figures(figures) == pytest.approx(_expected(_truth(world)))


# --- the Jenkins normaliser on the Subversion plugin's shapes --------------------------------


def _svn_build(**extra: Any) -> dict[str, Any]:
    return {
        "_class": "hudson.model.FreeStyleBuild",
        "number": 4,
        "actions": [],
        "changeSets": [
            {
                "_class": "hudson.scm.SubversionChangeLogSet",
                "kind": "svn",
                "items": [
                    {
                        "commitId": "13",
                        "revision": 13,
                        "msg": "fix",
                        "timestamp": 1,
                        "author": {"fullName": "dave"},
                    },
                ],
                "revisions": [
                    {"module": "svn://svn.example/repos/pay/branches/hotfix-1", "revision": 13}
                ],
            }
        ],
        **extra,
    }


def test_a_subversion_changelog_names_its_revision_and_line() -> None:
    assert norm.revisions(_svn_build()) == [
        norm.Revision(("svn://svn.example/repos/pay/branches/hotfix-1",), "r13", "hotfix-1")
    ]
    assert [c["sha"] for c in norm.change_commits(_svn_build())] == ["r13"]


def test_an_svn_revision_parameter_names_the_deployed_commit() -> None:
    build = {
        "number": 2, "result": "SUCCESS", "timestamp": 1_700_000_000_000, "duration": 1000,
        "actions": [{"_class": "hudson.model.ParametersAction", "parameters": [
            {"name": "ENV", "value": "production"}, {"name": "SVN_REVISION", "value": "19"},
            {"name": "SVN_URL", "value": "svn://svn.example/repos/pay/trunk"}]}],
    }  # fmt: skip
    revision = norm.revisions(build)[0]
    assert (revision.sha, revision.branch) == ("r19", "trunk")
    row = norm.normalize_deployment(
        build, 1, "deploy-pay", service_id=None, environment_id=None, repo_id=None,
        revision=None, env_parameter="ENV", image_parameter="IMAGE", schema_jobs="migrat",
    )  # fmt: skip
    assert row["sha"] is None  # the collector passes the revision it chose
    row = norm.normalize_deployment(
        build, 1, "deploy-pay", service_id=None, environment_id=None, repo_id=None,
        revision=revision, env_parameter="ENV", image_parameter="IMAGE", schema_jobs="migrat",
    )  # fmt: skip
    assert (row["sha"], row["ref"]) == ("r19", "trunk")


# --- the branch policies on Subversion lines (the existing policies, no copies) ---------------


def test_branch_policies_see_subversion_lines(
    synced: tuple[str, Path, dict[str, Any]], world: tuple[SvnRepository, str]
) -> None:
    from analytics.policies.run import scan

    repo = world[0]
    path = ["test", "staging", "production"]
    november = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    engine = open_warehouse(synced[0])
    try:
        with engine.connect() as conn:
            found = scan(conn, *november, path, only=["direct-push", "long-lived-branch"])
            later = scan(conn, november[0], datetime(2026, 12, 10, tzinfo=UTC), path,
                         only=["stale-branch"])  # fmt: skip
    finally:
        engine.dispose()
    # every commit on trunk's first-parent line but its root: Subversion has no merge requests
    pushed = {v.subject.rsplit(":", 1)[1] for v in found if v.policy == "direct-push"}
    assert pushed == {f"r{n}" for n in (2, 3, 7, 8, 10, 11, 18, 19)}
    # unmerged branches, aged by their first commit not on trunk (the merged and the deleted
    # feature-login is neither); hotfix-1.0.1's first is the tag's copy r9 it was copied from
    long_lived = {
        v.subject.rsplit(":", 1)[1]: v.occurred_at for v in found if v.policy == "long-lived-branch"
    }
    week = timedelta(days=7)
    assert long_lived == {"experiment": repo.date(16) + week, "hotfix-1.0.1": repo.date(9) + week}
    assert {v.subject.rsplit(":", 1)[1] for v in later} == {"experiment", "hotfix-1.0.1"}


def test_the_sandbox_serves_the_repository_on_request(tmp_path: Path) -> None:
    """`Sandbox.start(svn=True)` (`cdmetrics demo --svn`): the repository and its Jenkins jobs
    beside the organisation, with the sources to sync them; the svn service's deployments are
    linked to its revisions."""
    from collectors.run import run_sync
    from sandbox.serve import Sandbox

    with Sandbox.start("small", registry=False, svn=True) as sandbox:
        assert sandbox.svn_repo is not None
        sources, environ = sandbox.sources()
        assert sources["svn"][0]["url"] == sandbox.svn_repo.url
        assert "[[sources.svn]]" in sandbox.describe()
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environ.items():
                patch.setenv(name, value)
            settings = Settings(
                warehouse={"url": f"sqlite:///{tmp_path / 'w.db'}"},
                sources={k: v for k, v in sources.items() if k in ("svn", "jenkins")},
                sync={"requests_per_second": 0},
            )
            engine = open_warehouse(settings.warehouse.url)
            summaries = {s.name: s for s in run_sync(settings, engine)}
        assert summaries["svn"].ok and summaries["svn"].requests == 3
        assert summaries["jenkins"].ok, summaries["jenkins"].errors
        truth = delivery_truth(sandbox.svn_repo)
        with engine.connect() as conn:
            shas = conn.execute(
                select(Deployment.sha).where(Deployment.external_id.like("deploy-svn-payments#%"))
            ).scalars()
            assert sorted(shas) == sorted(f"r{d.revision}" for d in truth.deployments)
        engine.dispose()


def test_a_deployment_from_a_subversion_tag_is_from_a_tag() -> None:
    from analytics.policies.non_release_ref import allowed

    assert (
        norm.svn_line("https://svn.example/repos/pay/tags/release-1.1") == "refs/tags/release-1.1"
    )
    assert norm.svn_line("https://svn.example/repos/pay/tags/release-1.1/sub") == (
        "refs/tags/release-1.1"
    )
    assert norm.svn_line("https://svn.example/repos/pay") is None
    assert allowed("refs/tags/release-1.1", "trunk", ["release/*"])
    assert allowed("trunk", "trunk", []) and not allowed("experiment", "trunk", ["release/*"])
