"""The Zentao and PagerDuty collectors (httpx, real HTTP) against the sandbox's tracker simulators:
incidents, work items and transitions equal the trackers' ground truth (`sandbox.tracker_truth`),
on SQLite and PostgreSQL; a token that expires, 429 and 502 answers, an interrupted sync, a
malformed payload, PagerDuty's 6-month windows and its offset cap.

Zentao and PagerDuty write times to the second: the truth is compared truncated to seconds."""

from __future__ import annotations

import io
import math
import tomllib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from rich.console import Console
from sqlalchemy import Engine, delete, select

from analytics.derive import derive
from analytics.incident_links import linked_incidents
from analytics.metrics import metrics
from analytics.scope import Scope
from analytics.stats import percentile
from analytics.views import delivery
from collectors.frame import SyncOptions
from collectors.jira import JiraCollector
from collectors.pagerduty import PagerDutyCollector
from collectors.run import run_sync
from collectors.sync import SourceSummary
from collectors.zentao import ZentaoCollector
from config.settings import Settings
from sandbox import reference as ref
from sandbox import tracker_truth
from sandbox.generate import generate
from sandbox.model import Organisation
from sandbox.pagerduty_api import MAX_RANGE
from sandbox.serve import Sandbox
from sandbox.server import FaultRule
from tests.sandbox_helpers import record_waits
from tests.sandbox_load import load_org
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import (
    ChangeFailure,
    Deployment,
    Incident,
    RawPayload,
    Service,
    Source,
    WorkItem,
    WorkItemLink,
    WorkItemTransition,
)

NOW = datetime(2025, 6, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def org() -> Organisation:
    return generate(1, "small", NOW)


@pytest.fixture
def sandbox(org: Organisation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox.start(org=org, jenkins=False, registry=False, trackers=True, keep_log=True) as sb:
        for name, value in sb.tracker_sources()[1].items():
            monkeypatch.setenv(name, value)
        yield sb


def settings_for(sb: Sandbox) -> Settings:
    sources, _ = sb.tracker_sources()
    sync = {"requests_per_second": 0, "history_days": sb.history_days()}
    return Settings(sources=sources, sync=sync)


def collector(sb: Sandbox, engine: Engine, kind: str, **options: Any) -> Any:
    settings = settings_for(sb)
    cls = ZentaoCollector if kind == "zentao" else PagerDutyCollector
    made = cls(getattr(settings.sources, kind)[0], SyncOptions(settings, engine, **options))
    record_waits(made)
    return made


def sync(sb: Sandbox, engine: Engine, kind: str, **options: Any) -> SourceSummary:
    summary: SourceSummary = collector(sb, engine, kind, **options).sync()
    return summary


def sec(at: datetime | None) -> datetime | None:
    return None if at is None else at.replace(microsecond=0)


# -- what the warehouse holds, and what it must -------------------------------------------------


def services(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Service.id, Service.name)).all())


def stored_incidents(engine: Engine, source: str, key_of: dict[str, str]) -> dict[str, Any]:
    names = services(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Incident.external_id,
                Incident.service_id,
                Incident.opened_at,
                Incident.resolved_at,
                Incident.linked_deployment,
                Incident.linked_pipeline,
            ).where(Incident.source_id == _source_id(conn, source))
        ).all()
    return {
        key_of.get(r.external_id, r.external_id): (
            names.get(r.service_id),
            r.opened_at,
            r.resolved_at,
            ("deployment", r.linked_deployment)
            if r.linked_deployment
            else ("pipeline", r.linked_pipeline)
            if r.linked_pipeline
            else None,
        )
        for r in rows
    }


def expected_incidents(org: Organisation, tracker: str) -> dict[str, Any]:
    return {
        key: (t.service, sec(t.opened_at), sec(t.resolved_at), t.link)
        for key, t in tracker_truth.incidents(org, tracker).items()
    }


def _source_id(conn: Any, name: str) -> int:
    from warehouse.schema import Source

    return int(conn.execute(select(Source.id).where(Source.name == name)).scalar_one())


