"""The GitLab collector against the sandbox's GitLab simulator, over real HTTP (python-gitlab)."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, func, select

from analytics import views
from collectors.frame import SyncOptions
from collectors.gitlab import GitLabCollector
from collectors.gitlab_normalize import approvals_from_notes
from sandbox import truth
from sandbox.approvals import withdrawals, withdrawn_kind
from sandbox.generate import generate
from sandbox.gitlab_api import DELETE
from sandbox.gitlab_payloads import current_tags, ts, unlisted_commits
from sandbox.image_repos import repositories
from sandbox.model import MergeRequest as GeneratedMR
from sandbox.model import Organisation, Service
from sandbox.model import Pipeline as GeneratedPipeline
from sandbox.retries import retried_pipelines
from sandbox.serve import Sandbox
from sandbox.server import FaultRule, RateLimit
from tests.sandbox_helpers import (
    DATE_RETRY_AFTER,
    HISTORY_END,
    TOKEN_ENV,
    answer_429_with_a_date,
    assert_waited_retry_after,
    record_waits,
    sandbox_settings,
    snapshot,
    table_counts,
)
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import (
    Commit,
    CommitParent,
    Deployment,
    Job,
    MergeRequest,
    Pipeline,
    RawPayload,
    Source,
    SyncState,
)

STREAMS = 8  # environments, commits, branches, merge_requests, pipelines, deployments, registry, incidents


@pytest.fixture(scope="module")
def small_org() -> Organisation:
    return generate(7, "small")


@pytest.fixture
def sandbox(small_org: Organisation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv(TOKEN_ENV, "glpat-sandbox-secret")
    with Sandbox.start(org=small_org, token="glpat-sandbox-secret", keep_log=True) as running:
        yield running


@pytest.fixture(scope="module")
def shared(small_org: Organisation) -> Iterator[Sandbox]:
    """One sandbox for the module's tests that only read it (or put it back as it was)."""
    with (
        pytest.MonkeyPatch.context() as mp,
        Sandbox.start(org=small_org, token="glpat-sandbox-secret") as running,
    ):
        mp.setenv(TOKEN_ENV, "glpat-sandbox-secret")
        yield running


@dataclass
class Synced:
    """A SQLite warehouse synced once from `shared`: its file and the sync's summary."""

    path: Path
    summary: Any

    def copy(self, folder: Path) -> Engine:
        """A private copy of the synced warehouse in `folder`, for a test that writes."""
        return make_engine(f"sqlite:///{shutil.copy(self.path, folder / 'copy.db')}")


