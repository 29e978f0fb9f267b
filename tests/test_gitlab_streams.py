"""The GitLab streams' declarations (collectors/gitlab_streams.py) against the sandbox: each stream,
listed by the base from what it declares, sends the requests and yields the items the hand-written
listing it replaced did (that listing is spelt out here, call by call), and reads the same stored
versions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import Connection, Engine, select

from collectors import gitlab_streams as streams
from collectors.frame import SyncOptions
from collectors.gitlab import STREAMS, GitLabCollector
from sandbox.generate import generate
from sandbox.serve import Sandbox
from tests.sandbox_helpers import HISTORY_END, TOKEN_ENV, sandbox_settings
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import MergeRequest, Pipeline

Payload = dict[str, Any]
PER_PAGE = 5  # small pages: the listings page


def _listing(manager: Any, per_page: int, **filters: Any) -> Iterator[Payload]:
    for obj in manager.list(iterator=True, per_page=per_page, **filters):
        yield streams.attrs(obj)


def _since(cursor: str | None) -> dict[str, str]:
    return {"updated_after": cursor} if cursor else {}


def _commits(project: Any, cursor: str | None, per_page: int) -> Iterator[Payload]:
    query: dict[str, Any] = {"all": True, "with_stats": True}
    if cursor:
        query["since"] = cursor
    return _listing(project.commits, per_page, query_parameters=query)


def _registry(project: Any, cursor: str | None, per_page: int) -> Iterator[Payload]:
    for obj in project.repositories.list(iterator=True, per_page=per_page, tags=True):
        repo = streams.attrs(obj)
        for tag in repo.get("tags") or []:
            yield {"repository": repo, "tag": tag, "_manager": obj.tags}


Listing = Callable[[Any, str | None, int], Iterator[Payload]]
# the listings as the streams wrote them before they declared (stream name -> listing)
OLD: dict[str, Listing] = {
    "commits": _commits,
    "branches": lambda project, cursor, per_page: _listing(project.branches, per_page),
    "merge_requests": lambda project, cursor, per_page: _listing(
        project.mergerequests,
        per_page,
        state="all",
        order_by="updated_at",
        sort="asc",
        **_since(cursor),
    ),
    "pipelines": lambda project, cursor, per_page: _listing(
        project.pipelines, per_page, order_by="updated_at", sort="asc", **_since(cursor)
    ),
    "deployments": lambda project, cursor, per_page: _listing(
        project.deployments, per_page, order_by="updated_at", sort="asc", **_since(cursor)
    ),
    "incidents": lambda project, cursor, per_page: _listing(
        project.issues,
        per_page,
        issue_type="incident",
        order_by="updated_at",
        sort="asc",
        scope="all",
        **_since(cursor),
    ),
    "registry": _registry,
}
# the stored versions as they were read before (stream name -> select)
OLD_VERSIONS: dict[str, Callable[[Connection, streams.ProjectContext], dict[str, str]]] = {
    "merge_requests": lambda conn, ctx: {
        ext: ts.isoformat()
        for ext, ts in conn.execute(
            select(MergeRequest.external_id, MergeRequest.updated_at).where(
                MergeRequest.repo_id == ctx.repo_id
            )
        )
        if ext and ts
    },
    "pipelines": lambda conn, ctx: {
        ext: ts.isoformat()
        for ext, ts in conn.execute(
            select(Pipeline.external_id, Pipeline.updated_at).where(
                Pipeline.source_id == ctx.source_id, Pipeline.repo_id == ctx.repo_id
            )
        )
        if ts
    },
}
OLD_KEYS = {"commits": "id", "branches": "name"}  # the field an item was named by (else its id)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with (
        pytest.MonkeyPatch.context() as mp,
        Sandbox.start(
            org=generate(3, "tiny", HISTORY_END), token="glpat-sandbox-secret", keep_log=True
        ) as running,
    ):
        mp.setenv(TOKEN_ENV, "glpat-sandbox-secret")
        yield running


@pytest.fixture(scope="module")
def synced(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A warehouse synced once from the sandbox (its projects, repos and stored versions)."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('streams') / 'w.db'}")
    upgrade(engine)
    settings = sandbox_settings(sandbox)
    assert GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine)).sync().ok
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def collector(sandbox: Sandbox, synced: Engine) -> GitLabCollector:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_ENV, "glpat-sandbox-secret")
        settings = sandbox_settings(sandbox)
        made = GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, synced))
        made.client()  # the token is read as the client is made
    return made


def _requests(
    sandbox: Sandbox, listing: Listing, project: Any, cursor: str | None
) -> tuple[list[Payload], Counter[tuple[str, str, frozenset[tuple[str, str]]]]]:
    """What `listing` yields, and the requests it sent (path and query, in any order of
    parameters)."""
    log = sandbox.gitlab_app.stats.log
    assert log is not None
    before = len(log)
    items = list(listing(project, cursor, PER_PAGE))
    sent = Counter(
        (method, urlsplit(target).path, frozenset(parse_qsl(urlsplit(target).query)))
        for _, method, target, _ in log[before:]
    )
    return items, sent


def _comparable(items: list[Payload]) -> list[Payload]:
    return [{k: v for k, v in item.items() if k != "_manager"} for item in items]


def test_every_stream_of_the_collector_declares_what_it_lists() -> None:
    assert {s.name for s in STREAMS} == set(OLD)
    for stream in STREAMS:
        assert hasattr(stream.__class__, "manager"), stream.name
        assert "items" not in vars(stream.__class__), f"{stream.name} lists by hand"


@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: s.name)
@pytest.mark.parametrize("back", [None, 30], ids=["whole", "since-30-days"])
def test_a_declared_stream_lists_what_the_old_listing_did(
    sandbox: Sandbox, collector: GitLabCollector, stream: streams.GitLabStream, back: int | None
) -> None:
    cursor = None if back is None else (HISTORY_END - timedelta(days=back)).isoformat()
    checked, old_listing = 0, OLD[stream.name]
    for project_id in sorted(s.project_id for s in sandbox.org.services):
        project = collector.client().projects.get(project_id, lazy=True)
        new, new_sent = _requests(sandbox, stream.items, project, cursor)
        old, old_sent = _requests(sandbox, old_listing, project, cursor)
        assert _comparable(new) == _comparable(old)
        assert new_sent == old_sent and sum(new_sent.values()) >= 1
        key = OLD_KEYS.get(stream.name)
        for item in new:
            if stream.name != "registry":
                assert stream.item_id(item) == (
                    str(item.get(key) or streams.norm.external_id_of(item))
                    if key
                    else streams.norm.external_id_of(item)
                )
        checked += len(new)
    if back is None:
        assert checked > 0, stream.name


@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: s.name)
def test_a_declared_stream_reads_the_stored_versions_the_old_select_did(
    collector: GitLabCollector, synced: Engine, stream: streams.GitLabStream
) -> None:
    with synced.connect() as conn:
        rows = conn.execute(select(MergeRequest.repo_id).distinct()).scalars().all()
        source_id = conn.execute(select(Pipeline.source_id).limit(1)).scalar_one()
        assert rows
        found = 0
        for repo_id in rows:
            ctx = streams.ProjectContext(source_id, {"id": 0}, repo_id, 0)
            known = stream.known_versions(conn, ctx)
            if stream.name in OLD_VERSIONS:
                assert known == OLD_VERSIONS[stream.name](conn, ctx)
                found += len(known)
            elif stream.name != "registry":  # the registry reads its raw payloads, as before
                assert known == {}
        assert found or stream.name not in OLD_VERSIONS