def stored_work_items(engine: Engine) -> dict[str, Any]:
    names = services(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                WorkItem.key,
                WorkItem.kind,
                WorkItem.service_id,
                WorkItem.status_category,
                WorkItem.created_at,
                WorkItem.started_at,
                WorkItem.resolved_at,
            )
        ).all()
    return {
        r.key: (r.kind, names.get(r.service_id), r.status_category, r.created_at, r.started_at,
                r.resolved_at)
        for r in rows
    }  # fmt: skip


def expected_work_items(org: Organisation) -> dict[str, Any]:
    return {
        key: (t.kind, t.service, t.category, sec(t.created_at), sec(t.started_at),
              sec(t.resolved_at))
        for key, t in tracker_truth.work_items(org, "zentao").items()
        if t.kind != "task"  # the Zentao collector reads no tasks (no executions)
    }  # fmt: skip


def stored_transitions(engine: Engine) -> dict[str, list[tuple[datetime, str | None]]]:
    found: dict[str, list[tuple[datetime, str | None]]] = {}
    with engine.connect() as conn:
        for item, at, to in conn.execute(
            select(
                WorkItemTransition.item, WorkItemTransition.at, WorkItemTransition.to_category
            ).order_by(WorkItemTransition.item, WorkItemTransition.at)
        ):
            found.setdefault(item, []).append((at, to))
    return found


def expected_transitions(org: Organisation) -> dict[str, list[tuple[datetime, str | None]]]:
    return {
        i.key: sorted((t.at.replace(microsecond=0), t.to_category) for t in i.transitions)
        for i in org.trackers.of("zentao")
        if i.kind != "task" and i.transitions
    }


def pagerduty_keys(org: Organisation) -> dict[str, str]:
    """PagerDuty incident id -> the tracker item's key (the truth's key)."""
    return {f"PI{i.id}": i.key for i in org.trackers.items if i.kind == "incident" and i.paged}


def assert_zentao_equals_truth(engine: Engine, org: Organisation) -> None:
    assert stored_work_items(engine) == expected_work_items(org)
    assert stored_incidents(engine, "zentao", {}) == expected_incidents(org, "zentao")
    assert stored_transitions(engine) == expected_transitions(org)


def assert_pagerduty_equals_truth(engine: Engine, org: Organisation) -> None:
    assert stored_incidents(engine, "pagerduty", pagerduty_keys(org)) == expected_incidents(
        org, "pagerduty"
    )


# -- syncs equal the truth ----------------------------------------------------------------------


def test_zentao_sync_equals_truth_and_a_second_sync_changes_nothing(
    sandbox: Sandbox, engine: Engine, org: Organisation
) -> None:
    first = sync(sandbox, engine, "zentao")
    assert first.ok, first.errors
    assert_zentao_equals_truth(engine, org)
    assert any(v[0] is None for v in expected_incidents(org, "zentao").values())  # unmapped
    second = sync(sandbox, engine, "zentao")
    assert second.ok and second.rows == 0
    products = len(sandbox.zentao.data.products) if sandbox.zentao else 0
    # login + products, then per product: releases and two list pages per kind
    assert second.requests == 2 + 5 * products < first.requests
    print(f"zentao requests: first {first.requests}, no change {second.requests}")


def test_pagerduty_sync_equals_truth_and_a_second_sync_changes_nothing(
    sandbox: Sandbox, engine: Engine, org: Organisation
) -> None:
    first = sync(sandbox, engine, "pagerduty")
    assert first.ok, first.errors
    assert_pagerduty_equals_truth(engine, org)
    assert any(v[3] is not None for v in expected_incidents(org, "pagerduty").values())
    second = sync(sandbox, engine, "pagerduty")
    assert second.ok and second.rows == 0
    assert second.requests < first.requests
    print(f"pagerduty requests: first {first.requests}, no change {second.requests}")


# -- failures -----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A warehouse at head on SQLite: the failure paths are the same on both databases."""
    engine = make_engine(f"sqlite:///{tmp_path / 'failures.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_zentao_token_expiry_logs_in_again(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation
) -> None:
    assert sandbox.zentao is not None
    sandbox.zentao.token_requests = 6
    made = collector(sandbox, sqlite_engine, "zentao")
    summary = made.sync()
    assert summary.ok, summary.errors
    assert sandbox.zentao.logins > 2 and made._auth.logins == sandbox.zentao.logins
    assert_zentao_equals_truth(sqlite_engine, org)


