"""quality-gate-failed and quality-gate-missing on the small organisation equal the ground truth
(sandbox/sonarqube_org.py reimplements the rule over the generated objects), in the scan and in
the gate; the rule's edge cases by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select

from analytics.derive import derive
from analytics.gate import evaluate
from analytics.policies import quality_gate as rule
from analytics.policies import scan
from analytics.scope import Scope
from analytics.views import quality_gates
from cdmetrics.gate_output import gate_junit
from collectors.frame import SyncOptions
from collectors.sonarqube import SonarQubeCollector
from config.settings import PoliciesSettings, QualityGatePolicy, Settings
from sandbox.generate import generate
from sandbox.model import Organisation
from sandbox.serve import Sandbox
from sandbox.sonarqube_org import SonarOrg, production_deployments
from sandbox.sonarqube_org import quality_gate_failed as truth_failed
from sandbox.sonarqube_org import quality_gate_missing as truth_missing
from tests.sandbox_load import load_org
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import CodeAnalysis, Image

NOW = datetime(2025, 6, 2, tzinfo=UTC)
PATH = ["test", "staging", "production"]
TOKEN_ENV = "CDM_TEST_SONAR_TOKEN"
World = tuple[Organisation, SonarOrg, Engine]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    org = generate(1, "small", NOW)
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('qg') / 'w.db'}")
    upgrade(engine)
    load_org(engine, org)
    derive(engine)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_ENV, "sonar-token")
        with Sandbox.start(
            org=org, token="sonar-token", jenkins=False, registry=False, sonarqube=True
        ) as sandbox:
            settings = Settings(
                sources={"sonarqube": [sandbox.sonarqube_source(TOKEN_ENV)]},
                sync={"requests_per_second": 0, "history_days": sandbox.history_days()},
            )
            source = settings.sources.sonarqube[0]
            assert SonarQubeCollector(source, SyncOptions(settings, engine)).sync().ok
            assert sandbox.sonar is not None
            sonar = sandbox.sonar
    yield org, sonar, engine
    engine.dispose()


def found(world: World, policy: str, params: dict[str, Any] | None = None) -> dict[str, str]:
    org, _, engine = world
    with engine.connect() as conn:
        violations = scan(
            conn,
            org.start - timedelta(days=60),
            org.now + timedelta(days=1),
            PATH,
            params,  # type: ignore[arg-type]
            only=[policy],
        )
    return {v.subject.split(":")[1]: v.message for v in violations}


def test_quality_gate_failed_equals_the_truth(world: World) -> None:
    org, sonar, _ = world
    truth = truth_failed(org, sonar)
    got = found(world, "quality-gate-failed")
    assert set(got) == {str(d) for d in truth}
    assert {str(d) for d in sonar.red_deployed} <= set(got)  # the seeded red gates
    for deployment, analysis in truth.items():
        message = got[str(deployment)]
        a = sonar.analysis(analysis)
        failing = [c["metricKey"] for c in a.conditions if c["status"] == "ERROR"]
        assert all(m in message for m in failing) and f"/dashboard?id={a.project}" in message


def test_an_analysis_after_the_deployment_does_not_count(world: World) -> None:
    org, sonar, _ = world
    assert sonar.late_analysed is not None
    late = str(sonar.late_analysed)
    assert late not in found(world, "quality-gate-failed")  # its red analysis came after it
    missing = found(world, "quality-gate-missing", {"quality-gate-missing": {"enabled": True}})
    assert late in missing
    assert set(missing) == {str(d) for d in truth_missing(org, sonar)}


def test_quality_gate_missing_is_off_by_default(world: World) -> None:
    assert found(world, "quality-gate-missing") == {}


def test_ignored_conditions_do_not_deny(world: World) -> None:
    org, sonar, _ = world
    params = {"quality-gate-failed": {"ignored_conditions": ["new_coverage"]}}
    got = found(world, "quality-gate-failed", params)
    assert set(got) == {str(d) for d in truth_failed(org, sonar, ignored=["new_coverage"])}
    assert len(got) < len(truth_failed(org, sonar))


def test_the_gate_decides_as_the_scan(world: World) -> None:
    """Promoting each red deployment's image again, just before that deployment started, is
    denied by quality-gate-failed; its JSON names the analysis, its JUnit fails the testcase."""
    org, sonar, engine = world
    truth = truth_failed(org, sonar)
    deployments = {d.id: (s, d) for s, d in production_deployments(org)}
    for deployment_id, analysis in truth.items():
        s, d = deployments[deployment_id]
        with engine.connect() as conn:
            digest = conn.execute(
                select(Image.digest).where(Image.revision == d.sha, Image.index_digest.is_(None))
            ).scalar()
            assert digest, d.id
            start = d.job.started_at or d.created_at
            decision = evaluate(
                conn, s.name, f"{s.image_repository}@{digest}", "production", PATH, now=start
            ).as_json()
        assert any(r["policy"] == "quality-gate-failed" for r in decision["reasons"]), decision
        assert decision["decision"] == "deny"
        assert decision["quality_gate"]["analysis"] == analysis
        assert decision["quality_gate"]["status"] == "failed"
        json.dumps(decision, default=str)
        assert 'name="quality-gate-failed"><failure' in gate_junit(decision, with_ref=False)


def test_the_gate_skips_the_quality_gate_before_production(world: World) -> None:
    org, _, engine = world
    s, _d = production_deployments(org)[0]
    with engine.connect() as conn:
        decision = evaluate(conn, s.name, f"{s.image_repository}:nope", "staging", PATH)
    assert decision.quality_gate is None
    junit = gate_junit(decision.as_json(), with_ref=False)
    assert "quality-gate" not in junit


# -- the rule's edge cases -----------------------------------------------------------------------

T0 = datetime(2025, 1, 6, 12, tzinfo=UTC)


def analysis(
    minutes: int, status: str = "passed", branch: str | None = "main", failing: Any = None
) -> Any:
    return SimpleNamespace(
        analysed_at=T0 + timedelta(minutes=minutes),
        branch=branch,
        gate_status=status,
        failing_conditions=failing if failing is not None else [],
        analysis_key=f"A{minutes}",
        project_key="p",
        url=None,
    )


COVERAGE = [{"metric": "new_coverage", "comparator": "LT", "threshold": "80", "actual": "50"}]


@pytest.mark.parametrize(
    ("name", "analyses", "params", "status"),
    [
        ("red before the deployment", [analysis(-10, "failed", failing=COVERAGE)], {}, "failed"),
        ("red after the deployment", [analysis(10, "failed", failing=COVERAGE)], {}, "missing"),
        (
            "the latest before decides",
            [analysis(-20, "failed", failing=COVERAGE), analysis(-5)],
            {},
            "passed",
        ),
        (
            "a feature branch does not count",
            [analysis(-5, "failed", "feature/x", COVERAGE)],
            {},
            "missing",
        ),
        (
            "release branches count",
            [analysis(-5, "failed", "release/2.1", COVERAGE)],
            {},
            "failed",
        ),
        (
            "an ignored condition passes",
            [analysis(-5, "failed", failing=COVERAGE)],
            {"ignored_conditions": ["new_coverage"]},
            "passed",
        ),
        (
            "too old an analysis",
            [analysis(-3 * 1440, "failed", failing=COVERAGE)],
            {"max_analysis_age_days": 2},
            "missing",
        ),
        ("no gate computed", [analysis(-5, "none")], {}, "none"),
        ("no analysis", [], {}, "missing"),
    ],
)
def test_verdict(name: str, analyses: list[Any], params: dict[str, Any], status: str) -> None:
    assert rule.verdict(analyses, T0, QualityGatePolicy(**params)).status == status, name


def test_policy_settings_are_typed(tmp_path: Path) -> None:
    settings = PoliciesSettings.model_validate(
        {"quality-gate-missing": {"enabled": True, "branches": ["trunk"]}}
    )
    assert settings.quality_gate_missing.enabled and settings.quality_gate_missing.branches == [
        "trunk"
    ]
    with pytest.raises(ValueError, match="max_analysis_age_days"):
        PoliciesSettings.model_validate({"quality-gate-failed": {"max_analysis_age_days": 0}})


def test_cdmetrics_gate_reports_the_quality_gate(world: World, tmp_path: Path) -> None:
    """The CLI on the synced warehouse, now: a red-gated commit's image is denied with the
    `quality_gate` block in JSON and a failing JUnit testcase."""
    org, sonar, engine = world

    def latest(s: Any, d: Any) -> Any:
        mine = [a for a in sonar.analyses() if a.revision == d.sha and a.branch == s.default_branch]
        return max(mine, key=lambda a: a.date)

    red = [(s, d) for s, d in production_deployments(org) if d.id in sonar.red_deployed]
    # a seeded red commit still red now (a later green analysis of the same commit would pass)
    s, d = next((s, d) for s, d in red if latest(s, d).status == "ERROR")
    analysis = latest(s, d)
    with engine.connect() as conn:
        digest = conn.execute(
            select(Image.digest).where(Image.revision == d.sha, Image.index_digest.is_(None))
        ).scalar()
    base = [sys.executable, "-m", "cdmetrics", "--warehouse", str(engine.url), "gate"]
    base += ["--service", s.name, "--image", f"{s.image_repository}@{digest}", "--to", "production"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMETRICS_")}
    answer = subprocess.run(
        [*base, "--format", "json"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    gate = json.loads(answer.stdout)["quality_gate"]
    assert gate["commit"] == d.sha and gate["analysis"] == analysis.key
    assert gate["status"] == "failed" and answer.returncode == 1, answer.stderr
    assert gate["failing_conditions"] and gate["url"].endswith(f"branch={s.default_branch}")
    junit = subprocess.run(
        [*base, "--format", "junit"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    case = ET.fromstring(junit.stdout).find("testcase[@name='quality-gate-failed']")
    assert case is not None
    assert case.find("failure") is not None


def test_without_any_analysis_every_gate_is_missing_unresolved(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warehouse holding no analysis (no SonarQube source) reads every production deployment's
    gate as missing, counted per service in SQL without reading each deployment or resolving
    its commit: as the full reading would find."""
    org, _, engine = world
    scope = Scope(org.start - timedelta(days=60), org.now + timedelta(days=1))
    with engine.connect() as conn:
        assert quality_gates(conn, scope, PATH)["total"]["green"] > 0
        conn.execute(delete(CodeAnalysis))  # in the read's transaction, rolled back
        bare = quality_gates(conn, scope, PATH)
        monkeypatch.setattr(rule, "analysed", lambda conn: True)  # the full reading
        full = quality_gates(conn, scope, PATH)
        conn.rollback()
    assert bare == full
    total = bare["total"]
    assert total["missing"] == total["deployments"] > 0 and not bare["red"]
