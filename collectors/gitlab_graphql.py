"""GitLab's GraphQL API for the collector: batched pages through python-gitlab's `gitlab.GraphQL`.

One request answers a page of up to 100 pipelines with their timings, jobs and test report summary,
where REST needs a list page and three calls per pipeline; one answers a page of 20 registry tags
with their digests of each of up to 9 repositories, where REST needs a call per tag. The client
shares the REST client's policy and request counter (a `PolicyTransport` under its httpx client):
GraphQL requests are rate limited, retried and counted like REST ones.

- Pages: `first` items (at most 100, GitLab's page limit); a page GitLab refuses as too complex
  ("Query has complexity of N, which exceeds max complexity of M") is asked again at half the
  size, down to one item, and the smaller size is kept for the rest of that listing (registry
  tags: for half the repositories, down to one, then half the page).
- Availability: an instance whose GraphQL endpoint is missing or disabled (HTTP 404/405/501) or
  too old for the fields asked (GitLab refuses the query: "Field 'x' doesn't exist on type 'Y'")
  raises `Unavailable` on the first page; the collector then uses REST for the whole source.
  MIN_VERSION is the GitLab version whose schema the queries were checked against.
- Payloads: the raw payload kept is the GraphQL node verbatim (`{"graphql": node}`, with the
  REST-listed item beside it where the listing is REST's: `{"item": item, "graphql": node}`); the
  converters here turn it into the REST shapes the normalisers read (pure functions, no I/O).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, cast

import gitlab
from gitlab.exceptions import GitlabError, GitlabHttpError
from gql import GraphQLRequest
from gql.transport.exceptions import TransportError, TransportQueryError

from collectors.payload import RejectedPayload, parse_time

Payload = dict[str, Any]

MIN_VERSION = "16.3"  # the schema dump the queries are validated against (tests/fixtures)
MAX_PAGE = 100  # GitLab's max_page_size
UNAVAILABLE_STATUSES = frozenset({404, 405, 501})
_TOO_COMPLEX = re.compile(r"exceeds max complexity", re.I)
_UNKNOWN_FIELD = re.compile(r"doesn't exist on type|Cannot query field|Unknown argument", re.I)

PIPELINE_FIELDS = """
  id iid status ref sha createdAt updatedAt startedAt finishedAt duration queuedDuration path
  jobs(first: 100) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name status stage { name } allowFailure createdAt startedAt finishedAt duration
      queuedDuration webPath
    }
  }
  testReportSummary {
    testSuites(first: 100) {
      nodes { name totalTime totalCount successCount failedCount skippedCount errorCount }
    }
  }