def test_zentao_wrong_password_names_the_variables(
    sandbox: Sandbox, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_ZENTAO_PASSWORD", "wrong")
    summary = sync(sandbox, sqlite_engine, "zentao")
    assert not summary.ok
    assert "$SANDBOX_ZENTAO_PASSWORD" in summary.errors[0] and "wrong" not in summary.errors[0]


@pytest.mark.parametrize("kind", ["zentao", "pagerduty"])
def test_429_and_502_are_retried(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation, kind: str
) -> None:
    app = sandbox.zentao_app if kind == "zentao" else sandbox.pagerduty_app
    assert app is not None
    path = "/bugs/|/stories/" if kind == "zentao" else "/log_entries|/incidents$"
    too_many = app.faults.add(FaultRule(path, "429", times=2, seconds=1))
    bad_gateway = app.faults.add(FaultRule(path, "502", times=2, after=3))
    summary = sync(sandbox, sqlite_engine, kind)
    assert summary.ok, summary.errors
    assert too_many.fired == 2 and bad_gateway.fired == 2
    if kind == "zentao":
        assert_zentao_equals_truth(sqlite_engine, org)
    else:
        assert_pagerduty_equals_truth(sqlite_engine, org)


@pytest.mark.parametrize("kind", ["zentao", "pagerduty"])
def test_interrupted_sync_resumes_to_the_truth(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation, kind: str
) -> None:
    app = sandbox.zentao_app if kind == "zentao" else sandbox.pagerduty_app
    assert app is not None
    path = "/bugs/" if kind == "zentao" else "/related_change_events"
    app.faults.add(FaultRule(path, "502", after=2))  # every one after the second
    broken = sync(sandbox, sqlite_engine, kind, max_retries=1)
    assert not broken.ok and "502" in broken.errors[0]
    assert "resumes from the last saved cursor" in broken.errors[0]
    app.faults.clear()
    resumed = sync(sandbox, sqlite_engine, kind)
    assert resumed.ok, resumed.errors
    if kind == "zentao":
        assert_zentao_equals_truth(sqlite_engine, org)
    else:
        assert_pagerduty_equals_truth(sqlite_engine, org)


def rejected(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(select(RawPayload.external_id).where(RawPayload.rejected)).scalars()
        )


def test_zentao_malformed_bug_is_kept_and_counted(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation
) -> None:
    assert sandbox.zentao is not None
    bug = next(o for o in sandbox.zentao.data.objects if o.kind == "bug")
    sandbox.zentao.corrupt("bug", bug.id, lambda b: b.update(openedDate="yesterday"))
    summary = sync(sandbox, sqlite_engine, "zentao")
    assert summary.ok and summary.rejected == 1
    assert rejected(sqlite_engine) == [f"bug-{bug.id}"]
    expected = expected_work_items(org)
    expected.pop(f"bug-{bug.id}", None)
    stored = stored_work_items(sqlite_engine)
    assert stored == expected


def test_pagerduty_malformed_incident_is_kept_and_counted(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation
) -> None:
    assert sandbox.pagerduty is not None
    bad = sandbox.pagerduty.data.incidents[0].id
    sandbox.pagerduty.corrupt(bad, lambda b: b.update(created_at="soon"))
    summary = sync(sandbox, sqlite_engine, "pagerduty")
    assert summary.ok and summary.rejected == 1
    assert rejected(sqlite_engine) == [bad]
    expected = expected_incidents(org, "pagerduty")
    expected.pop(pagerduty_keys(org)[bad])
    assert stored_incidents(sqlite_engine, "pagerduty", pagerduty_keys(org)) == expected


# -- PagerDuty: windows, the offset cap, open incidents ----------------------------------------


def incident_requests(sb: Sandbox) -> list[tuple[datetime, datetime, int]]:
    assert sb.pagerduty_app is not None and sb.pagerduty_app.stats.log is not None
    found = []
    for _, _, target, status in sb.pagerduty_app.stats.log:
        parts = urlsplit(target)
        if parts.path != "/incidents":
            continue
        query = parse_qs(parts.query)
        found.append(
            (
                datetime.fromisoformat(query["since"][0]),
                datetime.fromisoformat(query["until"][0]),
                status,
            )
        )
    return found


def test_pagerduty_reads_6_month_windows_and_splits_over_the_offset_cap(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation
) -> None:
    assert sandbox.pagerduty is not None
    sandbox.pagerduty.offset_cap = 1
    made = collector(sandbox, sqlite_engine, "pagerduty")
    made.offset_cap, made.page = 1, 1
    summary = made.sync()
    assert summary.ok, summary.errors
    assert_pagerduty_equals_truth(sqlite_engine, org)
    windows = incident_requests(sandbox)
    assert all(status == 200 for *_, status in windows)
    assert all(until - since <= MAX_RANGE for since, until, _ in windows)
    history = timedelta(days=sandbox.history_days())
    spans = {(since, until) for since, until, _ in windows}
    assert len(spans) > math.ceil(history / timedelta(days=180))  # 6-month windows, some split
    assert any(until - since < timedelta(days=90) for since, until, _ in windows)


def test_pagerduty_rereads_from_the_oldest_open_incident(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation
) -> None:
    """An incident open at the first sync is read again (from its creation) and resolved by the
    next. (Other services' incidents created after the simulator's earlier instant are not: the
    cursor is capped at the sync's real start, and a real PagerDuty never creates incidents in
    the past; so only this incident is compared.)"""
    assert sandbox.pagerduty is not None
    incident = next(
        i
        for i in sandbox.pagerduty.data.incidents
        if i.resolved_at is not None and i.resolved_at > i.created_at
    )
    assert incident.resolved_at is not None
    sandbox.advance(incident.created_at + (incident.resolved_at - incident.created_at) / 2)
    first = sync(sandbox, sqlite_engine, "pagerduty")
    assert first.ok
    with sqlite_engine.connect() as conn:
        status = conn.execute(
            select(Incident.status, Incident.resolved_at).where(Incident.external_id == incident.id)
        ).one()
    assert tuple(status) in (("open", None), ("acknowledged", None))
    sandbox.advance(org.now)
    second = sync(sandbox, sqlite_engine, "pagerduty")
    assert second.ok
    key = pagerduty_keys(org)[incident.id]
    stored = stored_incidents(sqlite_engine, "pagerduty", pagerduty_keys(org))
    assert stored[key] == expected_incidents(org, "pagerduty")[key]


def test_zentao_v2_local_times_equal_the_truth(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation
) -> None:
    """REST v2: login at /users/login, detail answers wrapped, local Asia/Shanghai times."""
    settings = settings_for(sandbox)
    source = settings.sources.zentao[0].model_copy(update={"api": "v2"})
    summary = ZentaoCollector(source, SyncOptions(settings, sqlite_engine)).sync()
    assert summary.ok, summary.errors
    assert_zentao_equals_truth(sqlite_engine, org)
    assert sandbox.zentao_app is not None
    assert sandbox.zentao_app.stats.by_route["/api.php/v2/users/login"] == 1


def test_zentao_bugs_filed_against_an_mr_link_it(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation
) -> None:
    assert sync(sandbox, sqlite_engine, "zentao").ok
    with sqlite_engine.connect() as conn:
        links = set(
            conn.execute(
                select(
                    WorkItemLink.item,
                    WorkItemLink.kind,
                    WorkItemLink.repo_path,
                    WorkItemLink.target,
                ).where(WorkItemLink.origin == "tracker")
            ).all()
        )
    expected = {
        (i.key, "merge_request", i.caused_by[0], str(i.caused_by[1]))
        for i in org.trackers.of("zentao")
        if i.caused_by is not None and i.kind == "bug"
    }
    assert expected and links == expected


def sync_every_tracker(sandbox: Sandbox, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jira, Zentao and PagerDuty over HTTP into `engine`."""
    monkeypatch.setenv("SANDBOX_JIRA_USER", sandbox.jira_user)
    monkeypatch.setenv("SANDBOX_JIRA_TOKEN", sandbox.token)
    settings = Settings(
        sources={"jira": [sandbox.jira_source("SANDBOX_JIRA_TOKEN", "SANDBOX_JIRA_USER")]},
        sync={"requests_per_second": 0, "history_days": sandbox.history_days()},
    )
    jira = JiraCollector(settings.sources.jira[0], SyncOptions(settings, engine)).sync()
    assert jira.ok, jira.errors
    assert sync(sandbox, engine, "zentao").ok
    assert sync(sandbox, engine, "pagerduty").ok


def assert_failures_equal_the_truth(engine: Engine, org: Organisation) -> None:
    truth = {i: f for i, f in ref.change_failures(org).items() if f.failed}
    recoveries = ref.recoveries(org)
    with engine.connect() as conn:
        found = {
            int(ext): (incident, recovered)
            for ext, incident, recovered in conn.execute(
                select(
                    Deployment.external_id, ChangeFailure.incident, ChangeFailure.recovered_at
                ).join(ChangeFailure, ChangeFailure.deployment_id == Deployment.id)
            )
        }
    assert set(found) == set(truth)
    assert any(incident for incident, _ in found.values())
    for i, (incident, recovered) in found.items():
        assert bool(incident) == ("incident" in truth[i].reasons), i
        assert sec(recovered) == sec(recoveries[i].recovered_at), i


def test_change_failures_and_recoveries_from_the_trackers_incidents_equal_the_truth(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitLab's data loaded without its incidents, then Jira, Zentao and PagerDuty over HTTP, then
    derive: the trackers' incidents alone (their explicit links included) give the change
    failures and recoveries the reference computes."""
    load_org(sqlite_engine, org)
    with sqlite_engine.begin() as conn:
        assert conn.execute(delete(Incident)).rowcount > 0  # GitLab's own incidents: gone
    sync_every_tracker(sandbox, sqlite_engine, monkeypatch)
    with sqlite_engine.connect() as conn:
        linked = conn.execute(
            select(Incident.external_id).where(Incident.linked_deployment.is_not(None))
        ).all()
    assert linked  # explicit links are there to win
    built = {i.key: i for i in org.trackers.of("zentao") if i.build is not None}
    assert built  # a Zentao incident found in a build of a tagged release
    derive(sqlite_engine)  # production chains, which links resolve against
    with sqlite_engine.connect() as conn:
        resolved = linked_incidents(conn)
        rows = conn.execute(
            select(Incident.id, Incident.key, Incident.linked_deployment, Incident.linked_sha)
            .join(Source, Source.id == Incident.source_id)
            .where(Source.kind == "zentao", Incident.key.in_(list(built)))
        ).all()
        external = dict(conn.execute(select(Deployment.id, Deployment.external_id)).all())
    assert {r.key: (r.linked_deployment, r.linked_sha) for r in rows} == {
        k: (f"tag:{i.build.tag}", i.build.sha) for k, i in built.items() if i.build
    }
    assert {r.key: external.get(resolved[r.id] or 0) for r in rows} == {
        k: str(i.linked_deployment) for k, i in built.items()
    }
    assert_failures_equal_the_truth(sqlite_engine, org)


def test_one_incident_recorded_by_gitlab_and_the_trackers_counts_once(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitLab's incidents (their descriptions name the tracker key and the PagerDuty URL) and the
    trackers' records of them: derive counts each incident once, the one with an explicit link
    when a record has one; failures, recoveries and the incidents recovery time counts equal the
    truth."""
    load_org(sqlite_engine, org)
    sync_every_tracker(sandbox, sqlite_engine, monkeypatch)
    derive(sqlite_engine)
    assert_failures_equal_the_truth(sqlite_engine, org)
    records: dict[tuple[str, str], int] = {}  # (source kind, external id or key) -> incident
    for item in org.trackers.items:
        if item.incident is None:
            continue
        records[("gitlab", str(item.incident.id))] = item.incident.id
        records[(item.tracker, item.key)] = item.incident.id
        if item.paged:
            records[("pagerduty", f"PI{item.id}")] = item.incident.id
    with sqlite_engine.connect() as conn:
        rows = conn.execute(
            select(
                Source.kind,
                Incident.external_id,
                Incident.key,
                Incident.duplicate_of,
                Incident.linked_deployment,
                Incident.linked_pipeline,
            )
            .join(Source, Source.id == Incident.source_id)
            .where(Incident.service_id.is_not(None))
        ).all()
        scope = Scope(org.start - timedelta(days=60), org.now + timedelta(days=1))
        counted_by_metrics = metrics(conn, scope)["recovery_time"]["incidents"]
        listed = len(delivery.incidents(conn, scope))  # the dashboard's list of them
    counted: dict[int, list[Any]] = {}
    for r in rows:
        name = r.external_id if r.kind in ("gitlab", "pagerduty") else r.key
        incident = records[(r.kind, name)]
        if r.duplicate_of is None:
            counted.setdefault(incident, []).append(r)
    assert sorted(counted) == sorted({i.id for s in org.services for i in s.incidents})
    assert all(len(found) == 1 for found in counted.values())  # once each
    linked = {records[(i.tracker, i.key)] for i in org.trackers.items if i.link or i.build}
    assert linked and all(
        counted[i][0].linked_deployment or counted[i][0].linked_pipeline for i in linked
    )  # the record with the explicit link is the one counted
    assert counted_by_metrics == listed == len(counted)


def test_cdmetrics_sync_runs_both_trackers_by_their_kinds(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation
) -> None:
    summaries = run_sync(settings_for(sandbox), sqlite_engine, console=Console(file=io.StringIO()))
    assert {(s.name, s.kind, s.ok) for s in summaries} == {
        ("zentao", "zentao", True),
        ("pagerduty", "pagerduty", True),
    }
    assert_zentao_equals_truth(sqlite_engine, org)
    assert_pagerduty_equals_truth(sqlite_engine, org)


def test_a_pagerduty_service_it_does_not_know_is_an_error_naming_it(
    sandbox: Sandbox, sqlite_engine: Engine, org: Organisation
) -> None:
    settings = settings_for(sandbox)
    source = settings.sources.pagerduty[0]
    source = source.model_copy(update={"services": {**source.services, "PNOSUCH": "ghost"}})
    summary = PagerDutyCollector(source, SyncOptions(settings, sqlite_engine)).sync()
    assert [e for e in summary.errors if "PNOSUCH" in e]
    assert_pagerduty_equals_truth(sqlite_engine, org)  # the known services synced


def test_requirement_lead_time_and_bug_escapes_from_zentao_equal_the_truth(
    sandbox: Sandbox, engine: Engine, org: Organisation
) -> None:
    """GitLab's data (loaded) and a Zentao sync over HTTP, derived: requirement lead time and the
    bug escape rate of the Zentao teams equal the sandbox's truth (Zentao's whole seconds apart)."""
    load_org(engine, org)
    assert sync(sandbox, engine, "zentao").ok
    derive(engine)
    truth = tracker_truth.requirement_lead_times(org, "zentao")
    assert truth
    scope = Scope(org.start - timedelta(days=60), org.now + timedelta(days=1))
    with engine.connect() as conn:
        got = metrics(conn, scope)
    hours = [r.hours for r in truth]
    lead = got["requirement_lead_time"]
    assert lead["items"] == len(truth)
    assert lead["median_hours"] == pytest.approx(percentile(hours, 0.5), abs=1e-3)
    assert lead["p90_hours"] == pytest.approx(percentile(hours, 0.9), abs=1e-3)
    escaped, linked = tracker_truth.bug_escapes(org, "zentao")
    assert (got["bug_escape_rate"]["escaped"], got["bug_escape_rate"]["bugs"]) == (escaped, linked)


def test_sandbox_describe_names_the_trackers_in_a_config_that_loads(sandbox: Sandbox) -> None:
    """`cdmetrics sandbox serve` prints this: the Zentao and PagerDuty sources, their variables."""
    text = sandbox.describe()
    config = tomllib.loads(text.split("# cdmetrics.toml\n", 1)[1])
    settings = Settings(**config)
    assert settings.sources.zentao[0].url == sandbox.tracker_sources()[0]["zentao"][0]["url"]
    assert (
        settings.sources.pagerduty[0].services
        == sandbox.tracker_sources()[0]["pagerduty"][0]["services"]
    )
    assert "export SANDBOX_ZENTAO_PASSWORD=" in text and "export SANDBOX_PAGERDUTY_TOKEN=" in text


# -- an incident moved to another service after it was opened ----------------------------------


def incident_failures_found(engine: Engine) -> dict[str, set[int]]:
    """service -> the external ids of its deployments failed with an incident reason."""
    found: dict[str, set[int]] = {}
    with engine.connect() as conn:
        for name, external in conn.execute(
            select(Service.name, Deployment.external_id)
            .join(Deployment, Deployment.service_id == Service.id)
            .join(ChangeFailure, ChangeFailure.deployment_id == Deployment.id)
            .where(ChangeFailure.incident)
        ):
            found.setdefault(name, set()).add(int(external))
    return found


def incident_records_found(engine: Engine) -> Counter[str]:
    """service -> the trackers' incident rows filed under it."""
    with engine.connect() as conn:
        return Counter(
            conn.execute(
                select(Service.name)
                .join(Incident, Incident.service_id == Service.id)
                .join(Source, Source.id == Incident.source_id)
                .where(Source.kind.in_(("jira", "zentao", "pagerduty")))
            ).scalars()
        )


def derived_failures(engine: Engine) -> set[tuple[Any, ...]]:
    """change_failure by natural keys, and the service each incident last counted for."""
    with engine.connect() as conn:
        failures = conn.execute(
            select(
                Deployment.external_id,
                ChangeFailure.incident,
                ChangeFailure.rollback,
                ChangeFailure.hotfix,
                ChangeFailure.recovered_at,
            ).join(Deployment, Deployment.id == ChangeFailure.deployment_id)
        ).all()
        incidents = conn.execute(
            select(Source.name, Incident.external_id, Incident.failure_service_id).join(
                Source, Source.id == Incident.source_id
            )
        ).all()
    return {("failure", *f) for f in failures} | {("incident", *i) for i in incidents}


def test_an_incident_moved_to_another_service_counts_where_it_is_filed_at_each_sync(
    sandbox: Sandbox, engine: Engine, org: Organisation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jira incidents filed under service A and moved to service B while open (one paged, so its
    PagerDuty incident is reassigned too): synced (Jira, Zentao, PagerDuty over HTTP, GitLab's
    delivery loaded without its incidents) and derived before the move, the change failures and
    incident records per service equal the truth at that instant (A's); after the move, an
    incremental sync and derive equal the truth (B's, the reference's) and a full derive."""
    moved = [i for i in org.trackers.items if i.moved_from is not None]
    paged = next(i for i in moved if i.paged)
    assert paged.moved_at is not None and paged.moved_from is not None
    before = paged.created_at + (paged.moved_at - paged.created_at) / 2
    assert tracker_truth.incident_failures(org, before) != tracker_truth.incident_failures(org)
    assert paged.incident is not None and paged.incident.closed_at is not None
    assert before < paged.incident.closed_at  # still open at the first sync: read again later

    def sync_at(at: datetime) -> None:
        load_org(engine, org, at)
        with engine.begin() as conn:
            conn.execute(delete(Incident).where(Incident.source_id == _gitlab(conn)))
        sandbox.advance(at)
        sync_every_tracker(sandbox, engine, monkeypatch)
        derive(engine)

    try:
        sync_at(before)
    finally:
        sandbox.advance(org.now)
    assert incident_records_found(engine) == tracker_truth.incident_records(org, before)
    assert incident_failures_found(engine) == tracker_truth.incident_failures(org, before)
    assert (
        incident_records_found(engine)[paged.moved_from]
        > tracker_truth.incident_records(org)[paged.moved_from]
    )

    sync_at(org.now)  # incremental: the cursors of the first sync, derive not --full
    assert sandbox.pagerduty_app is not None and sandbox.pagerduty_app.stats.log is not None
    by_id = [
        t for _, _, t, _ in sandbox.pagerduty_app.stats.log if urlsplit(t).path.count("/") == 2
    ]
    assert f"/incidents/PI{paged.id}" in by_id  # no longer listed under A: read by id
    assert incident_records_found(engine) == tracker_truth.incident_records(org)
    assert incident_failures_found(engine) == tracker_truth.incident_failures(org)
    assert_failures_equal_the_truth(engine, org)
    incremental = derived_failures(engine)
    derive(engine, full=True)
    assert derived_failures(engine) == incremental


def _gitlab(conn: Any) -> int:
    return int(conn.execute(select(Source.id).where(Source.kind == "gitlab")).scalar_one())
