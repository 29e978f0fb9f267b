"""Jenkins payloads into warehouse rows, on recorded payloads (tests/fixtures/SOURCES.md) and named
edge cases; pure functions, no server."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collectors import jenkins_normalize as norm
from collectors.frame import SyncOptions
from collectors.jenkins import FOLDER_DEPTH, FOLDERS, Cursor, JenkinsCollector, JobInfo, job_tree
from collectors.jenkins_normalize import RejectedPayload, Revision
from config.settings import JenkinsSource, Settings
from warehouse.schema import metadata
from warehouse.upsert import natural_key_columns

FIXTURES = Path(__file__).parent / "fixtures" / "jenkins"
SCHEMA_JOBS = "(?i)(migrat|flyway|liquibase|alembic|schema)"
SOURCE = 1
SHA = "d27afa0805201322d846d7defc29b82c88d9b5ce"
LIBRARY_SHA = "56d8887a72e691b008a44c6243f261008629da34"
DIGEST = "sha256:" + "7e" * 32


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def check_rows(table: str, rows: Iterable[dict[str, Any]]) -> None:
    """Every key is a column of `table`, the natural key is there, timestamps are aware UTC."""
    columns = set(metadata.tables[table].columns.keys())
    key = set(natural_key_columns(metadata.tables[table]))
    for row in rows:
        assert set(row) <= columns, f"{table}: not columns: {set(row) - columns}"
        assert key <= set(row), f"{table}: natural key missing: {key - set(row)}"
        for name, value in row.items():
            if isinstance(value, datetime):
                assert value.utcoffset() == timedelta(0), f"{table}.{name} is not UTC: {value!r}"


def build_data(url: str, sha: str, branch: str) -> dict[str, Any]:
    """A git BuildData action in the git plugin's exported shape (no shared fixture has one)."""
    marked = {"SHA1": sha, "branch": [{"SHA1": sha, "name": branch}]}
    return {
        "_class": "hudson.plugins.git.util.BuildData",
        "buildsByBranchName": {
            branch: {
                "_class": "hudson.plugins.git.util.Build",
                "buildNumber": 10,
                "buildResult": None,
                "marked": marked,
                "revision": marked,
            }
        },
        "lastBuiltRevision": {"_class": "hudson.plugins.git.Revision", **marked},
        "remoteUrls": [url],
        "scmName": "",
    }