"""

PIPELINES = f"""
query pipelines($path: ID!, $first: Int, $after: String, $updatedAfter: Time) {{
  project(fullPath: $path) {{
    pipelines(first: $first, after: $after, updatedAfter: $updatedAfter) {{
      pageInfo {{ hasNextPage endCursor }}
      nodes {{ {PIPELINE_FIELDS} }}
    }}
  }}
}}
"""

# the rest of a pipeline's jobs when it has more than one page of them
PIPELINE_JOBS = """
query pipelineJobs($path: ID!, $iid: ID!, $after: String) {
  project(fullPath: $path) {
    pipeline(iid: $iid) {
      jobs(first: 100, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes {
          id name status stage { name } allowFailure createdAt startedAt finishedAt duration
          queuedDuration webPath
        }
      }
    }
  }
}
"""

MR_COMMITS = """commits(first: 100, after: $commitsAfter) {
  pageInfo { hasNextPage endCursor }
  nodes { sha authoredDate authorName authorEmail title }
}"""
MR_NOTES = """notes(first: 100, after: $notesAfter) {
  pageInfo { hasNextPage endCursor }
  nodes { createdAt system body author { username } }
}"""

# the commits, approvers and notes of up to 100 merge requests (listed by REST: GitLab 16.3's
# MergeRequest has no closedAt or squashCommitSha), named by iid
MERGE_REQUESTS = f"""
query mergeRequests(
  $path: ID!, $iids: [String!], $first: Int, $after: String, $commitsAfter: String, $notesAfter: String
) {{
  project(fullPath: $path) {{
    mergeRequests(iids: $iids, first: $first, after: $after) {{
      pageInfo {{ hasNextPage endCursor }}
      nodes {{
        iid
        {MR_COMMITS}
        approvedBy(first: 100) {{ nodes {{ username }} }}
        {MR_NOTES}
      }}
    }}
  }}
}}
"""

# the rest of one merge request's commits or notes when it has more than a page of them
MERGE_REQUEST_MORE = f"""
query mergeRequestMore($path: ID!, $iid: String!, $commitsAfter: String, $notesAfter: String) {{
  project(fullPath: $path) {{
    mergeRequest(iid: $iid) {{
      {MR_COMMITS}
      {MR_NOTES}
    }}
  }}
}}
"""

# registry tags: GitLab serves at most 20 a page (`ContainerRepositoryDetails.tags` has
# `max_page_size: 20`, app/graphql/types/container_repository_details_type.rb), a page of each of
# up to MAX_REPOSITORIES repositories a request (aliases r0, r1, ...), sorted by name
TAGS_PAGE = 20
MAX_REPOSITORIES = 9
TAG_FIELDS = "name digest location createdAt"


def registry_tags_query(repositories: int) -> str:
    """A page of tags of each of `repositories` repositories: variables `r<i>` (the repository's
    global id) and `a<i>` (its cursor), and `first`."""
    variables = ", ".join(
        f"$r{i}: ContainerRepositoryID!, $a{i}: String" for i in range(repositories)
    )
    aliases = "\n".join(
        f"""  r{i}: containerRepository(id: $r{i}) {{
    id
    tags(first: $first, after: $a{i}, sort: NAME_ASC) {{
      pageInfo {{ hasNextPage endCursor }}
      nodes {{ {TAG_FIELDS} }}
    }}
  }}"""
        for i in range(repositories)
    )
    return f"query registryTags($first: Int, {variables}) {{\n{aliases}\n}}\n"


REGISTRY_TAGS = registry_tags_query(1)

QUERIES = {
    "pipelines": PIPELINES,
    "pipelineJobs": PIPELINE_JOBS,
    "mergeRequests": MERGE_REQUESTS,
    "mergeRequestMore": MERGE_REQUEST_MORE,
    "registryTags": REGISTRY_TAGS,
}


class Unavailable(GitlabError):
    """The instance has no usable GraphQL API (disabled, or too old for the fields asked)."""


class TooComplex(GitlabError):
    """GitLab refused the query as too complex."""


def execute(client: gitlab.GraphQL, query: str, variables: Mapping[str, Any]) -> Payload:
    """One GraphQL request; GitLab's errors as `GitlabError`s (`Unavailable`, `TooComplex`)."""
    request = GraphQLRequest(query, variable_values=dict(variables))
    try:
        return cast(Payload, client.execute(cast(Any, request)))
    except TransportQueryError as exc:  # a 200 answer carrying errors
        messages = [str(e.get("message", e)) for e in exc.errors or []] or [str(exc)]
        text = "; ".join(messages)
        if any(_TOO_COMPLEX.search(m) for m in messages):
            raise TooComplex(text) from exc
        if any(_UNKNOWN_FIELD.search(m) for m in messages):
            raise Unavailable(
                f"GraphQL refused the query (GitLab older than {MIN_VERSION}?): {text}"
            ) from exc
        raise GitlabError(f"GraphQL: {text}") from exc
    except GitlabHttpError as exc:
        if exc.response_code in UNAVAILABLE_STATUSES:
            raise Unavailable(f"no GraphQL API (HTTP {exc.response_code})") from exc
        raise
    except TransportError as exc:  # an answer that is not GraphQL's
        raise GitlabError(f"GraphQL: {type(exc).__name__}: {exc}") from exc


