"""The Jira collector against the sandbox's Jira simulator over real HTTP (requests), as Jira Cloud
and as Jira Server/Data Center, on SQLite and PostgreSQL: incidents, work items and the tracker's
own links equal the sandbox's truth; a second sync is cheap and writes nothing; 429, a removed
search API, a malformed issue and an interrupted sync."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, func, select

from collectors.frame import SyncOptions
from collectors.jira import JiraCollector
from collectors.jira_normalize import description_text, normalize_issue, status_categories
from collectors.sync import SourceSummary
from config.settings import Settings
from sandbox.serve import Sandbox
from sandbox.server import FaultRule
from sandbox.tracker_truth import incidents, work_items
from tests.sandbox_helpers import HISTORY_END
from warehouse.schema import Incident, RawPayload, Service, WorkItem, WorkItemLink

TOKEN_ENV, USER_ENV = "CDM_TEST_JIRA_TOKEN", "CDM_TEST_JIRA_USER"
# requests of a sync of the small organisation (page size 100): the statuses, then per stream
# one search and (Cloud) one bulk changelog, and each issue's remote links; with nothing
# changed, no changelog and no remote link is fetched
FIRST = {"cloud": 5, "server": 3}
AGAIN = {"cloud": 3, "server": 3}


@pytest.fixture(scope="module", params=["cloud", "server"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    from sandbox.generate import generate

    org = generate(1, "small", HISTORY_END)
    with Sandbox.start(
        org=org, jenkins=False, registry=False, jira_flavour=request.param
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(TOKEN_ENV, sandbox.token)
    monkeypatch.setenv(USER_ENV, sandbox.jira_user)
    yield
    assert sandbox.jira_app is not None and sandbox.jira is not None
    sandbox.jira_app.faults.clear()
    sandbox.jira.corrupted.clear()


def settings(sandbox: Sandbox, **source: Any) -> Settings:
    return Settings(
        sources={"jira": [{**sandbox.jira_source(TOKEN_ENV, USER_ENV), **source}]},
        sync={"requests_per_second": 0, "history_days": sandbox.history_days()},
    )


def sync(sandbox: Sandbox, engine: Engine, retries: int = 6, **source: Any) -> SourceSummary:
    s = settings(sandbox, **source)
    return JiraCollector(s.sources.jira[0], SyncOptions(s, engine, max_retries=retries)).sync()


def stored_incidents(engine: Engine) -> dict[str, tuple[Any, ...]]:
    query = select(
        Incident.key, Service.name, Incident.opened_at, Incident.resolved_at, Incident.status
    ).join(Service, Service.id == Incident.service_id, isouter=True)
    with engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(query)}


def stored_items(engine: Engine) -> dict[str, tuple[Any, ...]]:
    query = select(
        WorkItem.key,
        WorkItem.kind,
        Service.name,
        WorkItem.status_category,
        WorkItem.created_at,
        WorkItem.started_at,
        WorkItem.resolved_at,
    ).join(Service, Service.id == WorkItem.service_id, isouter=True)
    with engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(query)}


def assert_equals_truth(sandbox: Sandbox, engine: Engine) -> None:
    org = sandbox.org
    want_incidents = {
        k: (
            i.service,
            i.opened_at,
            i.resolved_at,
            "resolved" if i.resolved_at else ("acknowledged"),
        )
        for k, i in incidents(org, "jira").items()
    }
    assert stored_incidents(engine) == want_incidents
    want_items = {
        k: (i.kind, i.service, i.category, i.created_at, i.started_at, i.resolved_at)
        for k, i in work_items(org, "jira").items()
    }
    assert stored_items(engine) == want_items
    paths = {s.path for s in org.services}
    want_links = {
        (i.key, path, str(iid))
        for i in org.trackers.of("jira")
        if i.caused_by
        for path, iid in [i.caused_by]
        if path in paths
    } | {(i.key, path, sha) for i in org.trackers.of("jira") for path, sha in i.remote_commits}
    assert any(i.remote_commits for i in org.trackers.of("jira"))
    with engine.connect() as conn:
        links = set(
            conn.execute(
                select(WorkItem.key, WorkItemLink.repo_path, WorkItemLink.target).join(
                    WorkItem,
                    (WorkItem.source_id == WorkItemLink.source_id)
                    & (WorkItem.external_id == WorkItemLink.item),
                )
            ).all()
        )
    assert links == want_links


def test_first_sync_equals_the_truth_and_a_second_is_cheap_and_writes_nothing(
    sandbox: Sandbox, engine: Engine
) -> None:
    assert sandbox.jira is not None
    flavour = sandbox.jira.flavour
    first = sync(sandbox, engine)
    assert first.ok, first.errors
    assert first.rejected == 0
    issues = len([i for i in sandbox.org.trackers.of("jira") if i.created_at <= sandbox.jira.at])
    assert first.requests == FIRST[flavour] + issues
    assert_equals_truth(sandbox, engine)
    unmapped = [k for k, i in incidents(sandbox.org, "jira").items() if i.service is None]
    assert unmapped  # kept without a service
    again = sync(sandbox, engine)
    assert again.ok and again.rows == 0
    assert again.requests == AGAIN[flavour]


def test_small_pages_give_the_same_rows(sandbox: Sandbox, engine: Engine) -> None:
    summary = sync(sandbox, engine, page_size=7)
    assert summary.ok, summary.errors
    assert summary.requests > FIRST["cloud"]
    assert_equals_truth(sandbox, engine)


def test_a_429_is_waited_out(sandbox: Sandbox, engine: Engine) -> None:
    assert sandbox.jira_app is not None
    rule = sandbox.jira_app.faults.add(FaultRule(r"/rest/api/\d/search", "429", times=2, seconds=0))
    summary = sync(sandbox, engine)
    assert summary.ok, summary.errors
    assert rule.fired == 2
    assert_equals_truth(sandbox, engine)


def test_the_removed_cloud_search_answers_410_and_the_error_says_what_to_set(
    sandbox: Sandbox, engine: Engine
) -> None:
    assert sandbox.jira is not None
    if sandbox.jira.flavour != "cloud":
        pytest.skip("Cloud only")
    answer = requests.get(
        f"{sandbox.jira_url}/rest/api/2/search",
        params={"jql": "project = X"},
        auth=(sandbox.jira_user, sandbox.token),
        timeout=10,
    )
    assert answer.status_code == 410
    summary = sync(sandbox, engine, flavour="server", user_env=USER_ENV)
    assert not summary.ok
    assert any("410" in e and 'flavour = "cloud"' in e for e in summary.errors), summary.errors


def test_a_malformed_issue_is_kept_and_counted_and_the_sync_goes_on(
    sandbox: Sandbox, engine: Engine
) -> None:
    assert sandbox.jira is not None
    bad = next(i.key for i in sandbox.org.trackers.of("jira") if i.kind == "task")
    sandbox.jira.corrupt(bad)
    summary = sync(sandbox, engine)
    assert summary.ok and summary.rejected == 1
    with engine.connect() as conn:
        kept = conn.execute(
            select(RawPayload.error).where(RawPayload.rejected.is_(True))
        ).scalar_one()
        items = conn.execute(select(func.count()).select_from(WorkItem)).scalar_one()
    assert "created" in kept
    assert items == len(work_items(sandbox.org, "jira")) - 1


def test_an_interrupted_sync_resumes_to_the_same_rows(sandbox: Sandbox, engine: Engine) -> None:
    assert sandbox.jira_app is not None
    path = r"/rest/api/3/changelog" if sandbox.jira.flavour == "cloud" else r"/rest/api/2/search"  # type: ignore[union-attr]
    sandbox.jira_app.faults.add(FaultRule(path, "503", times=4))
    broken = sync(sandbox, engine, retries=1)
    assert not broken.ok
    sandbox.jira_app.faults.clear()
    resumed = sync(sandbox, engine)
    assert resumed.ok, resumed.errors
    assert_equals_truth(sandbox, engine)


# -- the normaliser on Atlassian's documented payloads ----------------------------------------

STATUSES = [
    {"id": "1", "name": "Open", "statusCategory": {"key": "new"}},
    {"id": "3", "name": "In Progress", "statusCategory": {"key": "indeterminate"}},
    {"id": "5", "name": "Resolved", "statusCategory": {"key": "done"}},
]


def test_a_bulk_changelog_entry_with_epoch_seconds_and_an_adf_description() -> None:
    issue = {
        "id": "10100",
        "key": "EX-1",
        "fields": {
            "summary": "Main order flow broken",
            "issuetype": {"name": "Incident"},
            "project": {"key": "EX"},
            "status": {"name": "Resolved", "statusCategory": {"key": "done"}},
            "components": [{"name": "orders"}],
            "created": "2023-06-24T19:24:50.000+0000",
            "updated": "2023-06-25T10:00:00.000+0000",
            "resolutiondate": "2023-06-25T09:00:00.000+0000",
            "description": {
                "type": "doc",
                "version": 1,
                "content": [
                    {
                        "type": "paragraph",
                        "content": [
                            {"type": "text", "text": "Caused by "},
                            {
                                "type": "text",
                                "text": "this pipeline",
                                "marks": [
                                    {
                                        "type": "link",
                                        "attrs": {"href": "https://g.example/a/b/-/pipelines/77"},
                                    }
                                ],
                            },
                        ],
                    }
                ],
            },
        },
    }
    history = {
        "id": "10001",
        "created": 1687640000,
        "author": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Mia Krystof"},
        "items": [{"field": "status", "fieldId": "status", "from": "1", "to": "3",
                   "fromString": "Open", "toString": "In Progress"}],
    }  # fmt: skip
    row = normalize_issue(
        issue,
        [history],
        incident=True,
        categories=status_categories(STATUSES),
        rules=[],
        requirement_types=["Story"],
        bug_types=["Bug"],
        base_url="https://x.atlassian.net",
    )
    assert row.status == "resolved"  # type: ignore[union-attr]
    assert row.acknowledged_at is not None and row.acknowledged_at.year == 2023  # type: ignore[union-attr]
    assert [(r.kind, r.value) for r in row.links] == [("pipeline", "77")]
    assert row.service is None and row.raw_service == "project=EX"
    assert "this pipeline" in description_text(issue["fields"]["description"])  # type: ignore[index]