def with_actions(name: str, *actions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    build = copy.deepcopy(load(name))
    build["actions"].extend(actions)
    build.update(fields)
    return build


def pipeline(build: dict[str, Any], revision: Revision | None = None) -> dict[str, Any]:
    row = norm.normalize_build(build, SOURCE, "team/app/main", 7, revision)
    check_rows("pipeline", [row])
    return row


def deploy(build: dict[str, Any], revision: Revision | None = None, **kw: Any) -> dict[str, Any]:
    row = norm.normalize_deployment(
        build,
        SOURCE,
        kw.pop("job", "deploy-app"),
        service_id=3,
        environment_id=4,
        repo_id=7,
        revision=revision,
        env_parameter=kw.pop("env_parameter", "ENV"),
        image_parameter="IMAGE",
        schema_jobs=SCHEMA_JOBS,
    )
    check_rows("deployment", [row])
    return row


def params(**values: Any) -> dict[str, Any]:
    return {
        "_class": "hudson.model.ParametersAction",
        "parameters": [{"name": k, "value": v} for k, v in values.items()],
    }


# --- builds -----------------------------------------------------------------------------------


def test_recorded_build_becomes_a_pipeline() -> None:
    row = pipeline(load("build-info.json"))
    started = datetime.fromtimestamp(1461091892.486, UTC)
    assert row["external_id"] == "team/app/main#10"
    assert (row["status"], row["raw_status"]) == ("success", "SUCCESS")
    assert row["started_at"] == started
    assert row["finished_at"] == started + timedelta(milliseconds=60750)
    assert row["duration_s"] == 60.75
    assert row["created_at"] == started and row["queued_s"] is None  # no TimeInQueueAction
    assert row["trigger"] == "web"  # a user cause without a _class (trimmed payload)
    assert row["web_url"] == "http://localhost:32769/job/fish/10/"
    assert row["sha"] is None and row["ref"] is None  # no git checkout


def test_parameters_of_recorded_builds() -> None:
    assert norm.parameters(load("build-info.json")) == {"bear": True, "fish": "salmon"}
    assert norm.parameters(load("build-info-empty-and-null-params.json")) == {
        "bear": "null",
        "fish": "",
    }
    assert norm.parameters(load("build-info-no-params.json")) == {}


def test_workflow_run_cause_with_class_is_a_web_trigger() -> None:
    build = load("build-info-no-params.json")
    assert norm.trigger(build) == "web"
    assert norm.deployer(build) == "anonymous"  # userId null: the name stands in
    assert pipeline(build)["queued_s"] is None  # TimeInQueueAction without numbers


def test_change_sets_of_a_recorded_git_build() -> None:
    [commit] = norm.change_commits(load("build-info-git-commit.json"))
    assert commit == {
        "sha": SHA,
        "author_email": "username@localhost",
        "author_name": "username",
        "committed_at": datetime.fromtimestamp(1461091892.486, UTC),
        "title": "Commit comment",
    }
    assert norm.change_commits(load("build-info.json")) == []  # an empty freestyle changeSet


def test_build_data_gives_the_revision_and_branch() -> None:
    build = with_actions(
        "build-info-git-commit.json",
        build_data("git@gitlab.example:acme/pay/app.git", SHA, "refs/remotes/origin/main"),
    )
    [revision] = norm.revisions(build)
    assert revision == Revision(
        ("git@gitlab.example:acme/pay/app.git",), SHA, "refs/remotes/origin/main"
    )
    row = pipeline(build, revision)
    assert (row["sha"], row["ref"]) == (SHA, "main")


def test_shared_library_checkout_is_not_the_services() -> None:
    """A pipeline loading a shared library has two BuildData; the library's may come first."""
    library = build_data("https://gitlab.example/acme/platform/lib.git", LIBRARY_SHA, "main")
    own = build_data("https://gitlab.example/acme/pay/app.git", SHA, "feature/x")
    build = with_actions("build-info-no-params.json", library, own)
    revisions = norm.revisions(build)
    assert [r.sha for r in revisions] == [LIBRARY_SHA, SHA]
    # known repos: the app's (id 5, a service's) and the library's (id 9, no service's)
    chosen = norm.choose_revision(
        list(zip(revisions, [9, 5], strict=True)), "pay/app/x", set(), {5}
    )
    assert chosen == (revisions[1], 5)
    # nothing known yet: the one the job's name mentions
    unknown = list(zip(revisions, [None, None], strict=True))
    assert norm.choose_revision(unknown, "pay/app/feature%2Fx", set(), set()) == (
        revisions[1],
        None,
    )
    # a deploy job knows its service's repo: it wins over any other known repo
    assert norm.choose_revision(
        list(zip(revisions, [9, 5], strict=True)), "deploy-app", {9}, {5}
    ) == (
        revisions[0],
        9,
    )
    assert norm.choose_revision([], "x", set(), set()) is None


@pytest.mark.parametrize(
    ("result", "building", "status", "finished"),
    [
        ("SUCCESS", False, "success", True),
        ("UNSTABLE", False, "failed", True),  # tests failed: failed, raw UNSTABLE kept
        ("FAILURE", False, "failed", True),
        ("ABORTED", False, "canceled", True),
        ("NOT_BUILT", False, "skipped", True),
        (None, True, "running", False),
        ("FAILURE", True, "running", False),  # interim: running until building is false
        ("UNSTABLE", True, "running", False),
        (None, False, "pending", False),
    ],
)
def test_build_results(result: str | None, building: bool, status: str, finished: bool) -> None:
    build = with_actions("build-info.json", result=result, building=building)
    if building:
        build["duration"] = 0  # Jenkins reads 0 while a build runs
    row = pipeline(build)
    assert (row["status"], row["raw_status"]) == (status, result)
    assert (row["finished_at"] is not None) == finished
    assert (row["duration_s"] is not None) == finished
    assert row["updated_at"] == (row["finished_at"] or row["started_at"])


def test_queue_time_from_time_in_queue_action() -> None:
    queue = {"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": 90500}
    row = pipeline(with_actions("build-info.json", queue))
    assert row["queued_s"] == 90.5
    assert row["started_at"] - row["created_at"] == timedelta(milliseconds=90500)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"result": "EXPLODED"}, "unknown status in result: 'EXPLODED'"),
        ({"timestamp": "yesterday"}, "timestamp is not epoch milliseconds"),
        ({"timestamp": None}, "missing timestamp"),
        ({"number": None}, "missing number"),
        ({"duration": None}, "missing duration"),
        ({"actions": {"parameters": []}}, "actions is not a list"),
    ],
)
def test_malformed_builds_are_rejected_naming_the_field(
    change: dict[str, Any], reason: str
) -> None:
    build = with_actions("build-info.json", **change)
    with pytest.raises(RejectedPayload, match="^build: " + reason.replace("(", r"\(")):
        norm.normalize_build(build, SOURCE, "app", None, None)


