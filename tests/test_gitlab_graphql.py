"""GitLab's GraphQL API: the collector's queries and the sandbox's answers against GitLab's own
schema (an excerpt of a GitLab introspection dump, tests/fixtures/gitlab_graphql/), and the
collector over GraphQL: pages split when GitLab finds them too complex, malformed nodes kept and
counted. The ground truth over GraphQL and over the REST fallback: tests/test_gitlab_sync.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    FieldNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    parse,
    validate,
)
from sqlalchemy import select

from collectors import gitlab_graphql as gql
from collectors.frame import SyncOptions
from collectors.gitlab import GitLabCollector
from sandbox import truth
from sandbox.generate import generate
from sandbox.gitlab_payloads import current_tags, ts
from sandbox.image_repos import repositories
from sandbox.serve import Sandbox
from tests.sandbox_helpers import HISTORY_END, TOKEN_ENV, sandbox_settings, table_counts
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import RawPayload

SCHEMA = Path(__file__).parent / "fixtures" / "gitlab_graphql" / "schema.graphql"
GID = re.compile(r"gid://gitlab/[A-Za-z:]+/\d+")


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema(SCHEMA.read_text())


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with (
        pytest.MonkeyPatch.context() as mp,
        Sandbox.start(org=generate(3, "tiny", HISTORY_END), token="glpat-sandbox-secret") as sb,
    ):
        mp.setenv(TOKEN_ENV, "glpat-sandbox-secret")
        yield sb


def collector(sandbox: Sandbox, engine: Any) -> GitLabCollector:
    settings = sandbox_settings(sandbox)
    return GitLabCollector(settings.sources.gitlab[0], SyncOptions(settings, engine))


def conforms(schema: GraphQLSchema, query: str, data: Any) -> list[str]:
    """Where `data` (an answer to `query`) departs from the schema: a missing or extra field, a
    null where the schema says non-null, a value not of its scalar or enum type."""
    problems: list[str] = []

    def scalar(kind: GraphQLScalarType, value: Any, where: str) -> None:
        ok = {
            "Int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "Float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "String": lambda v: isinstance(v, str),
            "ID": lambda v: isinstance(v, str),
            "Boolean": lambda v: isinstance(v, bool),
            "Time": lambda v: isinstance(v, str) and bool(datetime.fromisoformat(v)),
            "Duration": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "JobID": lambda v: isinstance(v, str) and bool(GID.fullmatch(v)),
            "BigInt": lambda v: isinstance(v, str) and v.lstrip("-").isdigit(),  # as GitLab
        }[kind.name]
        if not ok(value):
            problems.append(f"{where}: {value!r} is not a {kind.name}")

    def check(kind: Any, value: Any, node: FieldNode, where: str) -> None:
        if isinstance(kind, GraphQLNonNull):
            if value is None:
                problems.append(f"{where}: null for {kind}")
                return
            kind = kind.of_type
        if value is None:
            return
        if isinstance(kind, GraphQLList):
            for i, item in enumerate(value):
                check(kind.of_type, item, node, f"{where}[{i}]")
        elif isinstance(kind, GraphQLEnumType):
            if value not in kind.values:
                problems.append(f"{where}: {value!r} is not a {kind.name}")
        elif isinstance(kind, GraphQLScalarType):
            scalar(kind, value, where)
        else:
            obj(kind, value, node, where)

    def obj(kind: GraphQLObjectType, value: Any, node: Any, where: str) -> None:
        fields = [s for s in node.selection_set.selections if isinstance(s, FieldNode)]
        wanted = {(f.alias or f.name).value: f for f in fields}
        if set(value) != set(wanted):
            problems.append(f"{where}: fields {sorted(value)} for {sorted(wanted)}")
        for key, field in wanted.items():
            check(kind.fields[field.name.value].type, value.get(key), field, f"{where}.{key}")

    [operation] = [d for d in parse(query).definitions if isinstance(d, OperationDefinitionNode)]
    assert schema.query_type is not None
    obj(schema.query_type, data, operation, "data")
    return problems


def test_the_collectors_queries_and_the_simulators_answers_follow_gitlabs_schema(
    schema: GraphQLSchema, sandbox: Sandbox, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    made = collector(sandbox, engine)
    client = made.graphql()
    service = max(sandbox.org.services, key=lambda s: len(s.pipelines))
    pipeline = max(service.pipelines, key=lambda p: len(p.test_suites))
    repository = repositories(service)[0]
    answered = 0
    for name, query in gql.QUERIES.items():
        assert validate(schema, parse(query)) == [], name
        merge_request = max(service.merge_requests, key=lambda m: len(m.notes))
        iid = merge_request.iid if name.startswith("mergeRequest") else pipeline.iid
        variables = {"path": service.path, "iid": str(iid), "first": 3, "after": None}
        if name == "registryTags":
            variables = {"first": 3, "r0": gql.repository_gid(repository.id), "a0": None}
        data = gql.execute(client, query, variables)
        assert conforms(schema, query, data) == [], name
        answered += 1
    assert answered == len(gql.QUERIES)
    # the registry query for as many repositories as a request asks (aliases), a gone one null
    batch = gql.registry_tags_query(gql.MAX_REPOSITORIES)
    assert validate(schema, parse(batch)) == []
    variables = {"first": gql.TAGS_PAGE}
    for i in range(gql.MAX_REPOSITORIES):
        variables[f"r{i}"] = gql.repository_gid(repository.id if i else 999_999_999)
    data = gql.execute(client, batch, variables)
    assert conforms(schema, batch, data) == []
    assert data["r0"] is None and len(data["r1"]["tags"]["nodes"]) == min(
        gql.TAGS_PAGE, len(current_tags(repository, sandbox.org.now))
    )
    # the tags GraphQL tells are those REST tells, digests included, 20 a page at most
    wanted = {repository.id: set(current_tags(repository, sandbox.org.now))}
    nodes = gql.registry_tags(client, wanted)
    assert {name for _, name in nodes} == wanted[repository.id]
    for (_, name), node in nodes.items():
        digest, pushed = current_tags(repository, sandbox.org.now)[name]
        assert gql.registry_tag_payload(node) == {
            "name": name,
            "digest": digest,
            "location": f"{repository.location}:{name}",
            "created_at": ts(pushed),
        }
    # a pipeline's answer tells what REST's detail, jobs and test report summary do
    data = gql.execute(client, gql.PIPELINES, {"path": service.path, "first": 100})
    nodes = {n["id"]: n for n in data["project"]["pipelines"]["nodes"]}
    node = nodes[f"gid://gitlab/Ci::Pipeline/{pipeline.id}"]
    payload = gql.pipeline_payload(node, sandbox.gitlab_url)
    assert payload["item"]["id"] == pipeline.id and payload["item"]["status"] == pipeline.status
    assert {j["id"] for j in payload["jobs"]} == {j.id for j in pipeline.jobs}
    assert payload["test_report_summary"] is not None
    assert {s["name"] for s in payload["test_report_summary"]["test_suites"]} == {
        t.name for t in pipeline.test_suites
    }
    # what GitLab does not have is refused as GitLab refuses it, and read as "too old"
    with pytest.raises(gql.Unavailable, match="Cannot query field 'source' on type 'Pipeline'"):
        gql.execute(
            client,
            "query($p: ID!) { project(fullPath: $p) { pipelines { nodes { source } } } }",
            {"p": service.path},
        )
    made.close()
    assert conforms(schema, '{ project(fullPath: "x") { path } }', {"project": {"path": 1}}) == [
        "data.project.path: 1 is not a String"
    ]


def test_too_complex_pages_are_split_and_malformed_nodes_are_kept_and_counted(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """GitLab refuses a page over its complexity limit: the collector asks again at half the size
    (here down to a quarter page); a node whose timestamp does not parse is kept as a rejected
    raw payload naming the field, and the rest of the sync is the ground truth."""
    service = sandbox.org.services[0]
    broken = service.pipelines[-1]
    sandbox.gitlab.graphql.max_complexity = 100  # a full page (complexity ~140) is refused
    sandbox.gitlab.corrupt("pipeline", broken.id, "created_at", "yesterday-ish")
    sandbox.gitlab_app.stats.reset()
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
        upgrade(engine)
        summary = collector(sandbox, engine).sync()
    finally:
        sandbox.gitlab.graphql.max_complexity = 250
        sandbox.gitlab.corruptions.clear()
    assert summary.ok, summary.errors
    assert summary.rejected == 1
    expected = truth.counts(sandbox.org)
    counts = table_counts(engine)
    assert counts["pipeline"] == expected["pipeline"] - 1
    assert {k: v for k, v in counts.items() if k not in ("pipeline", "job", "test_run")} == {
        k: v for k, v in expected.items() if k not in ("pipeline", "job", "test_run")
    }
    with engine.connect() as conn:
        [raw] = conn.execute(select(RawPayload).where(RawPayload.rejected)).all()
    assert raw.error == "pipeline: bad timestamp in created_at: 'yesterday-ish'"
    assert raw.stream == "pipelines" and "graphql" in raw.payload
    graphql = sandbox.gitlab_app.stats.by_route["/api/graphql"]
    refused_then_quarter_pages = sum(
        1 + -(-len(s.pipelines) // 25) for s in sandbox.org.services if s.pipelines
    )
    assert graphql >= refused_then_quarter_pages + len(sandbox.org.services)
    assert "/api/v4/projects/{id}/pipelines/{pid}" not in sandbox.gitlab_app.stats.by_route
