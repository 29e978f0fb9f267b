"""The trackers' foundation: references in text, service mapping, work item times, the one writer
into a real warehouse (SQLite and PostgreSQL), and the sandbox's trackers against its own truth."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from analytics.views.sources import unmapped_tracker_rows
from collectors.refs import Refs
from collectors.sync import Batch
from collectors.trackers import (
    TrackerIncident,
    TrackerWorkItem,
    TrackerWriter,
    Transition,
    item_times,
    map_service,
)
from config.settings import ConfigError, JiraServiceRule, ZentaoServiceRule, load_settings
from sandbox import reference as ref
from sandbox.generate import generate
from sandbox.reference import CommitGraph, attribute_incidents, service_production, tracked
from sandbox.tracker_truth import (
    incident_failures,
    incident_records,
    incidents,
    reference_links,
    work_items,
)
from warehouse.dimensions import ensure_source
from warehouse.references import ChangeRef, change_refs, is_sha, work_item_keys
from warehouse.schema import Incident, Service, WorkItem, WorkItemLink, WorkItemTransition
from warehouse.upsert import upsert

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


# -- references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "branch", "keys"),
    [
        ("PAY-12 add refunds", False, ["PAY-12"]),
        ("Fix PAY-12 and CHE-3, again PAY-12", False, ["PAY-12", "CHE-3"]),
        ("feature/pay-12-refunds", True, ["PAY-12"]),
        ("feature/pay-12-refunds", False, []),  # a lower-case key counts only in a branch name
        ("utf-8 and x86-64 are not keys", False, []),
        ("退款 (story #12), fixes bug#45 and task # 7", False, ["story-12", "bug-45", "task-7"]),
        ("需求 #3 缺陷#4", False, ["story-3", "bug-4"]),
        ("Bug 45 without a hash", False, []),
        (None, False, []),
    ],
)
def test_work_item_keys(text: str | None, branch: bool, keys: list[str]) -> None:
    assert work_item_keys(text, branch=branch) == keys


@pytest.mark.parametrize(
    ("text", "ident"),
    [
        ("Caused by deployment 124.", "124"),
        ("deployment #deploy-pay-api:57, then", "deploy-pay-api:57"),
        ("deployment v1.2.3-eu", "v1.2.3-eu"),
    ],
)
def test_a_deployment_id_ends_before_a_full_stop(text: str, ident: str) -> None:
    assert change_refs(text) == [ChangeRef("deployment", ident)]


def test_change_refs_read_gitlab_urls_short_forms_and_words() -> None:
    text = (
        "Caused by https://gitlab.example/acme/pay/api/-/merge_requests/42 "
        "(deployed by https://gitlab.example/api/v4/projects/7/deployments/917, "
        "pipeline #555), see acme/pay/api!43 and !44, commit 3f2a9c1d, release v1.4.2"
    )
    assert change_refs(text) == [
        ChangeRef("merge_request", "42", "acme/pay/api"),
        ChangeRef("deployment", "917"),
        ChangeRef("pipeline", "555"),
        ChangeRef("merge_request", "43", "acme/pay/api"),
        ChangeRef("merge_request", "44"),
        ChangeRef("commit", "3f2a9c1d"),
        ChangeRef("tag", "v1.4.2"),
    ]


@pytest.mark.parametrize(
    ("word", "sha"),
    [("3f2a9c1", True), ("deadbeef", False), ("1234567", False), ("3f2a9c", False)],
)
def test_a_sha_needs_seven_hex_characters_with_a_letter_and_a_digit(word: str, sha: bool) -> None:
    assert is_sha(word) is sha


# -- service mapping and times --------------------------------------------------------------


def test_the_first_matching_rule_names_the_service_and_an_unmapped_row_keeps_its_raw_value() -> (
    None
):
    rules = [
        JiraServiceRule(service="pay-api", project="PAY", component="api"),
        JiraServiceRule(service="pay-web", field="customfield_1", value="web"),
        JiraServiceRule(service="pay-misc", project="PAY"),
    ]
    assert map_service(rules, {"project": {"PAY"}, "component": {"api", "db"}}) == (
        "pay-api",
        "project=PAY,component=api",
    )
    assert map_service(rules, {"project": {"CHE"}, "field:customfield_1": {"web"}}) == (
        "pay-web",
        "field:customfield_1=web",
    )
    assert map_service(rules, {"project": {"PAY"}, "component": set()})[0] == "pay-misc"
    assert map_service(rules, {"project": {"CHE"}}) == (None, "project=CHE")
    zentao = [ZentaoServiceRule(service="pay-api", product="1", module="7")]
    assert map_service(zentao, {"product": {"1", "支付"}, "module": {"8"}}) == (
        None,
        "product=1,支付",
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"service": "pay-api"}, "a rule needs one of project, component, label, field"),
        ({"service": "pay-api", "field": "customfield_1"}, "`field` and `value` go together"),
        ({"service": "pay-api", "project": "PAY", "module": "7"}, "module"),
    ],
)
def test_a_service_rule_that_cannot_match_fails_naming_the_key(
    tmp_path: Path, rule: dict[str, str], message: str
) -> None:
    lines = "\n".join(f'{k} = "{v}"' for k, v in rule.items())
    config = tmp_path / "cdmetrics.toml"
    config.write_text(
        '[[sources.jira]]\nname = "jira"\nurl = "https://x.atlassian.net"\n'
        f"[[sources.jira.services]]\n{lines}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as failed:
        load_settings(config)
    assert "sources.jira[0].services[0]" in str(failed.value)
    assert message in str(failed.value)


def _t(n: int, hours: float, to: str, category: str) -> Transition:
    return Transition(str(n), T0 + timedelta(hours=hours), None, to, None, category)


def test_a_reopened_bug_is_open_again() -> None:
    history = [
        _t(1, 1, "In Progress", "in_progress"),
        _t(2, 5, "Done", "done"),
        _t(3, 30, "Reopened", "todo"),
        _t(4, 31, "In Progress", "in_progress"),
    ]
    assert item_times(T0, "in_progress", history) == (T0 + timedelta(hours=1), None)
    assert item_times(T0, "done", [*history, _t(5, 40, "Done", "done")]) == (
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=40),
    )


def test_an_item_created_done_is_resolved_when_created() -> None:
    assert item_times(T0, "done", []) == (T0, T0)
    assert item_times(T0, "todo", []) == (None, None)


# -- the writer -------------------------------------------------------------------------------


def _rows(engine: Engine) -> tuple[TrackerWriter, Batch]:
    with engine.begin() as conn:
        source_id = ensure_source(conn, "jira", "jira")
    writer = TrackerWriter(engine, source_id, Refs())
    incident = TrackerIncident(
        "10001",
        "PAY-1",
        "checkout down",
        "resolved",
        "Resolved",
        T0,
        resolved_at=T0 + timedelta(hours=2),
        acknowledged_at=T0 + timedelta(minutes=5),
        service="pay-api",
        raw_service="project=PAY,component=api",
        transitions=(_t(1, 2, "Resolved", "done"),),
        links=(ChangeRef("pipeline", "555"), ChangeRef("merge_request", "42", "acme/pay")),
    )
    unmapped = TrackerIncident("10002", "PAY-2", "alert storm", "open", "Open", T0, service=None)
    story = TrackerWorkItem(
        "10003",
        "PAY-3",
        "requirement",
        "Story",
        "refunds",
        "Done",
        "done",
        T0,
        service="pay-api",
        transitions=(_t(2, 1, "In Progress", "in_progress"), _t(3, 9, "Done", "done")),
        links=(ChangeRef("merge_request", "42", "acme/pay"), ChangeRef("tag", "v1")),
    )
    batch = writer.batch([incident, unmapped], [story])
    return writer, batch


def _write(engine: Engine, batch: Batch) -> int:
    with engine.begin() as conn:
        return sum(upsert(conn, table, rows) for table, rows in batch.rows.items() if rows)


def test_the_writer_keeps_unmapped_rows_and_a_second_write_changes_nothing(
    engine: Engine,
) -> None:
    writer, batch = _rows(engine)
    assert writer.unmapped == 1
    assert _write(engine, batch) == 7  # 2 incidents, 1 item, 3 transitions, 1 link (no tag)
    with engine.connect() as conn:
        got = {
            r.key: r
            for r in conn.execute(
                select(
                    Incident.key,
                    Service.name,
                    Incident.linked_pipeline,
                    Incident.linked_merge_request,
                    Incident.raw_service,
                ).join(Service, Service.id == Incident.service_id, isouter=True)
            )
        }
        item = conn.execute(
            select(WorkItem.started_at, WorkItem.resolved_at, WorkItem.team_id, WorkItem.service_id)
        ).one()
        counts = [
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (WorkItemTransition, WorkItemLink)
        ]
    assert tuple(got["PAY-1"]) == (
        "PAY-1",
        "pay-api",
        "555",
        "acme/pay!42",
        "project=PAY,component=api",
    )
    assert tuple(got["PAY-2"])[1:] == (None, None, None, None)
    assert (item.started_at, item.resolved_at) == (T0 + timedelta(hours=1), T0 + timedelta(hours=9))
    assert item.team_id is None and item.service_id is not None
    assert counts == [3, 1]
    assert _write(engine, _rows(engine)[1]) == 0
    with engine.connect() as conn:  # the Data sources page's count
        assert unmapped_tracker_rows(conn) == [
            {"source": "jira", "kind": "jira", "incidents": 1, "work_items": 0, "example": None}
        ]


# -- the sandbox's trackers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def org():  # type: ignore[no-untyped-def]
    return generate(seed=1, size="small")


def test_teams_alternate_jira_and_zentao_and_every_incident_is_filed(org) -> None:  # type: ignore[no-untyped-def]
    trackers = [org.trackers.projects[t.name][0] for t in org.teams]
    assert trackers == [("jira", "zentao")[i % 2] for i in range(len(trackers))]
    filed = {i.incident.id for i in org.trackers.items if i.incident is not None}
    assert filed == {i.id for s in org.services for i in s.incidents}
    paged = [i for i in org.trackers.items if i.incident is not None and i.paged]
    assert 0 < len(paged) < len(filed)


def test_explicit_links_name_the_deployment_the_window_attributes(org) -> None:  # type: ignore[no-untyped-def]
    linked = [i for i in org.trackers.items if i.link is not None]
    assert linked
    for service in org.services:
        production = service_production(service, CommitGraph(service))
        window = attribute_incidents(production, tracked(service))
        for item in linked:
            if item.service == service.name:
                assert item.incident is not None
                assert window[item.incident.id] == item.linked_deployment


def test_truth_has_unmapped_rows_a_reopened_bug_and_referenced_merge_requests(org) -> None:  # type: ignore[no-untyped-def]
    jira = incidents(org, "jira")
    assert [k for k, i in jira.items() if i.service is None]
    items = {**work_items(org, "jira"), **work_items(org, "zentao")}
    reopened = [
        i
        for i in org.trackers.items
        if i.kind == "bug" and any(t.from_category == "done" for t in i.transitions)
    ]
    assert reopened and all(items[i.key].resolved_at is None for i in reopened)
    links = reference_links(org, "jira") | reference_links(org, "zentao")
    titles = {(s.path, mr.iid): mr.title for s in org.services for mr in s.merge_requests}
    for key, path, iid in links:
        assert (
            key in work_item_keys(titles[(path, iid)])
            or key.replace("story-", "story #") in titles[(path, iid)]
        )


def test_incidents_moved_to_another_service_count_where_they_are_filed(org) -> None:  # type: ignore[no-untyped-def]
    """Incidents filed under a teammate service and moved to their own while open: before the
    move they count for the first (its window blames them, or their link names no deployment of
    it), from it on for the second; at `now` the trackers' incident failures are the
    reference's."""
    moved = [i for i in org.trackers.items if i.moved_from is not None]
    assert moved and any(i.paged for i in moved)
    for item in moved:
        assert item.kind == "incident" and item.tracker == "jira" and item.moved_at is not None
        assert item.created_at < item.moved_at < item.incident.closed_at < org.now
        assert item.service_at(item.moved_at - timedelta(seconds=1)) == item.moved_from
        assert item.service_at(item.moved_at) == item.service != item.moved_from
        before = incident_records(org, item.moved_at - timedelta(seconds=1))
        after = incident_records(org, item.moved_at)
        assert before[item.moved_from] - after[item.moved_from] == 1 + item.paged
    truth: dict[str, set[int]] = {}
    for d, f in ref.change_failures(org).items():
        if "incident" in f.reasons:
            truth.setdefault(f.service, set()).add(d)
    assert incident_failures(org) == truth
    assert incident_records(org) == Counter(
        t.service
        for k in ("jira", "zentao", "pagerduty")
        for t in incidents(org, k).values()
        if t.service is not None
    )