@pytest.mark.parametrize(
    ("cause", "trigger"),
    [
        ("hudson.triggers.SCMTrigger$SCMTriggerCause", "push"),
        ("jenkins.branch.BranchEventCause", "push"),
        ("jenkins.branch.BranchIndexingCause", "push"),
        ("com.dabsquared.gitlabjenkins.cause.GitLabWebHookCause", "push"),
        ("hudson.model.Cause$UserIdCause", "web"),
        ("hudson.model.Cause$UpstreamCause", "pipeline"),
        ("hudson.triggers.TimerTrigger$TimerTriggerCause", "schedule"),
        ("org.jenkinsci.plugins.workflow.cps.replay.ReplayCause", "ReplayCause"),
    ],
)
def test_triggers(cause: str, trigger: str) -> None:
    build = {"actions": [{"_class": "hudson.model.CauseAction", "causes": [{"_class": cause}]}]}
    assert norm.trigger(build) == trigger


# --- stages and test reports -------------------------------------------------------------------


def test_workflow_describe_becomes_jobs() -> None:
    rows = norm.normalize_stages(load("workflow.json"), SOURCE, "app#16", "http://j/job/app/16/")
    check_rows("job", rows)
    assert [(r["name"], r["status"], r["raw_status"]) for r in rows] == [
        ("Build", "success", "SUCCESS"),
        ("Test", "success", "SUCCESS"),
        ("Deploy", "manual", "PAUSED_PENDING_INPUT"),
    ]
    build, _, deploy_stage = rows
    assert build["external_id"] == "app#16/stage/5" and build["pipeline_external_id"] == "app#16"
    assert build["started_at"] == datetime.fromtimestamp(1413461275.770, UTC)
    assert build["duration_s"] == 5.228
    assert build["web_url"] == "http://j/job/app/16/execution/node/5/"
    assert deploy_stage["finished_at"] is None  # waiting for input: not finished


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("FAILED", "failed"),
        ("UNSTABLE", "failed"),
        ("ABORTED", "canceled"),
        ("NOT_EXECUTED", "skipped"),
        ("IN_PROGRESS", "running"),
        ("QUEUED", "pending"),
    ],
)
def test_stage_statuses(raw: str, status: str) -> None:
    assert norm.stage_status(raw) == status


