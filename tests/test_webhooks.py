"""GitLab webhooks and Jenkins notifications: the pure mapping on the recorded samples, the write
path on SQLite and PostgreSQL, and the endpoints over real HTTP."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from collectors.events import EventWriter
from collectors.payload import RejectedPayload
from collectors.refs import SourceRef
from collectors.webhooks import GITLAB_WEBHOOKS, gitlab_event, gitlab_source_for, webhook_time
from collectors.webhooks_jenkins import JENKINS_WEBHOOKS, jenkins_event, jenkins_full_name
from tests.service_helpers import GITLAB, WRITE, count, fixture, prometheus_samples, running_service
from warehouse.dimensions import ensure_id, ensure_source
from warehouse.schema import (
    Branch,
    Commit,
    Deployment,
    Environment,
    Job,
    MergeRequest,
    Pipeline,
    RawPayload,
    Repo,
    Service,
    TestRun,
)

GITLAB_SAMPLES = [
    ("go-gitlab", "push.json", "push", {"commit": 2, "branch": 1}),
    ("go-gitlab", "merge_request.json", "merge_request", {"merge_request": 1}),
    ("go-gitlab", "pipeline.json", "pipeline", {"pipeline": 1, "job": 5}),
    ("go-gitlab", "job.json", "job", {"job": 1}),
    ("go-gitlab", "build.json", "job", {"job": 1}),
    ("go-gitlab", "deployment.json", "deployment", {"deployment": 1}),
    ("gitlab4j", "push-event.json", "push", {"commit": 2, "branch": 1}),
    ("gitlab4j", "merge-request-event.json", "merge_request", {"merge_request": 1}),
    ("gitlab4j", "pipeline-event.json", "pipeline", {"pipeline": 1, "job": 5}),
    ("gitlab4j", "job-event.json", "job", {"job": 1}),
    ("gitlab4j", "build-event.json", "job", {"job": 1}),
    ("gitlab4j", "deployment-event.json", "deployment", {"deployment": 1}),
]
JENKINS_SAMPLES = [
    "asgard-completed.json",
    "deploy-myapp-started.json",
    "deploy-myapp-completed.json",
    "deploy-myapp-finalized.json",
]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def rows_of(event: Any, table: type) -> list[dict[str, Any]]:
    return [f.row for f in event.facts if f.table is table]


# --- pure mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(("origin", "name", "kind", "tables"), GITLAB_SAMPLES)
def test_every_gitlab_sample_maps_to_rows(
    origin: str, name: str, kind: str, tables: dict[str, int]
) -> None:
    event = gitlab_event(fixture("webhooks", origin, name))
    assert event.stream == f"webhook:{kind}"
    found: dict[str, int] = {}
    for fact in event.facts:
        found[fact.table.__tablename__] = found.get(fact.table.__tablename__, 0) + 1
    assert found == tables


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-08-12 15:23:28 UTC", "2016-08-12T15:23:28+00:00"),
        ("2021-04-28 21:50:00 +0200", "2021-04-28T19:50:00+00:00"),
        ("2021-02-23T02:41:37.886Z", "2021-02-23T02:41:37.886000+00:00"),
        ("2012-01-03T23:36:29+02:00", "2012-01-03T21:36:29+00:00"),
    ],
)
def test_webhook_timestamps_in_gitlab_forms(text: str, expected: str) -> None:
    assert webhook_time(text, "t") == at(expected)


def test_push_commits_carry_only_what_the_webhook_knows() -> None:
    event = gitlab_event(fixture("webhooks", "go-gitlab", "push.json"))
    commits = rows_of(event, Commit)
    assert commits[1]["sha"] == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert commits[1]["committed_at"] == at("2012-01-03T21:36:29+00:00")
    assert "authored_at" not in commits[1] and "is_merge" not in commits[1]  # polls fill those
    (branch,) = rows_of(event, Branch)
    assert branch["name"] == "master" and branch["is_default"] is True
    assert branch["head_sha"] == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert branch["last_commit_at"] == commits[1]["committed_at"]
    service = event.dimensions[0]
    assert (service.name, service.namespace, service.repo.path) == (
        "diaspora",
        "mike",
        "mike/diaspora",
    )


def test_merge_request_event_author_on_open_and_no_merge_time() -> None:
    (mr,) = rows_of(
        gitlab_event(fixture("webhooks", "go-gitlab", "merge_request.json")), MergeRequest
    )
    assert (mr["iid"], mr["external_id"], mr["state"], mr["author"]) == (1, "99", "opened", "user1")
    assert mr["head_sha"] == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert "merged_at" not in mr and "approvals" not in mr and "first_review_at" not in mr


def test_merge_action_sets_merge_time_and_merger() -> None:
    payload = fixture("webhooks", "gitlab4j", "merge-request-event.json")
    payload["object_attributes"].update(action="merge", state="merged")
    (mr,) = rows_of(gitlab_event(payload), MergeRequest)
    assert mr["merged_at"] == at("2013-12-03T17:23:34+00:00") and mr["merged_by"] == "root"
    assert mr["merge_commit_sha"] == "e3b7e97417fd6318a5c31b21b29d2acc5c86c3ae"


def test_pipeline_event_reuses_the_rest_normaliser() -> None:
    event = gitlab_event(fixture("webhooks", "go-gitlab", "pipeline.json"))
    (pipeline,) = rows_of(event, Pipeline)
    assert pipeline["status"] == "success" and pipeline["trigger"] == "merge_request_event"
    assert pipeline["created_at"] == at("2016-08-12T15:23:28+00:00")
    assert pipeline["finished_at"] == at("2016-08-12T15:26:29+00:00")
    assert (pipeline["duration_s"], pipeline["queued_s"]) == (63, 12)
    assert "updated_at" not in pipeline and "web_url" not in pipeline
    jobs = {j["external_id"]: j for j in rows_of(event, Job)}
    assert jobs["380"]["status"] == "skipped" and jobs["380"]["pipeline_external_id"] == "31"
    assert jobs["379"]["status"] == "pending" and jobs["379"]["raw_status"] == "created"


def test_job_events_with_build_and_job_prefixes() -> None:
    (build,) = rows_of(gitlab_event(fixture("webhooks", "go-gitlab", "job.json")), Job)
    assert (build["external_id"], build["name"], build["pipeline_external_id"]) == (
        "3580121225",
        "auto_deploy:start",
        "743121198",
    )
    assert build["finished_at"] == at("2023-01-10T13:50:54+00:00")
    (job,) = rows_of(gitlab_event(fixture("webhooks", "gitlab4j", "job-event.json")), Job)
    assert (job["external_id"], job["status"]) == ("1977", "pending")
    assert "pipeline_external_id" not in job  # this sample names no pipeline


def test_deployment_event_finishes_when_its_status_changed() -> None:
    event = gitlab_event(fixture("webhooks", "go-gitlab", "deployment.json"))
    (row,) = rows_of(event, Deployment)
    assert (row["external_id"], row["status"], row["raw_environment"]) == (
        "15",
        "success",
        "staging",
    )
    assert row["finished_at"] == at("2021-04-28T19:50:00+00:00")
    assert row["sha"] == "279484c09fbe69ededfced8c1bb6e6d24616b468"
    assert row["url"].endswith("/jobs/796") and row["deployer"] == "user1"
    assert "kind" not in row and "started_at" not in row  # the poll's values stay


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: p.pop("object_kind"), "missing object_kind"),
        (lambda p: p["object_attributes"].update(status="exploded"), "unknown status"),
        (lambda p: p["object_attributes"].pop("id"), "missing id"),
        (lambda p: p["project"].pop("path_with_namespace"), "project.path_with_namespace"),
        (lambda p: p["object_attributes"].update(created_at="yesterday"), "bad timestamp"),
    ],
)
def test_malformed_gitlab_payloads_are_rejected_with_the_field(change: Any, reason: str) -> None:
    payload = fixture("webhooks", "go-gitlab", "pipeline.json")
    change(payload)
    with pytest.raises(RejectedPayload, match=reason):
        gitlab_event(payload)


def test_rows_belong_to_the_configured_gitlab_source_of_the_project() -> None:
    sources = [("gl", "http://192.168.64.1:3005")]
    assert gitlab_source_for("http://192.168.64.1:3005/gitlab-org/x", sources).name == "gl"
    assert gitlab_source_for("http://other.example/x", sources) == GITLAB_WEBHOOKS
    event = gitlab_event(fixture("webhooks", "go-gitlab", "pipeline.json"), sources)
    assert rows_of(event, Pipeline)[0]["source_id"] == SourceRef("gl", "gitlab", sources[0][1])


def test_jenkins_completed_deploy_build_is_a_pipeline_a_test_run_and_a_deployment() -> None:
    event = jenkins_event(fixture("webhooks", "jenkins", "deploy-myapp-completed.json"))
    (pipeline,) = rows_of(event, Pipeline)
    assert pipeline["external_id"] == "shop/deploy-myapp#42" and pipeline["ref"] == "main"
    assert pipeline["started_at"] == at("2026-03-02T10:00:00+00:00")
    assert pipeline["finished_at"] == at("2026-03-02T10:01:35+00:00")
    (deployment,) = rows_of(event, Deployment)
    assert deployment["image_digest"] == "sha256:" + "ab" * 32
    assert deployment["image_resolution"] == "explicit"
    assert deployment["environment_id"].raw_name == "production"
    assert deployment["finished_at"] == pipeline["finished_at"]
    assert rows_of(event, TestRun)[0]["failed"] == 1


def test_jenkins_finalized_times_only_fill_a_new_build() -> None:
    event = jenkins_event(fixture("webhooks", "jenkins", "deploy-myapp-finalized.json"))
    modes = [(f.table.__tablename__, f.mode, "finished_at" in f.row) for f in event.facts]
    assert ("pipeline", "insert", True) in modes and ("pipeline", "upsert", False) in modes


def test_jenkins_started_build_is_running_whatever_the_previous_status() -> None:
    (row,) = rows_of(
        jenkins_event(fixture("webhooks", "jenkins", "deploy-myapp-started.json")), Pipeline
    )
    assert (row["status"], row["raw_status"]) == ("running", "STARTED")


def test_jenkins_deploy_job_without_environment_is_rejected() -> None:
    payload = fixture("webhooks", "jenkins", "deploy-myapp-completed.json")
    del payload["build"]["parameters"]["ENV"]
    with pytest.raises(RejectedPayload, match=r"build\.parameters\.ENV"):
        jenkins_event(payload)


def test_jenkins_full_name_from_the_job_url() -> None:
    assert jenkins_full_name("job/a/job/b/", "b") == "a/b"
    assert jenkins_full_name(None, "b") == "b"


# --- the write path on both backends ----------------------------------------------------------


def test_samples_stored_once_and_replays_change_nothing(engine: Engine) -> None:
    writer = EventWriter(engine)
    events = [gitlab_event(fixture("webhooks", o, n)) for o, n, _, _ in GITLAB_SAMPLES]
    for event in events:  # the two sample sets share object ids, so replay each in turn
        assert writer.write(GITLAB_WEBHOOKS, [event]).stored == 1
        replay = EventWriter(engine).write(GITLAB_WEBHOOKS, [event])  # a fresh cache, too
        assert (replay.stored, sum(replay.rows.values())) == (0, 0), event.stream
    assert count(engine, RawPayload) == len(events)
    with engine.connect() as conn:
        services = set(conn.execute(select(Service.name)).scalars())
        environments = set(conn.execute(select(Environment.name)).scalars())
    assert {"diaspora", "gitlab-test", "test-deployment-webhooks"} <= services
    assert "staging" in environments


def test_a_webhook_never_erases_what_a_poll_filled(engine: Engine) -> None:
    with engine.begin() as conn:
        source_id = ensure_source(conn, "gitlab-webhooks", "gitlab")
        repo_id = ensure_id(
            conn, Repo, {"source_id": source_id, "external_id": "15", "path": "mike/diaspora"}
        )
        authored = at("2011-12-12T10:00:00+00:00")
        conn.execute(
            Commit.__table__.insert().values(
                repo_id=repo_id, sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                authored_at=authored, additions=3, is_merge=False,
            )
        )  # fmt: skip
    EventWriter(engine).write(
        GITLAB_WEBHOOKS, [gitlab_event(fixture("webhooks", "go-gitlab", "push.json"))]
    )
    with engine.connect() as conn:
        row = conn.execute(select(Commit).where(Commit.sha.startswith("da15"))).one()
    assert (row.authored_at, row.additions, row.title) == (authored, 3, "fixed readme")


def test_jenkins_phases_converge_on_one_build(engine: Engine) -> None:
    writer = EventWriter(engine)
    for name in (
        "deploy-myapp-started.json",
        "deploy-myapp-completed.json",
        "deploy-myapp-finalized.json",
    ):
        writer.write(JENKINS_WEBHOOKS, [jenkins_event(fixture("webhooks", "jenkins", name))])
    with engine.connect() as conn:
        pipeline = conn.execute(select(Pipeline)).one()
        deployment = conn.execute(select(Deployment)).one()
    assert (pipeline.status, pipeline.raw_status) == ("success", "SUCCESS")
    assert pipeline.finished_at == at("2026-03-02T10:01:35+00:00")  # COMPLETED's, not FINALIZED's
    assert deployment.finished_at == pipeline.finished_at and deployment.status == "success"


# --- over HTTP --------------------------------------------------------------------------------


def test_every_sample_is_accepted_and_stored_over_http(engine: Engine) -> None:
    with running_service(engine) as svc:
        for origin, name, kind, _ in GITLAB_SAMPLES:
            body = fixture("webhooks", origin, name)
            answer = svc.client.post("/webhooks/gitlab", json=body, headers=GITLAB)
            assert answer.status_code == 200, answer.text
            assert answer.json()["stored"] == 1 and answer.json()["kind"] == f"webhook:{kind}"
        for name in JENKINS_SAMPLES:
            answer = svc.client.post(
                "/webhooks/jenkins", json=fixture("webhooks", "jenkins", name), headers=WRITE
            )
            assert answer.status_code == 200, answer.text
    assert count(engine, RawPayload) == len(GITLAB_SAMPLES) + len(JENKINS_SAMPLES)
    assert count(engine, Deployment) == 2 and count(engine, MergeRequest) == 1


def test_wrong_or_missing_secret_is_401_and_nothing_is_stored(engine: Engine) -> None:
    body = fixture("webhooks", "go-gitlab", "push.json")
    with running_service(engine) as svc:
        wrong = svc.client.post("/webhooks/gitlab", json=body, headers={"X-Gitlab-Token": "guess"})
        missing = svc.client.post("/webhooks/gitlab", json=body)
        metrics = prometheus_samples(
            svc.client.get("/metrics", headers={"Authorization": "Bearer read-secret"}).text
        )
    assert (wrong.status_code, missing.status_code) == (401, 401)
    assert count(engine, RawPayload) == 0 and count(engine, Commit) == 0
    assert metrics['cdmetrics_requests_refused_total{reason="unauthorized"}'] == 2


def test_gitlab_webhooks_are_refused_when_no_secret_is_configured(engine: Engine) -> None:
    with running_service(engine, environ={}) as svc:
        answer = svc.client.post("/webhooks/gitlab", json={}, headers={"X-Gitlab-Token": ""})
    assert answer.status_code == 403 and "GITLAB_WEBHOOK_SECRET" in answer.json()["detail"]


def test_malformed_event_is_422_with_the_reason_not_stored_and_counted(engine: Engine) -> None:
    body = fixture("webhooks", "go-gitlab", "deployment.json")
    body["status"] = "exploded"
    with running_service(engine) as svc:
        answer = svc.client.post("/webhooks/gitlab", json=body, headers=GITLAB)
        not_json = svc.client.post("/webhooks/gitlab", content=b"{", headers=GITLAB)
        metrics = prometheus_samples(
            svc.client.get("/metrics", headers={"Authorization": "Bearer read-secret"}).text
        )
    assert (
        answer.status_code == 422
        and "unknown status in status: 'exploded'" in answer.json()["detail"]
    )
    assert not_json.status_code == 422 and "not JSON" in not_json.json()["detail"]
    assert count(engine, RawPayload) == 0 and count(engine, Deployment) == 0
    assert metrics['cdmetrics_events_rejected_total{endpoint="gitlab"}'] == 2


def test_the_same_event_twice_is_stored_once(engine: Engine) -> None:
    body = fixture("webhooks", "gitlab4j", "pipeline-event.json")
    with running_service(engine) as svc:
        first = svc.client.post("/webhooks/gitlab", json=body, headers=GITLAB).json()
        second = svc.client.post("/webhooks/gitlab", json=body, headers=GITLAB).json()
    assert (first["stored"], second["stored"], second["duplicates"]) == (1, 0, 1)
    assert count(engine, RawPayload) == 1 and count(engine, Pipeline) == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (WRITE, 200),
        ({"Authorization": "Basic " + base64.b64encode(b"jenkins:write-secret").decode()}, 200),
        ({"Authorization": "Basic " + base64.b64encode(b"jenkins:guess").decode()}, 401),
        ({"Authorization": "Bearer read-secret"}, 401),
        ({}, 401),
    ],
)
def test_jenkins_takes_the_write_token_as_bearer_or_basic_password(
    engine: Engine, headers: dict[str, str], status: int
) -> None:
    body = fixture("webhooks", "jenkins", "asgard-completed.json")
    with running_service(engine) as svc:
        assert (
            svc.client.post("/webhooks/jenkins", json=body, headers=headers).status_code == status
        )
