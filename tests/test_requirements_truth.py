"""Requirement lead time and bug escape rate from a real Jira sync (over HTTP) beside the
organisation's delivery history, on SQLite and PostgreSQL, equal the sandbox's truth; derive links
work items to the merge requests whose titles name them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, String, cast, delete, select, update

from analytics.derive import derive
from analytics.metrics import metrics
from analytics.requirements import requirement_lead_time
from analytics.rows import RequirementRow, ScopeData
from analytics.scope import Scope
from analytics.stats import percentile
from collectors.frame import SyncOptions
from collectors.jira import JiraCollector
from config.settings import Settings
from sandbox import reference as ref
from sandbox.generate import generate
from sandbox.model import Organisation
from sandbox.serve import Sandbox
from sandbox.tracker_truth import bug_escapes, reference_links, requirement_lead_times
from tests.analytics_world import T0, at
from tests.sandbox_helpers import HISTORY_END
from tests.sandbox_load import load_org
from warehouse.schema import (
    ChangeFailure,
    Deployment,
    DeriveState,
    Incident,
    MergeRequest,
    Repo,
    Service,
    Source,
    WorkItem,
    WorkItemLink,
)

TOKEN_ENV, USER_ENV = "CDM_TEST_JIRA_TOKEN", "CDM_TEST_JIRA_USER"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    org = generate(1, "small", HISTORY_END)
    with Sandbox.start(org=org, jenkins=False, registry=False) as running:
        yield running


@pytest.fixture
def synced(
    sandbox: Sandbox, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> tuple[Organisation, Engine]:
    monkeypatch.setenv(TOKEN_ENV, sandbox.token)
    monkeypatch.setenv(USER_ENV, sandbox.jira_user)
    load_org(engine, sandbox.org)
    settings = Settings(
        sources={"jira": [sandbox.jira_source(TOKEN_ENV, USER_ENV)]},
        sync={"requests_per_second": 0, "history_days": sandbox.history_days()},
    )
    summary = JiraCollector(settings.sources.jira[0], SyncOptions(settings, engine)).sync()
    assert summary.ok, summary.errors
    derive(engine)
    return sandbox.org, engine


def whole(org: Organisation) -> Scope:
    return Scope(org.start - timedelta(days=60), org.now + timedelta(days=1))


def test_derive_links_work_items_to_the_merge_requests_naming_them(
    synced: tuple[Organisation, Engine],
) -> None:
    org, engine = synced
    query = (
        select(WorkItem.key, WorkItemLink.repo_path, WorkItemLink.target)
        .join(
            WorkItem,
            (WorkItem.source_id == WorkItemLink.source_id)
            & (WorkItem.external_id == WorkItemLink.item),
        )
        .where(WorkItemLink.origin == "reference")
    )
    with engine.connect() as conn:
        found = {(k, p, int(t)) for k, p, t in conn.execute(query)}
    assert found == reference_links(org, "jira")
    assert found


def test_requirement_lead_time_and_bug_escape_rate_equal_the_truth(
    synced: tuple[Organisation, Engine],
) -> None:
    org, engine = synced
    truth = requirement_lead_times(org, "jira")
    assert truth
    with engine.connect() as conn:
        got = metrics(conn, whole(org))
    hours = [r.hours for r in truth]
    lead = got["requirement_lead_time"]
    assert lead["items"] == len(truth)
    assert lead["median_hours"] == pytest.approx(percentile(hours, 0.5))
    assert lead["p90_hours"] == pytest.approx(percentile(hours, 0.9))
    delivery = [
        r.delivery_hours for r in truth if r.delivery_hours is not None and r.delivery_hours >= 0
    ]
    assert lead["stages"]["delivery"] == pytest.approx(percentile(delivery, 0.5))
    escaped, linked = bug_escapes(org, "jira")
    assert got["bug_escape_rate"] == {
        "escaped": escaped,
        "bugs": linked,
        "rate": pytest.approx(escaped / linked) if linked else None,
    }
    assert derive(engine).work_item_links == len(reference_links(org, "jira"))


def test_stages_leave_out_a_requirement_started_after_it_shipped() -> None:
    rows = [
        RequirementRow("shop", None, at(48), T0, at(10)),  # waiting 10 h, delivery 38 h
        RequirementRow("shop", None, at(20), T0, at(30)),  # started after it shipped
        RequirementRow("shop", None, at(30), T0, None),  # never marked started
    ]
    lead = requirement_lead_time(ScopeData(Scope(T0, at(100)), requirements=rows))
    assert lead["items"] == 3
    assert lead["median_hours"] == pytest.approx(30.0)
    assert lead["stages"] == {"waiting": pytest.approx(20.0), "delivery": pytest.approx(38.0)}


def test_change_failures_from_jira_incidents_alone_equal_the_truth(
    synced: tuple[Organisation, Engine],
) -> None:
    """With GitLab's copies of the incidents gone, the Jira incidents (some with an explicit link
    to the deployment or pipeline) fail the same changes, recovered at the same times, as the
    reference says, for the services of the Jira teams."""
    org, engine = synced
    with engine.begin() as conn:
        gitlab = conn.execute(select(Source.id).where(Source.name == "gitlab")).scalar_one()
        conn.execute(delete(Incident).where(Incident.source_id == gitlab))
    derive(engine, full=True)
    jira_services = {
        s for t in org.teams if org.trackers.projects[t.name][0] == "jira" for s in t.services
    }
    recoveries = ref.recoveries(org)
    truth = {
        d: ("incident" in f.reasons, recoveries[d].recovered_at)
        for d, f in ref.change_failures(org).items()
        if f.service in jira_services and f.failed
    }
    query = (
        select(Deployment.external_id, ChangeFailure.incident, ChangeFailure.recovered_at)
        .join(ChangeFailure, ChangeFailure.deployment_id == Deployment.id)
        .join(Service, Service.id == Deployment.service_id)
        .where(Service.name.in_(jira_services))
    )
    with engine.connect() as conn:
        got = {int(d): (bool(i), r) for d, i, r in conn.execute(query)}
    assert got == truth
    assert any(incident for incident, _ in truth.values())
    linked = [i for i in org.trackers.of("jira") if i.link is not None]
    assert linked  # the explicit links were exercised


def all_links(engine: Engine) -> set[tuple[Any, ...]]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(
                    WorkItemLink.source_id,
                    WorkItemLink.item,
                    WorkItemLink.kind,
                    WorkItemLink.repo_path,
                    WorkItemLink.target,
                    WorkItemLink.origin,
                )
            ).all()
        )


def test_incremental_reference_links_equal_a_full_derive(
    sandbox: Sandbox, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitLab's data and Jira as of 20 days before the end, derived; then the rest, a work item
    that arrives late (named by an MR that did not change) and an MR title edited to drop its key,
    derived incrementally (only what changed since is read): the links equal those a full derive
    rebuilds."""
    org, jira = sandbox.org, sandbox.jira
    assert jira is not None
    monkeypatch.setenv(TOKEN_ENV, sandbox.token)
    monkeypatch.setenv(USER_ENV, sandbox.jira_user)
    settings = Settings(
        sources={"jira": [sandbox.jira_source(TOKEN_ENV, USER_ENV)]},
        sync={"requests_per_second": 0, "history_days": sandbox.history_days()},
    )
    mid = org.now - timedelta(days=20)
    load_org(engine, org, mid)
    jira.advance(mid)
    try:
        assert JiraCollector(settings.sources.jira[0], SyncOptions(settings, engine)).sync().ok
        derive(engine)
        first = all_links(engine)
        load_org(engine, org)
        with engine.begin() as conn:  # a work item named only by MRs unchanged since: it goes
            derived = conn.execute(
                select(DeriveState.started_at).where(DeriveState.name == "derive")
            ).scalar_one()
            old = (
                select(Repo.path, cast(MergeRequest.iid, String))
                .join(MergeRequest, MergeRequest.repo_id == Repo.id)
                .where(MergeRequest.changed_at < derived)
            )
            unchanged = {tuple(r) for r in conn.execute(old)}
            late = next(
                k for k in sorted(first) if k[2] == "merge_request" and (k[3], k[4]) in unchanged
            )
            conn.execute(delete(WorkItemLink).where(WorkItemLink.item == late[1]))
            conn.execute(delete(WorkItem).where(WorkItem.external_id == late[1]))
        jira.advance(org.now)
        options = SyncOptions(settings, engine, full=True)  # brings the late work item back
        assert JiraCollector(settings.sources.jira[0], options).sync().ok
    finally:
        jira.advance(org.now)
    edited = next(
        k for k in sorted(first) if k[2] == "merge_request" and k[5] == "reference" and k != late
    )
    with engine.begin() as conn:
        repo = conn.execute(select(Repo.id).where(Repo.path == edited[3])).scalar_one()
        conn.execute(
            update(MergeRequest)
            .where(MergeRequest.repo_id == repo, MergeRequest.iid == int(edited[4]))
            .values(title="a title naming nothing", changed_at=datetime.now(UTC))
        )
    summary = derive(engine)
    incremental = all_links(engine)
    assert incremental - first  # new work items and MRs linked incrementally
    assert late in incremental  # the late work item linked to the unchanged MR naming it
    assert edited not in incremental  # the edited title's link dropped
    assert summary.work_item_links == sum(1 for k in incremental if k[5] == "reference")
    derive(engine, full=True)
    assert all_links(engine) == incremental