def test_a_skipped_stage_has_no_times_and_an_unknown_one_is_rejected() -> None:
    describe = load("workflow.json")
    describe["stages"][2]["status"] = "NOT_EXECUTED"
    skipped = norm.normalize_stages(describe, SOURCE, "p", None)[2]
    assert skipped["started_at"] is None and skipped["finished_at"] is None
    describe["stages"][2]["status"] = "TELEPORTED"
    with pytest.raises(RejectedPayload, match=r"stages\[2\].status"):
        norm.normalize_stages(describe, SOURCE, "p", None)


REPORT = {
    "_class": "hudson.tasks.junit.TestResult",
    "duration": 3.5,
    "failCount": 2,
    "passCount": 2,
    "skipCount": 1,
    "suites": [
        {
            "_class": "hudson.tasks.junit.SuiteResult",
            "name": "unit",
            "duration": 2.0,
            "cases": [
                {"_class": "hudson.tasks.junit.CaseResult", "status": s}
                for s in ("PASSED", "FIXED", "FAILED", "SKIPPED")
            ],
        },
        {"name": "unit", "duration": 1.5, "cases": [{"status": "REGRESSION"}]},  # same name: summed
    ],
}


def test_test_report_counts_cases_per_suite() -> None:
    rows = norm.normalize_test_report(REPORT, SOURCE, "app#3")
    check_rows("test_run", rows)
    assert rows == [
        {
            "source_id": SOURCE,
            "pipeline_external_id": "app#3",
            "suite": "unit",
            "total": 5,
            "failed": 2,
            "skipped": 1,
            "errors": 0,
            "duration_s": 3.5,
        }
    ]


def test_a_summarised_report_gives_the_same_rows() -> None:
    kept = norm.summarise_test_report(REPORT)
    assert "cases" not in json.dumps(kept)
    assert kept["suites"][0]["statuses"] == {"PASSED": 1, "FIXED": 1, "FAILED": 1, "SKIPPED": 1}
    assert norm.normalize_test_report(kept, SOURCE, "x") == norm.normalize_test_report(
        REPORT, SOURCE, "x"
    )
    assert norm.summarise_test_report(kept) == kept  # summarising twice changes nothing


# --- deployments -------------------------------------------------------------------------------


def test_deploy_build_with_a_digest_and_a_commit_parameter() -> None:
    build = load("build-info-no-params.json")
    build["actions"].append(
        params(
            ENV="PRO", IMAGE=f"registry.example/acme/app@{DIGEST}", GIT_COMMIT=SHA, BRANCH="main"
        )
    )
    row = deploy(build)
    assert (row["raw_environment"], row["environment_id"]) == ("PRO", 4)
    assert (row["image_digest"], row["image_resolution"]) == (DIGEST, "explicit")
    assert row["image_ref"] == f"registry.example/acme/app@{DIGEST}"
    assert (row["sha"], row["ref"]) == (SHA, "main")
    assert (row["status"], row["kind"], row["deployer"]) == ("success", "app", "anonymous")
    assert row["finished_at"] == row["started_at"] + timedelta(milliseconds=60750)
    assert row["external_id"] == "deploy-app#10"


def test_a_build_still_building_with_an_interim_result_is_running_with_no_finish() -> None:
    """Declarative pipelines set `result` (FAILURE) before their post steps finish: the build and
    a deploy build are running, with no finish, their raw interim result kept."""
    interim = {"building": True, "result": "FAILURE", "duration": 0}
    built = pipeline(with_actions("build-info.json", **interim))
    build = load("build-info-no-params.json") | interim
    build["actions"].append(params(ENV="PRO", IMAGE=f"registry.example/acme/app@{DIGEST}"))
    deployed = deploy(build)
    for row in (built, deployed):
        assert (row["status"], row["raw_status"]) == ("running", "FAILURE")
        assert row["finished_at"] is None
        assert row["updated_at"] == row["started_at"]
    assert built["duration_s"] is None
    finished = deploy(build | {"building": False, "duration": 60750})
    assert (finished["status"], finished["raw_status"]) == ("failed", "FAILURE")
    assert finished["finished_at"] == finished["started_at"] + timedelta(milliseconds=60750)