def pages(
    client: gitlab.GraphQL,
    query: str,
    variables: Mapping[str, Any],
    connection: tuple[str, ...],
    first: int = MAX_PAGE,
) -> Iterator[list[Payload]]:
    """The nodes of the connection at path `connection` (in `data`), page by page; a page GitLab
    finds too complex is asked again at half the size. `Unavailable` only before the first page."""
    after: str | None = None
    first = max(1, min(first, MAX_PAGE))
    served = False
    while True:
        try:
            data = execute(client, query, {**variables, "first": first, "after": after})
        except TooComplex:
            if first == 1:
                raise
            first = max(1, first // 2)
            continue
        except Unavailable as exc:
            if served:  # after items were read a REST fallback would read them twice
                raise GitlabError(str(exc)) from exc
            raise
        served = True
        found = dig(data, connection)
        if found is None:  # the project is gone (or not visible) since it was listed
            return
        yield [n for n in found.get("nodes") or [] if n is not None]
        info = found.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return
        after = info.get("endCursor")


def repository_gid(repository_id: Any) -> str:
    return f"gid://gitlab/ContainerRepository/{repository_id}"


def registry_tags(
    client: gitlab.GraphQL,
    wanted: Mapping[int, set[str]],
    batch: int = MAX_REPOSITORIES,
    first: int = TAGS_PAGE,
) -> dict[tuple[int, str], Payload]:
    """(repository id, tag name) -> tag node, for the `wanted` tags of each repository: its
    pages of tags, by name, until every wanted one is seen (or the last page), a page of each of
    up to `batch` repositories a request. A request GitLab finds too complex is asked again for
    half the repositories, then half the page. A repository gone since it was listed (null) or a
    wanted tag not found is left out. `Unavailable` only before the first answer."""
    left = {rid: set(names) for rid, names in wanted.items() if names}
    cursors: dict[int, str | None] = dict.fromkeys(left)
    found: dict[tuple[int, str], Payload] = {}
    batch, first = max(1, batch), max(1, min(first, TAGS_PAGE))
    served = False
    while cursors:
        chosen = list(cursors)[:batch]
        variables: dict[str, Any] = {"first": first}
        for i, rid in enumerate(chosen):
            variables[f"r{i}"], variables[f"a{i}"] = repository_gid(rid), cursors[rid]
        try:
            data = execute(client, registry_tags_query(len(chosen)), variables)
        except TooComplex:
            if batch == 1 and first == 1:
                raise
            batch, first = (batch // 2, first) if batch > 1 else (1, first // 2)
            continue
        except Unavailable as exc:
            if served:  # after tags were read a REST fallback would read them again
                raise GitlabError(str(exc)) from exc
            raise
        served = True
        for i, rid in enumerate(chosen):
            tags = dig(data, (f"r{i}", "tags"))
            for node in (tags or {}).get("nodes") or []:
                name = node.get("name") if isinstance(node, Mapping) else None
                if isinstance(name, str) and name in left[rid]:
                    found[(rid, name)] = node
                    left[rid].discard(name)
            info = (tags or {}).get("pageInfo") or {}
            if tags is None or not left[rid] or not info.get("hasNextPage"):
                del cursors[rid]
            else:
                cursors[rid] = info.get("endCursor")
    return found


def dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def number_of(gid: Any) -> int | None:
    """The number ending a global id (`gid://gitlab/Ci::Pipeline/7` -> 7), None otherwise."""
    if isinstance(gid, str) and (tail := gid.rsplit("/", 1)[-1]).isdigit():
        return int(tail)
    return None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _url(base: str, path: Any) -> str | None:
    return f"{base}{path}" if isinstance(path, str) and path else None


# --- converters: GraphQL nodes into the REST shapes the normalisers read ----------------------

FINISHED = ("success", "failed", "canceled")


def pipeline_payload(node: Payload, base: str) -> Payload:
    """{"item", "jobs", "test_report_summary"} of a pipeline node, as the REST detail, jobs and
    test report summary calls give them (the summary only for a finished pipeline with a test
    job, as the REST stream asks for it). GitLab 16.3's Pipeline has no `source`: no trigger."""
    pipeline_id = number_of(node.get("id"))
    item = {
        "id": pipeline_id,
        "iid": int(node["iid"]) if str(node.get("iid") or "").isdigit() else node.get("iid"),
        "status": _lower(node.get("status")),
        "ref": node.get("ref"),
        "sha": node.get("sha"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "started_at": node.get("startedAt"),
        "finished_at": node.get("finishedAt"),
        "duration": node.get("duration"),
        "queued_duration": node.get("queuedDuration"),
        "web_url": _url(base, node.get("path")),
    }
    jobs = [job_payload(j, pipeline_id, base) for j in dig(node, ("jobs", "nodes")) or [] if j]
    summary = None
    if item["status"] in FINISHED and any(j.get("stage") == "test" for j in jobs):
        suites = dig(node, ("testReportSummary", "testSuites", "nodes")) or []
        summary = {"test_suites": [suite_payload(s) for s in suites if s]}
    return {"item": item, "jobs": jobs, "test_report_summary": summary}


def job_payload(node: Payload, pipeline_id: int | None, base: str) -> Payload:
    """A job node as REST lists it; its duration from its timestamps (GraphQL rounds it to
    whole seconds, REST does not), else GraphQL's."""
    started, finished = node.get("startedAt"), node.get("finishedAt")
    duration = node.get("duration")
    try:
        start, end = parse_time(started, "startedAt"), parse_time(finished, "finishedAt")
        if start and end:
            duration = (end - start).total_seconds()
    except RejectedPayload:  # a malformed timestamp: the normaliser rejects the job by name
        pass
    return {
        "id": number_of(node.get("id")),
        "name": node.get("name"),
        "stage": (node.get("stage") or {}).get("name"),
        "status": _lower(node.get("status")),
        "allow_failure": node.get("allowFailure"),
        "created_at": node.get("createdAt"),
        "started_at": started,
        "finished_at": finished,
        "duration": duration,
        "queued_duration": node.get("queuedDuration"),
        "web_url": _url(base, node.get("webPath")),
        "pipeline": {"id": pipeline_id},
    }


def merge_request_details(node: Payload) -> Payload:
    """{"commits", "approvals", "notes"} of a merge request node, as REST's commits, approvals
    and notes calls give them (commits without `committed_date`: GraphQL has none)."""
    commits = [
        {
            "id": c.get("sha"),
            "title": c.get("title"),
            "author_name": c.get("authorName"),
            "author_email": c.get("authorEmail"),
            "authored_date": c.get("authoredDate"),
        }
        for c in dig(node, ("commits", "nodes")) or []
        if c
    ]
    approvers = [{"user": u} for u in dig(node, ("approvedBy", "nodes")) or [] if u]
    notes = [
        {
            "created_at": n.get("createdAt"),
            "system": n.get("system"),
            "body": n.get("body"),
            "author": n.get("author") or {},
        }
        for n in dig(node, ("notes", "nodes")) or []
        if n
    ]
    return {"commits": commits, "approvals": {"approved_by": approvers}, "notes": notes}


def complete_merge_request(client: gitlab.GraphQL, path: str, node: Payload) -> Payload:
    """`node` with every page of its commits and notes (a request for each further page)."""
    for field, cursor in (("commits", "commitsAfter"), ("notes", "notesAfter")):
        listed = node.get(field) or {}
        info = listed.get("pageInfo") or {}
        while info.get("hasNextPage"):
            variables = {"path": path, "iid": node.get("iid"), cursor: info.get("endCursor")}
            data = execute(client, MERGE_REQUEST_MORE, variables)
            more = dig(data, ("project", "mergeRequest", field)) or {}
            listed["nodes"] = [*(listed.get("nodes") or []), *(more.get("nodes") or [])]
            info = listed["pageInfo"] = more.get("pageInfo") or {}
        node[field] = listed
    return node


def registry_tag_payload(node: Payload) -> Payload:
    """A tag node as the REST single-tag call gives it (the fields asked: TAG_FIELDS)."""
    return {
        "name": node.get("name"),
        "digest": node.get("digest"),
        "location": node.get("location"),
        "created_at": node.get("createdAt"),
    }


def suite_payload(node: Payload) -> Payload:
    return {
        "name": node.get("name"),
        "total_time": node.get("totalTime"),
        "total_count": node.get("totalCount"),
        "success_count": node.get("successCount"),
        "failed_count": node.get("failedCount"),
        "skipped_count": node.get("skippedCount"),
        "error_count": node.get("errorCount"),
    }
