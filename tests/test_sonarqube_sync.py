"""The SonarQube collector against the sandbox's SonarQube simulator over real HTTP: the analyses
and their gates equal the ground truth (sandbox/sonarqube_org.py), an analysis without a revision
is kept and counted, a sync with nothing new costs one request per project and writes nothing,
9.9 basic auth, a refused token, and the normaliser on the real documented payloads."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from collectors.frame import SyncOptions
from collectors.sonarqube import SonarQubeCollector
from collectors.sonarqube_normalize import normalize_analysis, normalize_webhook
from collectors.sync import SourceSummary
from config.settings import Settings
from sandbox.generate import generate
from sandbox.model import Organisation
from sandbox.serve import Sandbox
from sandbox.server import FaultRule
from sandbox.sonarqube_org import SonarOrg
from warehouse.schema import CodeAnalysis, RawPayload

NOW = datetime(2025, 6, 2, tzinfo=UTC)
TOKEN_ENV = "CDM_TEST_SONAR_TOKEN"
SECRET = "sonar-secret-51c2"
FIXTURES = Path(__file__).parent / "fixtures" / "sonarqube"  # provenance: fixtures/SOURCES.md


@pytest.fixture(scope="module")
def org() -> Organisation:
    return generate(1, "small", NOW)


@pytest.fixture
def sandbox(org: Organisation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    with Sandbox.start(
        org=org, token=SECRET, jenkins=False, registry=False, sonarqube=True, keep_log=True
    ) as running:
        yield running


def settings(sandbox: Sandbox, **source: Any) -> Settings:
    entry = {**sandbox.sonarqube_source(TOKEN_ENV), **source}
    return Settings(
        sources={"sonarqube": [entry]},
        sync={"requests_per_second": 0, "history_days": sandbox.history_days()},
    )


def sync(sandbox: Sandbox, engine: Engine, **source: Any) -> SourceSummary:
    s = settings(sandbox, **source)
    return SonarQubeCollector(s.sources.sonarqube[0], SyncOptions(s, engine)).sync()


def rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.analysis_key: r for r in conn.execute(select(CodeAnalysis))}


def expected(sonar: SonarOrg) -> dict[str, tuple[Any, ...]]:
    status = {"OK": "passed", "WARN": "passed", "ERROR": "failed"}
    return {
        a.key: (a.project, a.branch, a.revision, a.date, status[a.status], a.task_id)
        for a in sonar.analyses()
        if a.revision
    }


def test_analyses_and_gates_equal_the_truth(sandbox: Sandbox, engine: Engine) -> None:
    summary = sync(sandbox, engine)
    assert summary.ok, summary.errors
    sonar = sandbox.sonar
    assert sonar is not None
    got = {
        k: (r.project_key, r.branch, r.revision, r.analysed_at, r.gate_status, r.ce_task_id)
        for k, r in rows(engine).items()
    }
    assert got == expected(sonar)
    # the one analysis without a revision: kept raw, rejected, counted
    assert summary.rejected == 1
    with engine.connect() as conn:
        kept = conn.execute(select(RawPayload.error).where(RawPayload.rejected)).all()
    assert len(kept) == 1 and "no revision" in (kept[0][0] or "")
    # failing conditions name the metric, its threshold and the actual value
    for r in rows(engine).values():
        truth = sonar.analysis(r.analysis_key)
        failing = [c["metricKey"] for c in truth.conditions if c["status"] == "ERROR"]
        assert [c["metric"] for c in r.failing_conditions] == failing
        assert all(c["threshold"] and c["actual"] for c in r.failing_conditions)
    # the project on a key of its own is mapped to its repository by config
    mapped = {r.project_key: r.repo_path for r in rows(engine).values()}
    assert all(mapped[k] == path for k, path in sonar.repositories.items())
    assert all(k == v for k, v in mapped.items() if k not in sonar.repositories)


def test_a_sync_with_nothing_new_costs_one_request_per_project(
    sandbox: Sandbox, engine: Engine
) -> None:
    first = sync(sandbox, engine)
    sonar = sandbox.sonar
    assert sonar is not None
    projects, analyses = len(sonar.projects), len(sonar.analyses())
    # listing + per project: branches, each branch's analyses (100 a page), one gate per analysis with a
    # revision, the CI activity (100 tasks a page)
    per_branch = Counter((a.project, a.branch) for a in sonar.analyses())
    branches = sum(math.ceil(n / 100) for n in per_branch.values())
    activity = sum(math.ceil(len(p.analyses) / 100) for p in sonar.projects)
    assert first.requests == 1 + projects + branches + (analyses - 1) + activity, first.requests
    second = sync(sandbox, engine)
    assert second.ok and second.rows == 0 and second.rejected == 0
    assert second.requests == 1 + projects, second.requests
    print(f"sonarqube requests: first sync {first.requests}, no-change sync {second.requests}")


def test_new_analyses_are_read_after_the_cursor(
    org: Organisation, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    middle = org.start + (NOW - org.start) / 2
    with Sandbox.start(
        org=org, token=SECRET, jenkins=False, registry=False, sonarqube=True, at=middle
    ) as running:
        assert sync(running, engine).ok
        early = len(rows(engine))
        running.advance(NOW)
        assert sync(running, engine).ok
        assert running.sonar is not None
        assert 0 < early < len(rows(engine)) == len(expected(running.sonar))


def test_version_9_9_reads_with_basic_auth(
    org: Organisation, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    with Sandbox.start(
        org=org, token=SECRET, jenkins=False, registry=False, sonarqube=True,
        sonarqube_version="9.9",
    ) as running:  # fmt: skip
        wrong = sync(running, engine, version="10")  # Bearer: 9.9 refuses it
        assert not wrong.ok and "HTTP 401" in wrong.errors[0] and TOKEN_ENV in wrong.errors[0]
        assert SECRET not in " ".join(wrong.errors)
        assert sync(running, engine, version="9.9").ok
        assert running.sonar is not None
        assert len(rows(engine)) == len(expected(running.sonar))


def test_normaliser_reads_the_documented_payloads() -> None:
    search = json.loads((FIXTURES / "project_analyses-search-example.json").read_text())
    status = json.loads((FIXTURES / "qualitygates-project_status-example.json").read_text())
    common = {"source_id": 1, "project": "p", "branch": "main", "repositories": {},
              "server": "https://sq.example"}  # fmt: skip
    row = normalize_analysis(search["analyses"][0], status, **common)
    assert row["analysis_key"] == "A2" and row["revision"].startswith("be6c75b8")
    assert row["gate_status"] == "failed" and row["raw_gate_status"] == "ERROR"
    assert [c["metric"] for c in row["failing_conditions"]] == [
        "new_coverage", "new_blocker_violations", "new_critical_violations", "open_issues",
    ]  # fmt: skip
    assert row["failing_conditions"][0] == {
        "metric": "new_coverage", "comparator": "LT", "threshold": "85",
        "actual": "82.50562381034781",
    }  # fmt: skip
    assert row["analysed_at"] == datetime(2016, 12, 12, 16, 12, 45, tzinfo=UTC)
    with pytest.raises(ValueError, match="P1 has no revision"):
        normalize_analysis(search["analyses"][2], None, **common)
    warn = {"projectStatus": {"status": "WARN", "conditions": []}}
    assert normalize_analysis(search["analyses"][0], warn, **common)["gate_status"] == "passed"


def test_webhook_normaliser_reads_real_payloads() -> None:
    error = json.loads((FIXTURES / "zulip-webhook-error.json").read_text())
    common = {"source_id": 1, "repositories": {"test-sonar": "acme/x"}, "server": "http://s"}
    with pytest.raises(ValueError, match="no revision"):  # SonarQube 8/9 without SCM data
        normalize_webhook(error, **common)
    row = normalize_webhook({**error, "revision": "a" * 40}, **common)
    assert row["gate_status"] == "failed" and row["repo_path"] == "acme/x"
    assert row["failing_conditions"] == [
        {"metric": "coverage", "comparator": "LT", "threshold": "80", "actual": "0.0"},
        {"metric": "duplicated_lines_density", "comparator": "GT", "threshold": "3",
         "actual": "89.39828080229226"},
    ]  # fmt: skip
    assert row["branch"] == "master" and row["pull_request"] is None
    assert row["ce_task_id"] == "AXgTFfXRZCzhMRNj54bo" and "analysis_key" not in row
    pr = {**error, "revision": "b" * 40, "branch": {"name": "42", "type": "PULL_REQUEST"}}
    assert normalize_webhook(pr, **common)["pull_request"] == "42"


def test_no_change_sync_writes_nothing_on_both_backends(sandbox: Sandbox, engine: Engine) -> None:
    sync(sandbox, engine)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(CodeAnalysis)).scalar_one()
    summary = sync(sandbox, engine, projects=[p.key for p in sandbox.sonar.projects])  # type: ignore[union-attr]
    assert summary.rows == 0 and count == len(expected(sandbox.sonar))  # type: ignore[arg-type]


def test_a_failing_project_fails_alone_and_the_next_sync_completes_it(
    sandbox: Sandbox, engine: Engine
) -> None:
    assert sandbox.sonarqube_app is not None and sandbox.sonar is not None
    rule = sandbox.sonarqube_app.faults.add(
        FaultRule(path="/api/project_branches/list", kind="500", after=2, times=1)
    )
    s = settings(sandbox)
    options = SyncOptions(s, engine, max_retries=0)
    summary = SonarQubeCollector(s.sources.sonarqube[0], options).sync()
    assert rule.fired == 1 and len(summary.errors) == 1, summary.errors
    error = summary.errors[0]
    assert "sonarqube: project " in error and "HTTP 500" in error and "resumes" in error
    failed = error.split("project ", 1)[1].split(":", 1)[0]
    stored = {r.project_key for r in rows(engine).values()}
    assert failed not in stored and len(stored) == len(sandbox.sonar.projects) - 1
    sandbox.sonarqube_app.faults.clear()
    assert sync(sandbox, engine).ok
    assert len(rows(engine)) == len(expected(sandbox.sonar))


def test_without_administer_the_ci_tasks_stay_unknown(
    sandbox: Sandbox, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A token with Browse only: api/ce/activity answers 403 once, the sync goes on without
    task ids and says so."""
    assert sandbox.sonarqube is not None and sandbox.sonar is not None
    sandbox.sonarqube.administer = False
    summary = sync(sandbox, engine)
    assert summary.ok, summary.errors
    stored = rows(engine)
    assert len(stored) == len(expected(sandbox.sonar))
    assert all(r.ce_task_id is None for r in stored.values())
    assert "may not read api/ce/activity" in caplog.text