def test_deploy_build_with_a_tag_is_left_for_tag_resolution() -> None:
    build = with_actions(
        "build-info.json",
        params(ENV="uat", IMAGE="registry.example/acme/app:latest"),
        build_data("git@gitlab.example:acme/app.git", SHA, "origin/hotfix/12-timeout"),
    )
    revision = norm.revisions(build)[0]
    row = deploy(build, revision)
    assert (row["image_digest"], row["image_ref"], row["image_resolution"]) == (
        None,
        "registry.example/acme/app:latest",
        "none",
    )
    assert (row["sha"], row["ref"]) == (SHA, "hotfix/12-timeout")


def test_triggered_deploy_names_its_upstream_build() -> None:
    upstream = {
        "_class": "hudson.model.Cause$UpstreamCause",
        "upstreamProject": "team/app/main",
        "upstreamBuild": 41,
        "upstreamUrl": "job/team/job/app/job/main/",
    }
    build = load("build-info.json")
    build["actions"] = [
        params(ENV="FAT"),
        {"_class": "hudson.model.CauseAction", "causes": [upstream]},
    ]
    row = deploy(build)
    assert row["pipeline_external_id"] == "team/app/main#41"
    assert row["deployer"] is None and row["image_resolution"] == "none"


def test_deploy_without_its_environment_parameter_is_rejected() -> None:
    build = load("build-info-empty-and-null-params.json")
    with pytest.raises(RejectedPayload, match=r"^deployment: missing parameter fish"):
        deploy(build, env_parameter="fish")  # "" is no environment


def test_aborted_deploy_is_canceled_and_schema_jobs_are_schema() -> None:
    build = with_actions("build-info.json", params(ENV="prod"), result="ABORTED")
    assert deploy(build)["status"] == "canceled"
    assert deploy(build, job="team/migrate-db-v42")["kind"] == "schema"


def test_a_schema_jobs_version_comes_from_its_name_else_a_parameter() -> None:
    build = with_actions("build-info.json", params(ENV="prod", MIGRATION_VERSION="0042"))
    migrations = "team/db-migrations/deploy-app"
    assert (
        deploy(build, job=migrations)["kind"],
        deploy(build, job=migrations)["schema_version"],
    ) == (
        "schema",
        "0042",
    )
    assert deploy(build, job="team/migrate-db-v43")["schema_version"] == "43"  # the name wins
    assert deploy(build)["schema_version"] is None  # an app deployment has none
    plain = with_actions("build-info.json", params(ENV="prod"))
    assert (
        deploy(plain, job=migrations)["kind"],
        deploy(plain, job=migrations)["schema_version"],
    ) == (
        "schema",
        None,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"repo.example/a/b@{DIGEST}", (DIGEST, f"repo.example/a/b@{DIGEST}", "explicit")),
        (
            f"repo.example:5000/a/b:1.2@{DIGEST}",
            (DIGEST, f"repo.example:5000/a/b:1.2@{DIGEST}", "explicit"),
        ),
        ("repo.example:5000/a/b:1.2", (None, "repo.example:5000/a/b:1.2", "none")),
        ("  ", (None, None, "none")),
        (None, (None, None, "none")),
    ],
)
def test_image_references(value: Any, expected: tuple[Any, ...]) -> None:
    assert norm.image_reference(value) == expected


def test_a_digest_that_is_not_sha256_hex_is_rejected() -> None:
    with pytest.raises(RejectedPayload, match="image digest"):
        norm.image_reference("repo/app@sha256:nothex")


