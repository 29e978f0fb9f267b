"""The Jenkins collector against the sandbox's Jenkins simulator, over real HTTP (python-jenkins);
with the GitLab collector beside it, the metrics of both equal the reference implementation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jenkins
import pytest
import requests
from rich.console import Console
from sqlalchemy import Engine, func, select

from analytics.derive import derive
from analytics.metrics import metrics
from analytics.scope import Scope
from analytics.stats import percentile
from collectors.frame import SyncOptions
from collectors.gitlab import GitLabCollector
from collectors.jenkins import JenkinsCollector
from collectors.run import run_sync
from config.settings import Settings
from sandbox import reference as ref
from sandbox import truth
from sandbox.generate import generate
from sandbox.jenkins_api import DELETE
from sandbox.jenkins_org import Style, building, iter_jobs, shown_result, visible
from sandbox.model import JenkinsBuild, JenkinsJob, Organisation
from sandbox.serve import Sandbox
from sandbox.server import FaultRule, RateLimit
from tests.sandbox_helpers import (
    DATE_RETRY_AFTER,
    HISTORY_END,
    TOKEN_ENV,
    answer_429_with_a_date,
    assert_waited_retry_after,
    by_natural_keys,
    differences,
    record_waits,
    snapshot,
)
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import (
    Commit,
    Deployment,
    Environment,
    Job,
    Pipeline,
    RawPayload,
    Repo,
    Service,
    Source,
    TestRun,
)

TOKEN = "jenkins-api-token-secret"
USER_ENV, JENKINS_TOKEN_ENV = "CDM_TEST_JENKINS_USER", "CDM_TEST_JENKINS_TOKEN"
TABLES = ("pipeline", "job", "test_run", "deployment")
NOW = datetime(2025, 6, 2, tzinfo=UTC)


def settings_for(sandbox: Sandbox, gitlab: bool = False, **sync: Any) -> Settings:
    sources: dict[str, Any] = {
        "jenkins": [
            {
                "name": "jenkins",
                "url": sandbox.jenkins_url,
                "user_env": USER_ENV,
                "token_env": JENKINS_TOKEN_ENV,
            }
        ]
    }
    if gitlab:
        sources["gitlab"] = [
            {
                "name": "gitlab",
                "url": sandbox.gitlab_url,
                "token_env": TOKEN_ENV,
                "groups": ["acme"],
            }
        ]
    sync = {"requests_per_second": 0, "history_days": sandbox.history_days(), **sync}
    return Settings(sources=sources, sync=sync)


def sync(sandbox: Sandbox, engine: Engine, **options: Any):  # type: ignore[no-untyped-def]
    settings = settings_for(sandbox)
    return JenkinsCollector(
        settings.sources.jenkins[0], SyncOptions(settings, engine, **options)
    ).sync()


def fresh(tmp_path: Path, name: str) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    upgrade(engine)
    return engine


def set_env(mp: pytest.MonkeyPatch, token: str = TOKEN) -> None:
    mp.setenv(TOKEN_ENV, TOKEN)
    mp.setenv(USER_ENV, "sandbox")
    mp.setenv(JENKINS_TOKEN_ENV, token)


def jenkins_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        source = conn.execute(select(Source.id).where(Source.name == "jenkins")).scalar_one()
        return {
            t.__tablename__: conn.execute(
                select(func.count()).select_from(t).where(t.source_id == source)
            ).scalar_one()
            for t in (Pipeline, Job, TestRun, Deployment)
        }


def builds(org: Organisation, at: datetime) -> Iterator[tuple[JenkinsJob, JenkinsBuild]]:
    for job in iter_jobs(org.jenkins):
        for b in job.builds:
            if visible(b, at):
                yield job, b


@pytest.fixture(scope="module")
def small_org() -> Organisation:
    return generate(7, "small", HISTORY_END)


@pytest.fixture
def sandbox(small_org: Organisation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    set_env(monkeypatch)
    with Sandbox.start(org=small_org, token=TOKEN, keep_log=True) as running:
        yield running


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    set_env(monkeypatch)
    with Sandbox.start(org=generate(3, "tiny", jenkins=1), token=TOKEN, keep_log=True) as running:
        yield running


@pytest.fixture(scope="module")
def synced(
    small_org: Organisation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Organisation, Engine]]:
    """GitLab, then Jenkins, synced once into one warehouse."""
    engine = fresh(tmp_path_factory.mktemp("synced"), "w.db")
    with pytest.MonkeyPatch.context() as mp, Sandbox.start(org=small_org, token=TOKEN) as sb:
        set_env(mp)
        settings = settings_for(sb, gitlab=True)
        assert GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine)).sync().ok
        summary = JenkinsCollector(
            settings.sources.jenkins[0], SyncOptions(settings, engine)
        ).sync()
        assert summary.ok and summary.rejected == 0, summary.errors
    yield small_org, engine
    engine.dispose()


# -- a full sync --------------------------------------------------------------------------------


def test_full_sync_equals_ground_truth(synced: tuple[Organisation, Engine]) -> None:
    org, engine = synced
    expected = truth.jenkins_counts(org)
    assert jenkins_rows(engine) == {t: expected[t] for t in TABLES}
    with engine.connect() as conn:
        repos = dict(conn.execute(select(Repo.path, Repo.id)).all())
        assert len(repos) == len(org.services)  # Jenkins found GitLab's repos, made none
        pipelines = {
            r.external_id: r
            for r in conn.execute(select(Pipeline).where(Pipeline.job_name.is_not(None)))
        }
        deployments = {
            r.external_id: r
            for r in conn.execute(
                select(Deployment, Service.name.label("service"), Environment.name.label("env"))
                .join(Service, Service.id == Deployment.service_id)
                .join(Environment, Environment.id == Deployment.environment_id)
                .where(Deployment.pipeline_external_id.is_(None) | Deployment.url.contains("/job/"))
            )
        }
        suites = {(r.pipeline_external_id, r.suite): r for r in conn.execute(select(TestRun))}
    assert any("/db-migrations/" in job.full_name for job, _ in builds(org, org.now))
    for job, b in builds(org, org.now):
        ext = f"{job.full_name}#{b.number}"
        s = org.service(job.service or "")
        finished = None if building(b, org.now) else b.finished_at
        if job.deploy:
            deployed, d = deployments[ext], b.deployment
            assert (deployed.service, deployed.sha, deployed.ref) == (s.deployed_as, b.sha, b.ref)
            # a migration job's builds are kind schema, the version from MIGRATION_VERSION
            kind = "schema" if "/db-migrations/" in ext else "app"
            assert (deployed.kind, deployed.schema_version) == (
                kind,
                b.parameters.get("MIGRATION_VERSION"),
            )
            # a deploy job naming a service no one else knows (Service.deploy_name): its repo is
            # only known from a checkout of its own, and a migration build checks out nothing
            unknown = s.deploy_name is not None and not b.checkouts
            repo = None if unknown else repos[s.path]
            assert (deployed.repo_id, deployed.finished_at) == (repo, finished)
            if d is not None:  # a finished deployment of the generated history
                env = d.environment
                assert (deployed.env, deployed.raw_environment) == (env.canonical, env.name)
                assert (deployed.status, deployed.finished_at) == (d.status, d.finished_at)
            continue
        built = pipelines[ext]
        assert (built.sha, built.ref, built.repo_id) == (b.sha, b.ref, repos[s.path])
        assert (built.started_at, built.finished_at) == (b.started_at, finished)
        assert built.raw_status == (None if finished is None else b.result)
        for t in b.test_suites if finished else []:
            run = suites[(ext, t.name)]
            assert (run.total, run.failed, run.skipped) == (t.total, t.failed, t.skipped)


def test_aborted_is_canceled_and_unstable_keeps_its_raw_status(
    synced: tuple[Organisation, Engine],
) -> None:
    _, engine = synced
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(
                select(Pipeline.raw_status, Pipeline.status)
                .where(Pipeline.job_name.is_not(None))
                .distinct()
            ).all()
        )
        aborted_stages = (
            conn.execute(select(Job.status).where(Job.raw_status == "ABORTED").distinct())
            .scalars()
            .all()
        )
    assert statuses["ABORTED"] == "canceled"
    assert statuses["UNSTABLE"] == "failed"  # tests failed: failed, UNSTABLE kept beside it
    assert statuses["FAILURE"] == "failed" and statuses["SUCCESS"] == "success"
    assert aborted_stages == ["canceled"]


def test_image_parameter_digest_is_explicit_and_a_tag_waits_for_resolution(
    synced: tuple[Organisation, Engine],
) -> None:
    org, engine = synced
    styles = {
        s.deployed_as: Style.of(i)
        for i, s in enumerate(s for s in org.services if s.builder == "jenkins")
    }
    assert {st.image for st in styles.values()} == {"digest", "tag"}
    truth_digests = {
        f"{job.full_name}#{b.number}": b.deployment.digest
        for job, b in builds(org, org.now)
        if job.deploy and b.deployment
    }
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Deployment.external_id,
                Service.name,
                Deployment.image_digest,
                Deployment.image_ref,
                Deployment.image_resolution,
            )
            .join(Service, Service.id == Deployment.service_id)
            .where(Deployment.external_id.contains("#"), Deployment.kind == "app")
        ).all()
    assert rows
    for ext, service, digest, image_ref, resolution in rows:
        assert image_ref
        if styles[service].image == "digest":
            assert resolution == "explicit" and image_ref.endswith(f"@{digest}")
            assert ext not in truth_digests or digest == truth_digests[ext]
        else:
            assert (digest, resolution) == (None, "none")
            assert image_ref.rsplit(":", 1)[1] and "@" not in image_ref


# -- incremental ---------------------------------------------------------------------------------


def test_second_sync_costs_one_request_per_folder_level(sandbox: Sandbox, tmp_path: Path) -> None:
    engine = fresh(tmp_path, "w.db")
    first = sync(sandbox, engine)
    assert first.ok and first.rows > 0
    before = snapshot(engine, TABLES)
    assert sandbox.jenkins_app is not None
    sandbox.jenkins_app.stats.reset()
    second = sync(sandbox, engine)
    assert second.ok and second.rows == 0
    # the sandbox's jobs are three levels deep (team / multibranch / branch): one listing request
    assert second.requests == sandbox.jenkins_app.stats.requests == 1
    assert snapshot(engine, TABLES) == before


def running_instant(org: Organisation) -> datetime:
    """An instant at which a build of a build job and a deploy build are both running."""
    all_builds = list(builds(org, org.now))
    for _, b in sorted(all_builds, key=lambda jb: jb[1].started_at):
        t = b.started_at + timedelta(seconds=1)
        kinds = {
            job.deploy for job, other in all_builds if visible(other, t) and building(other, t)
        }
        if kinds == {True, False} and t < org.now - timedelta(days=1):
            return t
    raise AssertionError("no instant with both kinds of builds running")


def test_running_builds_are_updated_once_finished(sandbox: Sandbox, tmp_path: Path) -> None:
    org = sandbox.org
    earlier = running_instant(org)
    sandbox.advance(earlier)
    engine = fresh(tmp_path, "inc.db")
    assert sync(sandbox, engine).ok
    expected = truth.jenkins_counts(org, earlier)
    assert jenkins_rows(engine) == {t: expected[t] for t in TABLES}
    with engine.connect() as conn:
        running = set(
            conn.execute(select(Pipeline.external_id).where(Pipeline.status == "running")).scalars()
        ) | set(
            conn.execute(
                select(Deployment.external_id).where(Deployment.status == "running")
            ).scalars()
        )
    assert running
    sandbox.advance(org.now)
    assert sync(sandbox, engine).ok
    once = fresh(tmp_path, "once.db")
    assert sync(sandbox, once).ok
    assert snapshot(engine, TABLES) == snapshot(once, TABLES)
    with engine.connect() as conn:
        after = dict(conn.execute(select(Pipeline.external_id, Pipeline.status)).all()) | dict(
            conn.execute(select(Deployment.external_id, Deployment.status)).all()
        )
    assert all(after[ext] in ("success", "failed", "canceled") for ext in running)


RESULT_STATUS = {"SUCCESS": "success", "FAILURE": "failed", "UNSTABLE": "failed"}


def interim_pair(org: Organisation) -> tuple[JenkinsBuild, JenkinsBuild]:
    """A deploy build with an interim result, and a build job's one whose result shows after the
    deploy build finished."""
    interim = sorted(
        ((job, b) for job, b in builds(org, org.now) if b.result_at),
        key=lambda jb: jb[1].result_at or org.now,
    )
    deploy = next(b for job, b in interim if job.deploy and b.deployment)
    built = next(
        b for job, b in interim if not job.deploy and (b.result_at or org.now) > deploy.finished_at
    )
    return deploy, built


def check_builds_as_of(org: Organisation, engine: Engine, at: datetime) -> int:
    """Every build visible at `at` is stored as the truth shows it then: one still building is
    running with no finish and its interim result kept raw; returns how many showed one."""
    with engine.connect() as conn:
        rows = {
            ext: (status, raw, finished)
            for table in (Pipeline, Deployment)
            for ext, status, raw, finished in conn.execute(
                select(table.external_id, table.status, table.raw_status, table.finished_at)
            )
        }
    interim = 0
    for job, b in builds(org, at):
        shown = shown_result(b, at)
        if building(b, at):
            expected: tuple[Any, ...] = ("running", shown, None)
            interim += shown is not None
        else:
            expected = (RESULT_STATUS.get(b.result, "canceled"), b.result, b.finished_at)
        assert rows[f"{job.full_name}#{b.number}"] == expected, (job.full_name, b.number, at)
    return interim


def finished_attempts(org: Organisation, at: datetime) -> dict[str, tuple[int, int]]:
    """Canonical environment -> (failed, finished app deployments) of the Jenkins deploy builds
    finished by `at`."""
    counts: dict[str, list[int]] = {}
    for job, b in builds(org, at):
        d = b.deployment
        if job.deploy and d and d.kind == "app" and d.status in ("success", "failed"):
            if building(b, at):
                continue
            c = counts.setdefault(d.environment.canonical, [0, 0])
            c[0], c[1] = c[0] + (d.status == "failed"), c[1] + 1
    return {env: (failed, total) for env, (failed, total) in sorted(counts.items())}


def test_builds_with_an_interim_result_run_until_building_is_false(
    sandbox: Sandbox, engine: Engine
) -> None:
    """Declarative pipelines set FAILURE before their post steps finish: synced then, a build and a
    deploy build are running (no finish, raw result kept), the deployment counts in no metric;
    the next syncs re-read them once finished."""
    org = sandbox.org
    deploy, built = interim_pair(org)
    assert deploy.result_at and built.result_at
    for at in (deploy.result_at, built.result_at, org.now):
        sandbox.advance(at)
        assert sync(sandbox, engine).ok
        shown = check_builds_as_of(org, engine, at)
        assert shown >= (at < org.now)
        derive(engine)
        with engine.connect() as conn:
            figures = metrics(conn, Scope(org.start - timedelta(days=60), at + timedelta(days=1)))
        attempts = {
            env: (v["failed"], v["attempts"])
            for env, v in figures["deployment_failure_rate"]["environments"].items()
        }
        assert attempts == finished_attempts(org, at)
    assert not building(deploy, built.result_at)  # re-read after it finished: failed at its finish


# -- failures ------------------------------------------------------------------------------------


def test_wrong_credentials_give_a_clear_error_naming_the_source(
    tiny: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(JENKINS_TOKEN_ENV, "not-the-token")
    summary = sync(tiny, fresh(tmp_path, "w.db"))
    assert not summary.ok
    [error] = summary.errors
    assert error.startswith(f"jenkins: cannot list jobs from {tiny.jenkins_url}")
    assert "401" in error and f"${JENKINS_TOKEN_ENV}" in error and f"${USER_ENV}" in error
    assert "not-the-token" not in error + caplog.text


def test_malformed_builds_are_kept_rejected_and_counted(tiny: Sandbox, tmp_path: Path) -> None:
    assert tiny.jenkins is not None
    org = tiny.org
    build_job = next(j for j in iter_jobs(org.jenkins) if j.builds and not j.deploy)
    deploy_job = next(j for j in iter_jobs(org.jenkins) if j.deploy)
    tiny.jenkins.corrupt(build_job.full_name, 1, "timestamp", "yesterday")
    tiny.jenkins.corrupt(deploy_job.full_name, 2, "result", "EXPLODED")
    tiny.jenkins.corrupt(deploy_job.full_name, 3, "number", DELETE)
    engine = fresh(tmp_path, "w.db")
    summary = sync(tiny, engine)
    assert summary.ok and summary.rejected == 3
    with engine.connect() as conn:
        rejected = conn.execute(select(RawPayload).where(RawPayload.rejected)).all()
    reasons = sorted(r.error for r in rejected)
    assert reasons == [
        "build: missing number",
        "build: timestamp is not epoch milliseconds: 'yesterday'",
        "deployment: unknown status in result: 'EXPLODED'",
    ]
    assert {r.external_id for r in rejected} >= {
        f"{build_job.full_name}#1",
        f"{deploy_job.full_name}#2",
    }
    expected = truth.jenkins_counts(org)
    counts = jenkins_rows(engine)
    assert counts["pipeline"] == expected["pipeline"] - 1
    assert counts["deployment"] == expected["deployment"] - 2


def test_transient_faults_are_retried(tiny: Sandbox, tmp_path: Path) -> None:
    reference = fresh(tmp_path, "ref.db")
    assert sync(tiny, reference).ok
    assert tiny.jenkins_app is not None
    faults = tiny.jenkins_app.faults
    # The collector's threads interleave on the rules' counters, so one URL could meet a fault
    # at every attempt: capped at three each, no URL fails more than six times, within the
    # policy's six retries (seven attempts), whatever the order.
    faults.add(FaultRule(path=r"/wfapi/describe", kind="500", every=3, times=3))
    faults.add(FaultRule(path=r"/testReport/", kind="503", every=4, times=3))
    faults.add(FaultRule(path=r"/api/json$", kind="drop", every=5, after=1, times=3))
    engine = fresh(tmp_path, "w.db")
    summary = sync(tiny, engine)
    assert summary.ok, summary.errors
    assert faults.fired["500"] and faults.fired["503"] and faults.fired["drop"]
    assert snapshot(engine, TABLES) == snapshot(reference, TABLES)


def test_rate_limit_429_with_retry_after_is_obeyed(tiny: Sandbox, tmp_path: Path) -> None:
    assert tiny.jenkins_app is not None
    reference = fresh(tmp_path, "ref.db")
    assert sync(tiny, reference).ok
    tiny.jenkins_app.rate_limit = RateLimit(per_second=40, burst=20, retry_after=1)
    tiny.jenkins_app.stats.reset()  # the sandbox keeps a request log
    engine = fresh(tmp_path, "w.db")
    assert sync(tiny, engine).ok
    log = tiny.jenkins_app.stats.log
    assert log is not None and tiny.jenkins_app.stats.rate_limited > 0
    limited = [i for i, entry in enumerate(log) if entry[3] == 429]
    for i in limited:
        later = [t for t, _, target, _ in log[i + 1 :] if target == log[i][2]]
        assert not later or later[0] - log[i][0] >= 0.99  # the same request waited Retry-After
    assert snapshot(engine, TABLES) == snapshot(reference, TABLES)


@pytest.mark.parametrize(("ahead", "cap"), DATE_RETRY_AFTER)
def test_retry_after_as_an_http_date_is_obeyed_and_capped(
    tiny: Sandbox, tmp_path: Path, ahead: float, cap: float
) -> None:
    assert tiny.jenkins_app is not None
    reference = fresh(tmp_path, "ref.db")
    assert sync(tiny, reference).ok
    rule = answer_429_with_a_date(tiny.jenkins_app, r"/api/json$", ahead)
    settings = settings_for(tiny, max_retry_after_s=cap)
    engine = fresh(tmp_path, "w.db")
    collector = JenkinsCollector(settings.sources.jenkins[0], SyncOptions(settings, engine))
    waits = record_waits(collector)
    summary = collector.sync()
    assert summary.ok, summary.errors
    assert rule.fired == 3
    assert_waited_retry_after(waits, ahead, cap)
    assert snapshot(engine, TABLES) == snapshot(reference, TABLES)


def test_a_storm_is_reported_with_the_url_and_the_next_sync_resumes(
    tiny: Sandbox, tmp_path: Path
) -> None:
    assert tiny.jenkins_app is not None
    reference = fresh(tmp_path, "ref.db")
    assert sync(tiny, reference).ok
    deploy_job = next(j for j in iter_jobs(tiny.org.jenkins) if j.deploy)
    tiny.jenkins_app.faults.add(FaultRule(path=f"/job/{deploy_job.path[-1]}/api/json", kind="500"))
    engine = fresh(tmp_path, "w.db")
    broken = sync(tiny, engine, max_retries=2)
    assert not broken.ok
    [error] = broken.errors
    assert error.startswith(f"jenkins: job {deploy_job.full_name}: deployments: ")
    assert "500" in error and f"{tiny.jenkins_url}/job/" in error and TOKEN not in error
    assert jenkins_rows(engine)["pipeline"] == jenkins_rows(reference)["pipeline"]
    assert jenkins_rows(engine)["deployment"] == 0
    tiny.jenkins_app.faults.clear()
    assert sync(tiny, engine).ok
    assert snapshot(engine, TABLES) == snapshot(reference, TABLES)


# -- the simulator -------------------------------------------------------------------------------


def get(sandbox: Sandbox, path: str, status: int = 200, **params: str) -> Any:
    response = requests.get(
        sandbox.jenkins_url + path, params=params, auth=("sandbox", TOKEN), timeout=10
    )
    assert response.status_code == status, (path, response.status_code, response.text[:200])
    return response.json()


def test_simulator_tree_ranges_and_the_builds_cap(sandbox: Sandbox) -> None:
    job = max(iter_jobs(sandbox.org.jenkins), key=lambda j: len(j.builds))
    assert len(job.builds) > 100
    path = "/" + "".join(f"job/{name}/" for name in job.path) + "api/json"
    default = get(sandbox, path)
    assert len(default["builds"]) == 100 and "allBuilds" not in default  # Jenkins core's cap
    assert set(default["builds"][0]) == {"_class", "number", "url"}
    last = len(job.builds)
    numbers = get(sandbox, path, tree="allBuilds[number]{0,10}")["allBuilds"]
    assert [b["number"] for b in numbers] == list(range(last, last - 10, -1))
    rest = get(sandbox, path, tree="allBuilds[number]{100,}")["allBuilds"]
    assert [b["number"] for b in rest] == list(range(last - 100, 0, -1))
    assert get(sandbox, path, tree="allBuilds[number]{5}")["allBuilds"] == [
        {"_class": default["builds"][5]["_class"], "number": last - 5}
    ]
    odd = get(sandbox, path, tree="name,nonsense,lastBuild[number,nonsense[x]],builds[number]{0,2}")
    assert set(odd) == {"_class", "name", "lastBuild", "builds"}  # unknown fields are left out
    assert set(odd["lastBuild"]) == {"_class", "number"}
    get(sandbox, path, status=400, tree="builds[number")


def test_simulator_folders_multibranch_and_build_details(sandbox: Sandbox) -> None:
    org = sandbox.org
    branch = next(j for j in iter_jobs(org.jenkins) if j.branch and "%2F" in j.path[-1])
    freestyle = next(j for j in iter_jobs(org.jenkins) if j.kind == "freestyle" and j.builds)
    root = get(sandbox, "/api/json", tree="jobs[name,jobs[name,jobs[name]]]")
    folder = next(f for f in root["jobs"] if f["name"] == branch.path[0])
    project = next(p for p in folder["jobs"] if p["name"] == branch.path[1])
    assert project["_class"].endswith("WorkflowMultiBranchProject")
    assert branch.path[2] in {b["name"] for b in project["jobs"]}
    url = "/" + "".join(f"job/{requests.utils.quote(n, safe='')}/" for n in branch.path)
    assert "%252F" in url  # Jenkins encodes a branch job's encoded name once more
    info = get(sandbox, url + "api/json", tree="displayName,fullName")
    assert (info["displayName"], info["fullName"]) == (branch.display_name, branch.full_name)
    stages = get(sandbox, url + "1/wfapi/describe")
    assert [s["name"] for s in stages["stages"]][:1] == ["Build"]
    build = get(sandbox, url + "1/api/json")
    classes = [a.get("_class") for a in build["actions"]]
    assert classes.count("hudson.plugins.git.util.BuildData") == 2  # the service and the library
    free_url = "/" + "".join(f"job/{n}/" for n in freestyle.path)
    get(sandbox, free_url + "1/wfapi/describe", status=404)  # a freestyle build has no stages
    get(sandbox, free_url + f"{len(freestyle.builds) + 1}/api/json", status=404)
    untested = next(b for b in freestyle.builds if not b.test_suites)
    get(sandbox, free_url + f"{untested.number}/testReport/api/json", status=404)


def test_simulator_shows_builds_as_of_an_instant(sandbox: Sandbox) -> None:
    job = next(j for j in iter_jobs(sandbox.org.jenkins) if j.kind == "pipeline" and j.builds)
    b = job.builds[-1]
    url = "/" + "".join(f"job/{requests.utils.quote(n, safe='')}/" for n in job.path)
    sandbox.advance(b.started_at + (b.finished_at - b.started_at) / 2)
    running = get(sandbox, f"{url}{b.number}/api/json", tree="building,result,duration")
    assert running == {**running, "building": True, "result": None, "duration": 0}
    assert "IN_PROGRESS" in {
        s["status"] for s in get(sandbox, f"{url}{b.number}/wfapi/describe")["stages"]
    }
    sandbox.advance(b.started_at - timedelta(seconds=1))
    get(sandbox, f"{url}{b.number}/api/json", status=404)  # not started yet: no such build
    sandbox.advance(sandbox.org.now)
    assert get(sandbox, f"{url}{b.number}/api/json", tree="result")["result"] == b.result


def test_simulator_auth_and_crumb_issuer(tiny: Sandbox) -> None:
    assert tiny.jenkins_app is not None
    url = tiny.jenkins_url + "/api/json"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("sandbox", "wrong"), timeout=10).status_code == 401
    client = jenkins.Jenkins(tiny.jenkins_url, "sandbox", TOKEN, timeout=10)
    assert client.get_whoami()["id"] == "sandbox"
    assert [j["name"] for j in client.get_jobs()] == [j.path[0] for j in tiny.org.jenkins]
    assert tiny.jenkins_app.stats.by_route["/crumbIssuer/api/json"] == 1  # python-jenkins asked


# -- GitLab and Jenkins together ------------------------------------------------------------------


def test_jenkins_alone_registers_services_repos_and_commits(tiny: Sandbox, tmp_path: Path) -> None:
    engine = fresh(tmp_path, "w.db")
    assert sync(tiny, engine).ok
    jenkins_built = {s.name: s for s in tiny.org.services if s.builder == "jenkins"}
    with engine.connect() as conn:
        services = dict(conn.execute(select(Service.name, Service.repo_id)).all())
        repos = conn.execute(select(Repo.id, Repo.path, Repo.external_id)).all()
        commits = conn.execute(select(func.count()).select_from(Commit)).scalar_one()
        repo_of = set(conn.execute(select(Pipeline.repo_id).distinct()).scalars())
    assert set(services) == set(jenkins_built)
    assert {path for _, path, _ in repos} == {s.path for s in jenkins_built.values()}
    assert all(ext.endswith(path) for _, path, ext in repos)  # host/path of the remote URL
    assert repo_of == {repo_id for repo_id, _, _ in repos}
    assert commits > 0  # from the builds' changelogs: no code source covers these repos
    derive(engine)  # chains derived on Jenkins' repos, to be re-derived on GitLab's
    # GitLab arrives: the next plain Jenkins sync folds Jenkins' repos into GitLab's, builds,
    # deployments and all, and drops their changelog commits
    settings = settings_for(tiny, gitlab=True)
    assert GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine)).sync().ok
    assert sync(tiny, engine).ok
    derive(engine)
    with engine.connect() as conn:
        kinds = set(
            conn.execute(select(Source.kind).join(Repo, Repo.source_id == Source.id)).scalars()
        )
    assert kinds == {"gitlab"}
    # ... so that the warehouse holds what one that knew GitLab from the start holds
    known = fresh(tmp_path, "known.db")
    assert GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, known)).sync().ok
    assert sync(tiny, known).ok
    derive(known)
    found, expected = by_natural_keys(engine), by_natural_keys(known)
    assert expected["deployment_change"] and expected["pipeline"]
    differing = [differences(t, found[t], rows) for t, rows in expected.items() if found[t] != rows]
    assert not differing, "\n".join(differing)


def test_both_simulators_give_the_reference_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitLab-built and Jenkins-built services through both collectors (`cdmetrics sync`'s
    runner): every headline figure equals sandbox.reference's."""
    set_env(monkeypatch)
    org = generate(1, "small", NOW)
    engine = fresh(tmp_path, "both.db")
    with Sandbox.start(org=org, token=TOKEN) as sb:
        summaries = run_sync(settings_for(sb, gitlab=True), engine, console=Console(quiet=True))
    assert [s.name for s in summaries] == ["gitlab", "jenkins"] and all(s.ok for s in summaries)
    derive(engine)
    with engine.connect() as conn:
        figures = metrics(conn, Scope(org.start - timedelta(days=60), org.now + timedelta(days=1)))
        resolutions = set(
            conn.execute(
                select(Deployment.image_resolution).where(
                    Deployment.external_id.contains("#"),
                    Deployment.kind == "app",  # a migration deploys no image
                )
            ).scalars()
        )
    # a tag resolves through tag history; `latest` for test, which one sync of GitLab's registry
    # knows only as it is now, through the image built from the deployed commit
    assert {"explicit", "tag"} <= resolutions <= {"explicit", "tag", "revision"}
    production = ref.production_deployments(org)
    assert any(t.service.endswith("-backend") for t in production)
    failures = {i: f for i, f in ref.change_failures(org).items() if f.failed}
    assert figures["deployment_frequency"]["deployments"] == len(production)
    cfr = figures["change_failure_rate"]
    assert (cfr["failed"], cfr["deployments"]) == (len(failures), len(production))
    for reason in ("incident", "rollback", "hotfix"):
        assert cfr["reasons"][reason] == sum(1 for f in failures.values() if reason in f.reasons)
    recovered = [r.hours for r in ref.recoveries(org).values() if r.hours is not None]
    assert figures["recovery_time"]["failures"] == len(recovered)
    assert figures["recovery_time"]["median_hours"] == pytest.approx(percentile(recovered, 0.5))
    incidents = ref.incidents(org)  # GitLab incidents, some resolved before they were opened
    restore = [i.hours_to_restore for i in incidents if i.hours_to_restore is not None]
    assert figures["recovery_time"]["incident_restore_median_hours"] == pytest.approx(
        percentile(restore, 0.5)
    )
    backwards = sum(1 for i in incidents if i.resolved_before_opened)
    assert backwards and figures["recovery_time"]["incidents_resolved_before_opened"] == backwards
    assert figures["rework_rate"]["rework"] == sum(1 for kinds in ref.rework(org).values() if kinds)
    assert {
        env: (v["failed"], v["attempts"])
        for env, v in figures["deployment_failure_rate"]["environments"].items()
    } == ref.deployment_failure_rates(org)
    lead = sorted(t.hours for t in ref.lead_times(org) if not t.is_merge)
    assert figures["lead_time"]["changes"] == len(lead)
    assert figures["lead_time"]["median_hours"] == pytest.approx(percentile(lead, 0.5), abs=1e-6)
    assert figures["lead_time"]["p90_hours"] == pytest.approx(percentile(lead, 0.9), abs=1e-6)
    stages = [m for m in ref.merge_requests(org) if m.deployment_id is not None and not m.baseline]
    assert figures["lead_time"]["merge_requests"] == len(stages)
