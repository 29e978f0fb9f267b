"""The GitLab simulator is faithful: its payloads satisfy GitLab's own JSON schemas, and its
pagination and filters behave as GitLab's do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft4Validator
from referencing import Registry, Resource

from sandbox.generate import generate
from sandbox.serve import Sandbox
from tests.sandbox_helpers import HISTORY_END

SCHEMAS = Path(__file__).parent / "fixtures" / "gitlab" / "schemas"
TOKEN = "glpat-schema"


def _loosen(node: Any) -> Any:
    """GitLab's schemas use `date`/`uri` types (strings here) and sometimes forbid extra fields."""
    if isinstance(node, dict):
        out = {
            k: _loosen(v)
            for k, v in node.items()
            if not (k == "additionalProperties" and v is False)
        }
        if out.get("type") in ("date", "uri"):
            out["type"] = "string"
        if isinstance(out.get("type"), list):
            out["type"] = ["string" if t in ("date", "uri") else t for t in out["type"]]
        return out
    if isinstance(node, list):
        return [_loosen(v) for v in node]
    return node


def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.rglob("*.json"):
        if path.name == "SOURCES.json":
            continue
        uri = "file:///" + path.relative_to(SCHEMAS).as_posix()
        resources.append(
            (
                uri,
                Resource.from_contents(
                    _loosen(json.loads(path.read_text())), default_specification=_DRAFT4
                ),
            )
        )
    return Registry().with_resources(resources)


from referencing.jsonschema import DRAFT4 as _DRAFT4  # noqa: E402

REGISTRY = _registry()


def validate(schema: str, payload: Any) -> None:
    uri = f"file:///{schema}"
    validator = Draft4Validator(
        REGISTRY[uri].contents, registry=REGISTRY, _resolver=REGISTRY.resolver(uri)
    )
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
    assert not errors, f"{schema}: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
    )


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[requests.Session, str]]:
    with (
        Sandbox.start(org=generate(5, "tiny", HISTORY_END), token=TOKEN) as sandbox,
        requests.Session() as session,
    ):
        session.headers["PRIVATE-TOKEN"] = TOKEN
        yield session, f"{sandbox.gitlab_url}/api/v4/projects/1"


def get(api: tuple[requests.Session, str], path: str, **params: Any) -> Any:
    session, base = api
    response = session.get(base + path, params=params, timeout=10)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


@pytest.mark.parametrize(
    ("path", "schema", "many"),
    [
        ("", "public_api/v4/project.json", False),
        ("/repository/commits", "public_api/v4/commit/basic.json", True),
        ("/repository/branches", "public_api/v4/branch.json", True),
        ("/merge_requests", "public_api/v4/merge_requests.json", False),
        ("/pipelines", "public_api/v4/pipelines.json", False),
        ("/environments", "public_api/v4/environments.json", False),
        ("/issues", "public_api/v4/issue.json", True),
        ("/registry/repositories", "registry/repositories.json", False),
    ],
)
def test_listings_satisfy_gitlab_schemas(
    api: tuple[requests.Session, str], path: str, schema: str, many: bool
) -> None:
    payload = get(api, path, per_page=100)
    if many:
        assert payload
        for item in payload:
            validate(schema, item)
    else:
        validate(schema, payload)


def test_details_satisfy_gitlab_schemas(api: tuple[requests.Session, str]) -> None:
    pipelines = get(api, "/pipelines", per_page=100)
    detail = get(api, f"/pipelines/{pipelines[0]['id']}")
    validate("public_api/v4/pipeline/basic.json", detail)
    for job in get(api, f"/pipelines/{pipelines[0]['id']}/jobs"):
        validate("public_api/v4/job.json", job)
    deployments = get(api, "/deployments", per_page=100)
    for deployment in deployments:
        validate("public_api/v4/deployment.json", deployment)
        validate("public_api/v4/environment.json", deployment["environment"])
    mr = get(api, "/merge_requests")[0]
    validate("public_api/v4/merge_request.json", get(api, f"/merge_requests/{mr['iid']}"))
    tag = get(api, "/registry/repositories", tags="true")[0]["tags"][0]
    detail = get(api, f"/registry/repositories/1/tags/{tag['name']}")
    validate("registry/tag.json", {k: v for k, v in detail.items() if k not in ("digest", "path")})
    assert detail["digest"].startswith("sha256:") and detail["revision"] != detail["digest"]


def test_offset_pagination_headers(api: tuple[requests.Session, str]) -> None:
    session, base = api
    response = session.get(
        base + "/repository/commits", params={"all": "true", "per_page": 5}, timeout=10
    )
    assert response.headers["X-Per-Page"] == "5"
    assert response.headers["X-Next-Page"] == "2"
    total = int(response.headers["X-Total"])
    assert int(response.headers["X-Total-Pages"]) == -(-total // 5)
    assert 'rel="next"' in response.headers["Link"]


def test_project_jobs_newest_first_with_offset_and_keyset_pages(
    api: tuple[requests.Session, str],
) -> None:
    """GET /projects/:id/jobs: every pipeline's jobs (as its own listing shows them with
    `include_retried`), newest first, each naming its pipeline; offset pages and keyset pages
    (`id_before`) agree."""
    session, base = api
    everything = get(api, "/jobs", per_page=100)
    created = [j["created_at"] for j in everything]
    assert created == sorted(created, reverse=True)
    by_pipeline: dict[int, set[int]] = {}
    for job in everything:
        validate("public_api/v4/job.json", job)
        by_pipeline.setdefault(job["pipeline"]["id"], set()).add(job["id"])
    for pipeline in get(api, "/pipelines", per_page=100)[:5]:
        listing = get(
            api, f"/pipelines/{pipeline['id']}/jobs", per_page=100, include_retried="true"
        )
        own = {j["id"] for j in listing}
        assert by_pipeline[pipeline["id"]] == own
    offset = [j["id"] for page in (1, 2) for j in get(api, "/jobs", per_page=4, page=page)]
    first = session.get(base + "/jobs", params={"pagination": "keyset", "per_page": 4}, timeout=10)
    following = session.get(first.headers["Link"].split(";")[0].strip("<>"), timeout=10)
    assert "id_before=" in following.url
    keyset = [j["id"] for j in first.json() + following.json()]
    assert keyset == offset == [j["id"] for j in everything[:8]]


def test_updated_after_is_on_or_after(api: tuple[requests.Session, str]) -> None:
    everything = get(api, "/merge_requests", per_page=100, order_by="updated_at", sort="asc")
    pivot = everything[len(everything) // 2]["updated_at"]
    later = get(
        api, "/merge_requests", per_page=100, order_by="updated_at", sort="asc", updated_after=pivot
    )
    assert later and later[0]["updated_at"] == pivot
    assert all(mr["updated_at"] >= pivot for mr in later)


def test_deployments_filter_needs_updated_at_order(api: tuple[requests.Session, str]) -> None:
    session, base = api
    response = session.get(
        base + "/deployments", params={"updated_after": "2020-01-01T00:00:00Z"}, timeout=10
    )
    assert response.status_code == 400


def test_wrong_token_is_refused(api: tuple[requests.Session, str]) -> None:
    _, base = api
    assert requests.get(base, headers={"PRIVATE-TOKEN": "wrong"}, timeout=10).status_code == 401