# --- names, URLs, listings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("branch", "ref"),
    [
        ("refs/remotes/origin/main", "main"),
        ("origin/feature/x", "feature/x"),
        ("refs/heads/release/1.2", "release/1.2"),
        ("feature/x", "feature/x"),  # a multibranch job's branch
        (None, None),
    ],
)
def test_ref_names(branch: str | None, ref: str | None) -> None:
    assert norm.ref_name(branch) == ref


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("git@gitlab.example:acme/Pay/app.git", ("gitlab.example", "acme/pay/app")),
        ("https://user:secret@gitlab.example/acme/pay/app.git", ("gitlab.example", "acme/pay/app")),
        ("ssh://git@gitlab.example:2222/acme/pay/app.git", ("gitlab.example", "acme/pay/app")),
        ("http://127.0.0.1:8929/acme/pay/app", ("127.0.0.1", "acme/pay/app")),
    ],
)
def test_repo_keys(url: str, key: tuple[str, str]) -> None:
    assert norm.repo_key(url) == key


def test_job_names_mention_services() -> None:
    assert norm.mentions("pay/pay-api-build", "pay-api")
    assert norm.mentions("deploy-pay-api", "pay-api")
    assert norm.mentions("pay/pay-api/feature%2Fx", "pay-api")
    assert not norm.mentions("pay/pay-api-v2", "pay-api-v")


def test_folder_classes_of_a_recorded_listing() -> None:
    classes = {
        j["name"]: bool(FOLDERS.search(j["_class"])) for j in load("jobsInRootFolder.json")["jobs"]
    }
    assert classes["Test MultiBranch Project"] and classes["Test Folder"]
    assert not classes["Test Free Style"] and not classes["Test Workflow Job"]


def test_listing_tree_and_cursor_forms() -> None:
    assert job_tree(2) == (
        "jobs[_class,name,fullName,url,lastBuild[number],"
        "jobs[_class,name,fullName,url,lastBuild[number],jobs[name]]]"
    )
    cursor = Cursor.parse('{"last": 12, "running": [11, 9]}')
    assert (cursor.last, cursor.running) == (12, [11, 9])
    assert Cursor.parse(cursor.dump()) == Cursor(12, [9, 11])
    assert Cursor.parse(None) == Cursor()


def test_listing_walk_finds_jobs_and_matches_deploy_jobs_on_the_whole_name() -> None:
    collector = JenkinsCollector(
        JenkinsSource(name="j", url="http://j"), SyncOptions(Settings(), None)
    )  # type: ignore[arg-type]
    workflow = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
    listing: list[dict[str, Any]] = [
        {
            "_class": "com.cloudbees.hudson.plugins.folder.Folder",
            "name": "pay",
            "fullName": "pay",
            "jobs": [
                {"_class": workflow, "fullName": "pay/deploy-pay-api", "lastBuild": {"number": 3}},
                {
                    "_class": "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
                    "fullName": "pay/pay-api",
                    "jobs": [
                        {
                            "_class": workflow,
                            "fullName": "pay/pay-api/feature%2Fdeploy-fix",
                            "lastBuild": None,
                        }
                    ],
                },
            ],
        },
        {
            "_class": "hudson.model.FreeStyleProject",
            "fullName": "deploy-legacy",
            "lastBuild": {"number": 9},
        },
    ]
    found: list[JobInfo] = []
    pending: list[str] = []
    collector._walk(listing, 1, found, pending)
    assert [(j.full_name, j.deploy, j.service, j.last) for j in found] == [
        ("pay/deploy-pay-api", True, "pay-api", 3),
        ("pay/pay-api/feature%2Fdeploy-fix", False, None, 0),  # a branch, not a deploy job
        ("deploy-legacy", True, "legacy", 9),
    ]
    assert found[1].path == "job/pay/job/pay-api/job/feature%252Fdeploy-fix/"
    # a folder at the deepest level a request lists is expanded by another request
    collector._walk(listing[:1], FOLDER_DEPTH, found, pending)
    assert pending == ["pay"]
