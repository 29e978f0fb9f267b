"""The GitLab registry stream's two paths to tag digests: GraphQL (`containerRepository(id)`'s tags,
20 a page, a page of each of up to 9 repositories a request) and REST (the single-tag endpoint, a
request a tag: the fallback, and the cheaper path for a repository with few wanted tags). Both give
the same rows, on SQLite and on PostgreSQL; a sync with nothing new reads no tag; a malformed tag
node is kept and counted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from collectors import gitlab_graphql as gql
from collectors.frame import SyncOptions
from collectors.gitlab import GitLabCollector
from collectors.gitlab_streams import ProjectContext, RegistryTags
from collectors.sync import SourceSummary
from sandbox import truth
from sandbox.generate import generate
from sandbox.gitlab_graphql import MAX_COMPLEXITY
from sandbox.gitlab_payloads import current_tags
from sandbox.image_repos import repositories
from sandbox.model import Organisation
from sandbox.serve import Sandbox
from tests.sandbox_helpers import (
    HISTORY_END,
    TOKEN_ENV,
    sandbox_settings,
    snapshot,
    table_counts,
)
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import RawPayload

SINGLE_TAG = "/api/v4/projects/{id}/registry/repositories/{rid}/tags/{tag}"
GRAPHQL = "/api/graphql"
IMAGES = ("image", "image_tag")


@pytest.fixture(scope="module")
def small_org() -> Organisation:
    return generate(7, "small")


@pytest.fixture(scope="module")
def sandbox(small_org: Organisation) -> Iterator[Sandbox]:
    with (
        pytest.MonkeyPatch.context() as mp,
        Sandbox.start(org=small_org, token="glpat-sandbox-secret") as running,
    ):
        mp.setenv(TOKEN_ENV, "glpat-sandbox-secret")
        yield running


def sync(sandbox: Sandbox, engine: Engine, graphql: bool = True) -> SourceSummary:
    settings = sandbox_settings(sandbox)
    source = settings.sources.gitlab[0].model_copy(update={"graphql": graphql})
    return GitLabCollector(source, SyncOptions(settings, engine)).sync()


def tag_count(org: Organisation) -> int:
    return sum(len(current_tags(r, org.now)) for s in org.services for r in repositories(s))


def registry_raws(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        query = select(RawPayload).where(RawPayload.stream == "registry")
        return list(conn.execute(query).all())


def test_graphql_and_rest_give_the_same_images_and_tags(
    sandbox: Sandbox, engine: Engine, twin_engine: Engine
) -> None:
    """A sync over GraphQL and one with `graphql = false` (REST single-tag reads) of the small
    organisation: identical image and image_tag rows, the ground truth's; GraphQL reads every
    digest in a page of 20 per repository a request, REST one request a tag."""
    org = sandbox.org
    tags = tag_count(org)
    assert max(len(current_tags(r, org.now)) for s in org.services for r in repositories(s)) > 40
    sandbox.gitlab_app.stats.reset()
    over_graphql = sync(sandbox, engine)
    assert over_graphql.ok, over_graphql.errors
    routes = dict(sandbox.gitlab_app.stats.by_route)
    assert SINGLE_TAG not in routes
    # the listing of each project's repositories, then its tag pages (a project's repositories
    # share requests): far fewer than a request a tag
    pages = sum(
        max(-(-len(current_tags(r, org.now)) // gql.TAGS_PAGE) for r in repositories(s))
        for s in org.services
    )
    assert over_graphql.streams["registry"].requests == len(org.services) + pages < tags

    sandbox.gitlab_app.stats.reset()
    over_rest = sync(sandbox, twin_engine, graphql=False)
    assert over_rest.ok, over_rest.errors
    routes = dict(sandbox.gitlab_app.stats.by_route)
    assert routes[SINGLE_TAG] == tags and GRAPHQL not in routes
    assert over_rest.streams["registry"].requests == len(org.services) + tags

    assert snapshot(engine, IMAGES) == snapshot(twin_engine, IMAGES)
    expected = truth.counts(org)
    assert {t: table_counts(engine)[t] for t in IMAGES} == {t: expected[t] for t in IMAGES}
    # raw payloads: the listed repository and tag, with the GraphQL node or the REST tag verbatim
    graphql_raws, rest_raws = registry_raws(engine), registry_raws(twin_engine)
    assert {r.external_id for r in graphql_raws} == {r.external_id for r in rest_raws}
    assert len(graphql_raws) == tags
    for raw in graphql_raws:
        assert set(raw.payload) == {"item", "graphql"} and not raw.rejected
        assert set(raw.payload["graphql"]) == set(gql.TAG_FIELDS.split())
    assert all(set(r.payload) == {"item", "tag"} for r in rest_raws)


def test_a_second_sync_with_nothing_new_reads_no_tag(sandbox: Sandbox, engine: Engine) -> None:
    first = sync(sandbox, engine)
    assert first.ok, first.errors
    before = snapshot(engine, IMAGES)
    sandbox.gitlab_app.stats.reset()
    second = sync(sandbox, engine)
    assert second.ok, second.errors
    # the repository listing of each project (with its tag names) and nothing else
    assert second.streams["registry"].requests == len(sandbox.org.services)
    assert SINGLE_TAG not in sandbox.gitlab_app.stats.by_route
    assert second.streams["registry"].rows == 0
    assert snapshot(engine, IMAGES) == before


def test_a_malformed_tag_node_is_rejected_kept_and_counted(
    sandbox: Sandbox, engine: Engine
) -> None:
    """A tag whose digest is not a digest: its node is kept as a rejected raw payload naming it,
    counted, and every other tag is synced."""
    org = sandbox.org
    service = next(s for s in org.services if current_tags(repositories(s)[0], org.now))
    repository = repositories(service)[0]
    name = sorted(current_tags(repository, org.now))[-1]  # on the repository's last page
    sandbox.gitlab.corrupt("registry_tag", f"{repository.id}:{name}", "digest", "not-a-digest")
    try:
        summary = sync(sandbox, engine)
    finally:
        sandbox.gitlab.corruptions.clear()
    assert summary.ok, summary.errors
    assert summary.rejected == 1
    assert table_counts(engine)["image_tag"] == truth.counts(org)["image_tag"] - 1
    [raw] = [r for r in registry_raws(engine) if r.rejected]
    assert raw.external_id == f"{service.project_id}/{repository.id}:{name}"
    assert raw.payload["graphql"]["name"] == name
    assert raw.payload["graphql"]["digest"] == "not-a-digest"
    assert raw.payload["item"]["tag"]["name"] == name
    assert "digest" in str(raw.error)


def test_a_request_too_complex_is_split_by_repositories_then_pages(
    sandbox: Sandbox, tmp_path: Any
) -> None:
    """GitLab refuses a request over its complexity limit: the tags are asked again for half the
    repositories, then half a page, and the answer is the same."""
    settings = sandbox_settings(sandbox)
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade(engine)
    collector = GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine))
    client = collector.graphql()
    everything = {
        r.id: set(current_tags(r, sandbox.org.now))
        for s in sandbox.org.services
        for r in repositories(s)
    }
    wanted = {rid: names for rid, names in everything.items() if names}
    assert len(wanted) > 2
    stats = sandbox.gitlab_app.stats
    stats.reset()
    whole = gql.registry_tags(client, wanted)
    asked = stats.by_route[GRAPHQL]
    assert len(whole) == sum(len(n) for n in wanted.values())
    # all repositories' first pages in one request, then those with more pages
    most = max(-(-len(n) // gql.TAGS_PAGE) for n in wanted.values())
    assert asked == most < len(wanted)
    sandbox.gitlab.graphql.max_complexity = 12  # one repository's page of 20 tags costs 13
    stats.reset()
    try:
        split = gql.registry_tags(client, wanted)
    finally:
        sandbox.gitlab.graphql.max_complexity = MAX_COMPLEXITY
        collector.close()
    assert split == whole
    # refused at 9, 4, 2 and 1 repositories of 20 tags, then a repository's 10 a request
    pages = sum(-(-len(n) // 10) for n in wanted.values())
    assert stats.by_route[GRAPHQL] == 4 + pages


def item(repository: int, names: list[str], name: str) -> dict[str, Any]:
    listed = [{"name": n} for n in names]
    return {"repository": {"id": repository, "tags": listed}, "tag": {"name": name}}


def test_rest_reads_a_repository_whose_wanted_tags_are_fewer_than_its_graphql_pages() -> None:
    """GraphQL pages a repository's tags by name until its wanted ones are all seen: a repository
    with fewer wanted tags than those pages is read by REST, a request a tag."""
    ctx = ProjectContext(1, {"id": 1}, 1, 1)
    names = [f"{i:03d}" for i in range(60)]  # three pages of 20
    stream = RegistryTags()
    first_page = [item(7, names, "005")]  # one tag, on the first page: one page either way
    assert stream.batched(first_page, ctx) == first_page
    last_page = [item(7, names, "055")]  # one tag, on the third page: REST's single read
    assert stream.batched(last_page, ctx) == []
    three = [item(7, names, n) for n in ("001", "030", "059")]  # three tags, three pages
    assert stream.batched(three, ctx) == three
    both = last_page + [item(8, names, n) for n in names]  # per repository
    assert stream.batched(both, ctx) == both[1:]


def test_an_incremental_sync_reads_a_few_new_tags_by_rest(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synced two days before, then now: a repository with fewer new tags (and its mutable ones,
    which new tags move) than the GraphQL pages that reach them is read by REST, a request a tag;
    the others through GraphQL; the rows are those of a warehouse synced through REST alone. (Pages
    of 5 tags, so that the small organisation's repositories take many.)"""
    monkeypatch.setenv(TOKEN_ENV, "glpat-sandbox-secret")
    monkeypatch.setattr(gql, "TAGS_PAGE", 5)
    org = generate(7, "small", HISTORY_END)
    earlier = org.now - timedelta(days=2)
    ctx = ProjectContext(1, {"id": 1}, 1, 1)
    over_rest, graphql_requests = 0, 0
    for service in org.services:
        pages = [0]
        for r in repositories(service):
            before, now = set(current_tags(r, earlier)), sorted(current_tags(r, org.now))
            if not set(now) - before:
                continue
            wanted = (set(now) - before) | {n for n in before if RegistryTags.is_mutable(n, ctx)}
            last = max(i for i, n in enumerate(now) if n in wanted)
            needed = -(-(last + 1) // gql.TAGS_PAGE)
            if len(wanted) < needed:
                over_rest += len(wanted)
            else:
                pages.append(needed)
        graphql_requests += max(pages)  # a project's repositories share requests
    assert over_rest > 0 and graphql_requests > 0, "the organisation lacks one of the two cases"
    engines = []
    for name in ("incremental.db", "rest.db"):
        engines.append(make_engine(f"sqlite:///{tmp_path / name}"))
        upgrade(engines[-1])
    incremental, reference = engines
    with Sandbox.start(org=org, token="glpat-sandbox-secret") as sandbox:
        sandbox.gitlab.advance(earlier)
        assert sync(sandbox, incremental).ok
        assert sync(sandbox, reference, graphql=False).ok
        sandbox.gitlab.advance(org.now)
        sandbox.gitlab_app.stats.reset()
        summary = sync(sandbox, incremental)
        assert summary.ok, summary.errors
        assert sandbox.gitlab_app.stats.by_route[SINGLE_TAG] == over_rest
        listings = len(org.services)
        assert summary.streams["registry"].requests == listings + over_rest + graphql_requests
        assert sync(sandbox, reference, graphql=False).ok
    assert snapshot(incremental, IMAGES) == snapshot(reference, IMAGES)