@pytest.fixture(scope="module")
def synced(shared: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Synced:
    path = tmp_path_factory.mktemp("synced") / "synced.db"
    engine = fresh_sqlite(path.parent, path.name)
    summary = sync(shared, engine)
    engine.dispose()
    return Synced(path, summary)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv(TOKEN_ENV, "glpat-sandbox-secret")
    with Sandbox.start(
        org=generate(3, "tiny", HISTORY_END), token="glpat-sandbox-secret", keep_log=True
    ) as running:
        yield running


def sync(sandbox: Sandbox, engine: Engine, **options: object):  # type: ignore[no-untyped-def]
    settings = sandbox_settings(sandbox)
    return GitLabCollector(
        settings.sources.gitlab[0], SyncOptions(settings, engine, **options)
    ).sync()  # type: ignore[arg-type]


def fresh_sqlite(tmp_path, name: str) -> Engine:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    upgrade(engine)
    return engine


def raw_keys(engine: Engine, stream: str, like: str = "%") -> set[str]:
    """The keys of the raw payloads of `stream` kept in the warehouse (matching `like`)."""
    with engine.connect() as conn:
        query = select(RawPayload.external_id).where(
            RawPayload.stream == stream, RawPayload.external_id.like(like)
        )
        return set(conn.execute(query).scalars())


def as_of(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def approvals(engine: Engine) -> dict[str, int | None]:
    """Each merge request row's approvals, by external id."""
    with engine.connect() as conn:
        rows = conn.execute(select(MergeRequest.external_id, MergeRequest.approvals)).all()
    return {external_id: count for external_id, count in rows}


def expected_approvals(org: Organisation) -> dict[str, int]:
    """The truth: who approves a merge request at its merge (none before it is merged)."""
    return {
        str(mr.id): len(mr.approvers) if mr.state == "merged" else 0
        for s in org.services
        for mr in s.merge_requests
    }


def job_rows(engine: Engine, pipeline_id: int) -> set[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Job.external_id, Job.name, Job.status, Job.created_at, Job.finished_at).where(
                Job.pipeline_external_id == str(pipeline_id)
            )
        ).all()
    return {tuple(r) for r in rows}


def truth_jobs(p: GeneratedPipeline) -> set[tuple[Any, ...]]:
    return {(str(j.id), j.name, j.status, j.created_at, j.finished_at) for j in p.jobs}


def served_approvers(sandbox: Sandbox, s: Service, mr: GeneratedMR) -> dict[str, set[str]]:
    """Who approves `mr` as the simulator serves it now: REST `/approvals`, REST notes replayed
    as the REST fallback replays them, GraphQL `approvedBy`."""
    with requests.Session() as session:
        session.headers["PRIVATE-TOKEN"] = "glpat-sandbox-secret"
        base = f"{sandbox.gitlab_url}/api/v4/projects/{s.project_id}/merge_requests/{mr.iid}"
        served = session.get(f"{base}/approvals", timeout=10).json()["approved_by"]
        params = {"per_page": 100, "sort": "asc", "order_by": "created_at"}
        notes = session.get(f"{base}/notes", params=params, timeout=10).json()
        query = """query($path: ID!, $iids: [String!]) { project(fullPath: $path) {
          mergeRequests(iids: $iids) { nodes { approvedBy { nodes { username } } } } } }"""
        variables = {"path": s.path, "iids": [str(mr.iid)]}
        answer = session.post(
            f"{sandbox.gitlab_url}/api/graphql",
            json={"query": query, "variables": variables},
            timeout=10,
        ).json()
    [node] = answer["data"]["project"]["mergeRequests"]["nodes"]
    return {
        "approvals": {a["user"]["username"] for a in served},
        "notes": {a["user"]["username"] for a in approvals_from_notes(notes)["approved_by"]},
        "graphql": {u["username"] for u in node["approvedBy"]["nodes"]},
    }


@pytest.mark.parametrize("api", ["graphql", "rest"])
def test_full_sync_equals_ground_truth(sandbox: Sandbox, engine: Engine, api: str) -> None:
    """Over GraphQL (the default) and over the REST fallback of an instance without it."""
    sandbox.gitlab.graphql.enabled = api == "graphql"
    summary = sync(sandbox, engine)
    assert summary.ok, summary.errors
    routes = sandbox.gitlab_app.stats.by_route
    assert ("/api/v4/projects/{id}/jobs" in routes) == (api == "rest")
    if api == "rest":  # refused once per source (by each worker that asked at once, at most)
        assert 1 <= routes["/api/graphql"] <= sandbox_settings(sandbox).sync.parallelism
        # approvals come from the notes' system notes: every changed merge request's notes
        assert "/api/v4/projects/{id}/merge_requests/{iid}/approvals" not in routes
        assert routes["/api/v4/projects/{id}/merge_requests/{iid}/notes"] >= sum(
            len(s.merge_requests) for s in sandbox.org.services
        )
        # jobs by the project's listing (100 a page, back to the oldest changed pipeline), none
        # per pipeline: the first sync's window reaches back past every pipeline's creation
        assert "/api/v4/projects/{id}/pipelines/{pid}/jobs" not in routes
        assert routes["/api/v4/projects/{id}/jobs"] <= sum(
            max(1, -(-sum(len(p.jobs) for p in s.pipelines) // 100)) for s in sandbox.org.services
        )
    else:  # a page of 100 pipelines with their jobs and test summaries a request, the
        # commits, approvers and notes of 100 merge requests a request, and a page of 20 registry
        # tags with their digests of each of a project's repositories a request
        assert (
            len(sandbox.org.services)
            <= routes["/api/graphql"]
            <= sum(
                max(1, -(-len(s.pipelines) // 100))
                + max(1, -(-len(s.merge_requests) // 100))
                + max(-(-len(current_tags(r, sandbox.org.now)) // 20) for r in repositories(s))
                for s in sandbox.org.services
            )
        )
        assert "/api/v4/projects/{id}/merge_requests/{iid}/notes" not in routes
        assert "/api/v4/projects/{id}/registry/repositories/{rid}/tags/{tag}" not in routes
    assert summary.rejected == 0
    assert table_counts(engine) == truth.counts(sandbox.org)
    org = sandbox.org
    assert raw_keys(engine, "branches", "%/main") == {f"{s.project_id}/main" for s in org.services}
    assert len(raw_keys(engine, "branches")) == truth.counts(org)["branch"]
    expected = {d["external_id"]: d for d in truth.deployments(org)}
    with engine.connect() as conn:
        rows = conn.execute(select(Deployment)).all()
        for row in rows[::7]:  # field-level equality on a sample
            want = expected[row.external_id]
            assert (row.sha, row.ref, row.status, row.raw_environment) == (
                want["sha"],
                want["ref"],
                want["status"],
                want["raw_environment"],
            )
            assert row.finished_at == as_of(want["finished_at"])
        mrs = {(s.project_id, mr.iid): mr for s in org.services for mr in s.merge_requests}
        for row in conn.execute(select(MergeRequest)).all()[::5]:
            mr = next(
                m
                for (pid, iid), m in mrs.items()
                if iid == row.iid and m.id == int(row.external_id)
            )
            assert row.state == mr.state
            assert row.merged_at == mr.merged_at
            assert row.first_review_at == mr.first_review_at
            assert row.squash_commit_sha == mr.squash_commit_sha
            assert row.merge_commit_sha == mr.merge_commit_sha
        # every merge request's approvals as they stand at its merge: an approval withdrawn
        # before it (sandbox.approvals, in its three variants) is not counted
        assert {withdrawn_kind(mr) for mr in mrs.values()} == {None, "same", "another", "none"}
        assert approvals(engine) == expected_approvals(org)
        schema = {
            (r.external_id, r.kind, r.schema_version)
            for r in rows
            if expected[r.external_id]["kind"] == "schema" or r.kind != "app"
        }
        assert len(schema) > 5
        gitlab_built = {s.name for s in org.services if s.builder == "gitlab"}
        assert schema == {  # migrate-db jobs: kind schema, the version read from the job's name
            (d["external_id"], "schema", d["schema_version"])
            for d in expected.values()
            if d["kind"] == "schema" and d["service"] in gitlab_built
        }
        names = {j.name for s in org.services for p in s.pipelines for j in p.jobs}
        assert any("__" in n for n in names) and any(n[-4:].isdigit() for n in names)
        pipelines = {p.id: p for s in org.services for p in s.pipelines}
        retried = {p.id for _, p, _ in retried_pipelines(org)}  # a job retried days later
        assert retried
        sampled = conn.execute(select(Pipeline)).all()
        for row in [*sampled[::11], *(r for r in sampled if int(r.external_id) in retried)]:
            p = pipelines[int(row.external_id)]
            assert (row.sha, row.ref, row.status) == (p.sha, p.ref, p.status)
            assert row.finished_at == p.finished_at
            assert (
                row.duration_s == pytest.approx(int(p.duration))
                if p.duration
                else row.duration_s is None
            )
            if p.id in retried:  # its update and finish are the retry's
                assert row.updated_at == p.updated_at == p.finished_at
    for pid in retried:  # the retried job and its retry, each a row
        assert job_rows(engine, pid) == truth_jobs(pipelines[pid])


def test_second_sync_writes_nothing_and_costs_one_request_per_stream(
    shared: Sandbox, synced: Synced, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    sandbox = shared
    first = synced.summary
    assert first.ok and first.rows > 0
    engine = synced.copy(tmp_path)
    before = snapshot(engine)
    sandbox.gitlab_app.stats.reset()
    second = sync(sandbox, engine)
    assert second.ok
    assert second.rows == 0
    projects = len(sandbox.org.services)
    # branches are not listed while a project's last activity has not moved
    assert second.requests == sandbox.gitlab_app.stats.requests == 1 + projects * (STREAMS - 1)
    assert snapshot(engine) == before


def test_new_work_arrives_incrementally(shared: Sandbox, synced: Synced, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Synced a week ago, then again now: equal to one sync now (cursors, overlap, running builds)."""
    sandbox, org = shared, shared.org
    earlier = org.now.replace(day=1) if org.now.day > 7 else org.start.replace(hour=12)
    earlier = max(org.start, org.now - (org.now - org.start) / 6)
    engine = fresh_sqlite(tmp_path, "inc.db")
    try:
        sandbox.gitlab.advance(earlier)
        assert sync(sandbox, engine).ok
        assert table_counts(engine) == truth.counts(org, earlier)
    finally:
        sandbox.gitlab.advance(org.now)  # the shared sandbox as the other tests see it
    assert sync(sandbox, engine).ok
    assert synced.summary.ok  # one sync now, from the same sandbox
    reference = make_engine(f"sqlite:///{synced.path}")
    incremental, once = snapshot(engine), snapshot(reference)
    reference.dispose()
    # the incremental warehouse also remembers where `latest` pointed a week ago: tag history
    history = set(incremental.pop("image_tag")) - set(once.pop("image_tag"))
    assert history and {row[1] for row in history} == {"latest"}
    # ... and squash-merged commits seen on their branch before GitLab deleted it: with parents and
    # line counts, where one sync now knows them only from their merge request
    gone = {sha for s in org.services for sha in unlisted_commits(s, org.now)}
    for table in ("commit", "commit_parent"):
        kept, now = incremental.pop(table), once.pop(table)
        assert {r[0] for r in kept} - {r[0] for r in now} <= gone
        assert [r for r in kept if r[0] not in gone] == [r for r in now if r[0] not in gone]
    # ... and branches deleted since the first sync
    deleted = {b.name for s in org.services for b in s.branches.values() if b.deleted_at}
    kept_branches, now_branches = incremental.pop("branch"), once.pop("branch")
    assert {r[0] for r in kept_branches} - {r[0] for r in now_branches} <= deleted
    assert incremental == once


def test_interrupted_sync_resumes_without_gaps_or_duplicates(tiny: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    reference = fresh_sqlite(tmp_path, "ref.db")
    assert sync(tiny, reference).ok
    engine = fresh_sqlite(tmp_path, "broken.db")
    # first: a storm of 500s on pipeline details and dropped connections on merge request notes
    tiny.gitlab_app.faults.add(FaultRule(path=r"/pipelines/\d+$", kind="500", after=15))
    tiny.gitlab_app.faults.add(FaultRule(path=r"/notes", kind="drop", after=3))
    tiny.gitlab_app.faults.add(FaultRule(path=r"/api/graphql$", kind="500", after=1))
    broken = sync(tiny, engine, max_retries=1)
    assert not broken.ok
    tiny.gitlab_app.faults.clear()
    # then: the server dies in the middle of a sync and comes back
    tiny.gitlab_app.stats.reset()
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.update(s=sync(tiny, engine, max_retries=1)))
    worker.start()
    while tiny.gitlab_app.stats.requests < 20 and worker.is_alive():
        time.sleep(0.005)
    tiny.gitlab_server.stop()
    worker.join(60)
    tiny.gitlab_server.start()
    final = sync(tiny, engine)
    assert final.ok, final.errors
    assert snapshot(engine) == snapshot(reference)


def test_rate_limit_429_with_retry_after_is_obeyed(tiny: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # a burst below the sync's requests and a rate below their pace (GraphQL reads the tiny
    # organisation's pipelines, and its registry tags with their digests, in a few requests)
    tiny.gitlab_app.rate_limit = RateLimit(per_second=2, burst=4, retry_after=1)
    engine = fresh_sqlite(tmp_path, "w.db")
    settings = sandbox_settings(tiny, parallelism=1)
    summary = GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine)).sync()
    assert summary.ok
    log = tiny.gitlab_app.stats.log
    assert log is not None
    limited = [i for i, entry in enumerate(log) if entry[3] == 429]
    assert limited, "the rate limit never answered 429"
    for i in limited:
        if i + 1 < len(log):
            assert log[i + 1][0] - log[i][0] >= 0.99  # the client waited Retry-After
    assert table_counts(engine) == truth.counts(tiny.org)


@pytest.mark.parametrize(("ahead", "cap"), DATE_RETRY_AFTER)
def test_retry_after_as_an_http_date_is_obeyed_and_capped(
    tiny: Sandbox, tmp_path, ahead: float, cap: float
) -> None:  # type: ignore[no-untyped-def]
    rule = answer_429_with_a_date(tiny.gitlab_app, r"/merge_requests$", ahead)
    settings = sandbox_settings(tiny, max_retry_after_s=cap)
    engine = fresh_sqlite(tmp_path, "w.db")
    collector = GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine))
    waits = record_waits(collector)
    summary = collector.sync()
    assert summary.ok, summary.errors
    assert rule.fired == 3
    assert_waited_retry_after(waits, ahead, cap)
    assert table_counts(engine) == truth.counts(tiny.org)


def test_500_storm_is_retried_then_reported_with_the_url(tiny: Sandbox, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    tiny.gitlab_app.faults.add(FaultRule(path=r"/merge_requests$", kind="500"))
    engine = fresh_sqlite(tmp_path, "w.db")
    summary = sync(tiny, engine, max_retries=2)
    assert not summary.ok
    [error] = summary.errors
    assert "merge_requests" in error and "HTTP 500" in error
    assert f"{tiny.gitlab_url}/api/v4/projects/" in error
    assert (
        tiny.gitlab_app.stats.by_route["/api/v4/projects/{id}/merge_requests"] == 3
    )  # 1 + 2 retries
    assert "glpat-sandbox-secret" not in error + caplog.text
    # the other streams completed
    assert table_counts(engine)["pipeline"] == truth.counts(tiny.org)["pipeline"]


def test_malformed_items_are_kept_counted_and_the_sync_completes(tiny: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tiny.gitlab.graphql.enabled = False  # REST payloads (GraphQL's: tests/test_gitlab_graphql.py)
    service = tiny.org.services[0]
    mr, no_iid = service.merge_requests[:2]
    sha = next(iter(service.commits))
    pipeline = service.pipelines[0]
    tiny.gitlab.corrupt("merge_request", mr.id, "created_at", "yesterday-ish")
    tiny.gitlab.corrupt("merge_request", no_iid.id, "iid", DELETE)  # no detail call can name it
    tiny.gitlab.corrupt("commit", sha, "id", DELETE)
    tiny.gitlab.corrupt("pipeline", pipeline.id, "id", DELETE)
    engine = fresh_sqlite(tmp_path, "w.db")
    summary = sync(tiny, engine)
    assert summary.ok
    assert summary.rejected == 4
    with engine.connect() as conn:
        rejected = conn.execute(select(RawPayload).where(RawPayload.rejected)).all()
    reasons = sorted(r.error for r in rejected)
    assert len(rejected) == 4
    assert reasons == [
        "commit: missing id",
        "merge_request: bad timestamp in created_at: 'yesterday-ish'",
        "merge_request: missing iid",
        "pipeline: missing id",
    ]
    expected = truth.counts(tiny.org)
    counts = table_counts(engine)
    assert counts["merge_request"] == expected["merge_request"] - 2
    assert counts["commit"] == expected["commit"] - 1
    assert counts["pipeline"] == expected["pipeline"] - 1


def test_simulator_timestamps_match_gitlab_form() -> None:
    org = generate(1, "tiny")
    assert ts(org.now).endswith(".000Z")


def test_a_password_in_the_source_url_is_masked_in_the_warehouse_and_logs(
    tiny: Sandbox, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    settings = sandbox_settings(tiny)
    source = settings.sources.gitlab[0]
    source.url = source.url.replace("://", "://robot:pa55w0rd@")
    engine = fresh_sqlite(tmp_path, "w.db")
    with caplog.at_level(logging.DEBUG):
        summary = GitLabCollector(source, SyncOptions(settings, engine)).sync()
    assert summary.ok, summary.errors
    with engine.connect() as conn:
        [base_url] = conn.execute(select(Source.base_url)).scalars().all()
    assert base_url == tiny.gitlab_url.replace("://", "://***@")
    assert "pa55w0rd" not in caplog.text + repr(summary.as_json())


def test_a_first_sync_reaches_back_history_days_and_no_further(tiny: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`[sync] history_days` bounds a first sync through GitLab's date filters (`since`,
    `updated_after`): nothing older is requested; a later sync goes on from its cursors."""
    org = tiny.org
    middle = org.start + (org.now - org.start) / 2  # the first half of the history is out of reach
    days = (datetime.now(UTC) - middle).days
    settings = sandbox_settings(tiny, history_days=days)
    engine = fresh_sqlite(tmp_path, "window.db")
    started = datetime.now(UTC)
    assert GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine)).sync().ok
    cutoff = started - timedelta(days=days)
    with engine.connect() as conn:
        # listed commits (an MR in the window brings its own older commits, without parents)
        committed = conn.execute(
            select(func.min(Commit.committed_at)).join(
                CommitParent,
                (CommitParent.repo_id == Commit.repo_id) & (CommitParent.sha == Commit.sha),
            )
        ).scalar_one()
        updated = [
            conn.execute(select(func.min(table.updated_at))).scalar_one()
            for table in (MergeRequest, Pipeline)
        ]
    assert committed >= cutoff - timedelta(minutes=1)
    assert all(u is not None and u >= cutoff - timedelta(minutes=1) for u in updated)
    full = truth.counts(tiny.org)
    window = table_counts(engine)
    assert 0 < window["commit"] < full["commit"] and 0 < window["pipeline"] < full["pipeline"]


def test_sync_state_keeps_the_rows_each_stream_wrote(tiny: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The Data sources page reads rows and rejected payloads per stream from sync_state (they
    stayed 0 while the sync's summary counted thousands); the first sync's figures are there, a
    sync that changes nothing records 0 rows."""
    tiny.gitlab.corrupt(
        "merge_request", tiny.org.services[0].merge_requests[0].id, "created_at", "soon"
    )
    engine = fresh_sqlite(tmp_path, "w.db")
    summary = sync(tiny, engine)
    with engine.connect() as conn:
        stored = {r["stream"]: r for r in views.sync_overview(conn)}
    written = {name: s for name, s in summary.streams.items() if name in stored}
    assert {"commits", "merge_requests", "pipelines", "deployments"} <= set(written)
    assert {n: stored[n]["rows"] for n in written} == {n: s.rows for n, s in written.items()}
    assert all(stored[n]["rows"] > 0 for n in ("commits", "pipelines", "deployments"))
    assert stored["merge_requests"]["rejected"] == summary.rejected == 1
    payloads = {n: stored[n]["payloads"] for n in stored}
    assert payloads["merge_requests"] == len(raw_keys(engine, "merge_requests")) > 0
    again = sync(tiny, engine)
    assert again.rows == 0
    with engine.connect() as conn:
        after = views.sync_overview(conn)
    assert sum(r["rows"] for r in after) == 0  # the last sync wrote nothing ...
    assert {r["stream"]: r["payloads"] for r in after} == payloads  # ... the store keeps all


def test_an_incremental_rest_sync_reads_jobs_back_to_its_window_and_equals_a_full_one(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Over REST, a changed pipeline's jobs come from the project's job listing, read back to the
    creation of the oldest changed pipeline but not past the cursor window; a pipeline created
    before the window (unfinished at the last sync) is read by its own job listing."""
    sandbox.gitlab.graphql.enabled = False
    org = sandbox.org
    engine, twin = fresh_sqlite(tmp_path, "inc.db"), fresh_sqlite(tmp_path, "full.db")
    first_at = org.now - (org.now - org.start) / 5
    sandbox.advance(first_at)
    assert sync(sandbox, engine).ok
    routes = sandbox.gitlab_app.stats.by_route
    listing, one = "/api/v4/projects/{id}/jobs", "/api/v4/projects/{id}/pipelines/{pid}/jobs"
    before = (routes[listing], routes.get(one, 0))
    sandbox.advance(org.now)
    assert sync(sandbox, engine).ok
    incremental = (routes[listing] - before[0], routes.get(one, 0) - before[1])
    overlap = sandbox_settings(sandbox).sync.overlap
    unfinished = [  # at the first sync (or just before its window): the most read one by one
        p
        for s in org.services
        for p in s.pipelines
        if p.created_at <= first_at and (not p.finished_at or p.finished_at > first_at - overlap)
    ]
    retried = [  # finished before the first sync, a job retried after it (sandbox.retries)
        p
        for _, p, job in retried_pipelines(org)
        if p.created_at <= first_at and job.retried_at and job.retried_at > first_at - overlap
    ]
    assert incremental[1] <= len(unfinished) + len(retried)
    assert sync(sandbox, twin).ok
    full = routes[listing] - before[0] - incremental[0]
    assert incremental[0] < full
    builds = ("pipeline", "job", "test_run")  # the streams this is about
    assert snapshot(engine, builds) == snapshot(twin, builds)
    assert table_counts(engine)["job"] == truth.counts(org)["job"]


def test_a_withdrawn_approval_is_served_alike_by_notes_approvals_and_graphql(tiny: Sandbox) -> None:
    """Approvals withdrawn before the merge (`sandbox.approvals`): re-approved by the same person,
    withdrawn by another teammate, never re-approved. While it stands, REST `/approvals`, the
    notes' system notes and GraphQL `approvedBy` name its approver; once withdrawn, nobody; at the
    end, who approves at the merge (the truth)."""
    org = tiny.org
    shaped = {
        kind: (s, mr)
        for s in org.services
        for mr in s.merge_requests
        if (kind := withdrawn_kind(mr)) is not None
    }
    assert set(shaped) == {"same", "another", "none"}
    try:
        for kind, (s, mr) in shaped.items():
            [(who, approved, withdrawn)] = withdrawals(mr)
            assert mr.first_review_at is not None and mr.merged_at is not None
            assert mr.first_review_at < approved < withdrawn < mr.merged_at  # review time stays
            final = {a.username for a in mr.approvers}
            assert (who.username in final) == (kind == "same") and bool(final) == (kind != "none")
            for at, approvers in (
                (approved + (withdrawn - approved) / 2, {who.username}),
                (withdrawn + timedelta(seconds=1), set()),
                (org.now, final),
            ):
                tiny.advance(at)
                served = served_approvers(tiny, s, mr)
                assert served == dict.fromkeys(("approvals", "notes", "graphql"), approvers), kind
    finally:
        tiny.advance(tiny.org.now)


@pytest.mark.parametrize("api", ["graphql", "rest"])
def test_a_withdrawn_approval_is_synced_as_it_stands(
    tiny: Sandbox, engine: Engine, api: str
) -> None:
    """Synced while a teammate's approval stands, then after its withdrawal and the merge without
    another one: the row counts it, then not (GraphQL's `approvedBy`, REST's notes replayed)."""
    tiny.gitlab.graphql.enabled = api == "graphql"
    org = tiny.org
    mr = next(mr for s in org.services for mr in s.merge_requests if withdrawn_kind(mr) == "none")
    [(_, approved, withdrawn)] = withdrawals(mr)
    tiny.advance(approved + (withdrawn - approved) / 2)
    assert sync(tiny, engine).ok
    assert approvals(engine)[str(mr.id)] == 1
    tiny.advance(org.now)
    assert sync(tiny, engine).ok
    assert approvals(engine) == expected_approvals(org)
    assert approvals(engine)[str(mr.id)] == 0 and not mr.approvers  # merged without approval


def test_a_job_retried_days_later_is_served_alike_by_rest_and_graphql(tiny: Sandbox) -> None:
    """An old pipeline's test job retried days after it finished (`sandbox.retries`): the retry
    is a new job, the old one is `retried` (GraphQL) and left out of the pipeline's job listing
    unless `include_retried`; the pipeline runs again, its update and finish are the retry's."""
    org = tiny.org
    [(s, p, old)] = retried_pipelines(org)
    assert old.retried_at is not None and old.finished_at is not None
    [new] = [j for j in p.jobs if j.created_at == old.retried_at]
    assert old.retried_at - old.finished_at >= timedelta(days=3) and new.finished_at
    ids = {j.id for j in p.jobs}
    with requests.Session() as session:
        session.headers["PRIVATE-TOKEN"] = "glpat-sandbox-secret"
        base = f"{tiny.gitlab_url}/api/v4/projects/{s.project_id}"

        def served(at: datetime) -> tuple[dict[str, Any], set[int], set[int], dict[int, bool]]:
            tiny.advance(at)
            detail = session.get(f"{base}/pipelines/{p.id}", timeout=10).json()
            url = f"{base}/pipelines/{p.id}/jobs"
            latest = {j["id"] for j in session.get(url, timeout=10).json()}
            every = session.get(url, params={"include_retried": "true"}, timeout=10).json()
            query = """query($path: ID!, $iid: ID!) { project(fullPath: $path) {
              pipeline(iid: $iid) { jobs(first: 100) { nodes { id retried } } } } }"""
            variables = {"path": s.path, "iid": str(p.iid)}
            answer = session.post(
                f"{tiny.gitlab_url}/api/graphql",
                json={"query": query, "variables": variables},
                timeout=10,
            ).json()
            nodes = answer["data"]["project"]["pipeline"]["jobs"]["nodes"]
            flags = {int(n["id"].rsplit("/", 1)[1]): n["retried"] for n in nodes}
            return detail, latest, {j["id"] for j in every}, flags

        try:
            detail, latest, every, flags = served(old.retried_at - timedelta(seconds=1))
            assert latest == every == set(flags) == ids - {new.id} and not any(flags.values())
            assert (detail["status"], as_of(detail["updated_at"])) == ("success", old.finished_at)
            detail, latest, every, flags = served(old.retried_at)
            assert (latest, every) == (ids - {old.id}, ids) and flags == {
                i: i == old.id for i in ids
            }
            assert (detail["status"], as_of(detail["updated_at"])) == ("pending", old.retried_at)
            assert detail["finished_at"] is None
            detail, latest, every, flags = served(org.now)
            assert (latest, every) == (ids - {old.id}, ids) and flags == {
                i: i == old.id for i in ids
            }
            assert (detail["status"], as_of(detail["finished_at"])) == (p.status, p.finished_at)
            assert as_of(detail["updated_at"]) == new.finished_at == p.finished_at
            assert detail["duration"] == int(p.duration or 0) and p.status == "success"
            listed = [  # the project's job listing, newest first: the retry days before the rest
                j["id"]
                for page in (1, 2, 3)
                for j in session.get(
                    f"{base}/jobs", params={"per_page": 100, "page": page}, timeout=10
                ).json()
                if j["pipeline"]["id"] == p.id
            ]
            assert listed[0] == new.id and set(listed) == ids
        finally:
            tiny.advance(org.now)


@pytest.mark.parametrize("api", ["rest", "graphql"])
def test_an_incremental_sync_over_a_job_retried_after_its_window_equals_a_full_one(
    tiny: Sandbox, engine: Engine, twin_engine: Engine, api: str
) -> None:
    """A pipeline created (and finished) before an incremental sync's cursor window whose test job
    is retried after it: the sync reads it changed and writes the rows one full sync writes and the
    truth holds. Over REST its jobs come from its own `/pipelines/:id/jobs` (`include_retried`):
    the project's job listing is read back only to the window."""
    tiny.gitlab.graphql.enabled = api == "graphql"
    org = tiny.org
    [(_, p, old)] = retried_pipelines(org)
    assert old.retried_at is not None
    first_at = old.retried_at - timedelta(days=1)
    tiny.advance(first_at)
    assert sync(tiny, engine).ok
    with engine.connect() as conn:
        [cursor] = conn.execute(
            select(SyncState.cursor).where(SyncState.stream == "pipelines")
        ).scalars()
    window = as_of(cursor)
    assert window is not None
    window -= sandbox_settings(tiny).sync.overlap
    assert old.finished_at is not None and p.created_at < old.finished_at < window
    stats = tiny.gitlab_app.stats
    stats.reset()
    tiny.advance(org.now)
    assert sync(tiny, engine).ok
    assert stats.log is not None
    own = [t for _, _, t, _ in stats.log if re.search(rf"/pipelines/{p.id}/jobs\b", t)]
    if api == "rest":  # read by its own listing, retried jobs included
        assert own and all("include_retried=true" in t.lower() for t in own)
    else:  # GraphQL: the pipeline node with its jobs
        assert not own
    assert sync(tiny, twin_engine).ok  # one full sync now
    builds = ("pipeline", "job", "test_run")
    assert snapshot(engine, builds) == snapshot(twin_engine, builds)
    counts, expected = table_counts(engine), truth.counts(org)
    assert {t: counts[t] for t in builds} == {t: expected[t] for t in builds}
    assert job_rows(engine, p.id) == job_rows(twin_engine, p.id) == truth_jobs(p)
    with engine.connect() as conn:
        row = conn.execute(select(Pipeline).where(Pipeline.external_id == str(p.id))).one()
    assert (row.status, row.updated_at, row.finished_at) == (p.status, p.finished_at, p.finished_at)
    assert row.duration_s == int(p.duration or 0)
