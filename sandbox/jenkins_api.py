"""A Jenkins JSON API simulator serving a generated organisation's Jenkins jobs over real HTTP.

`/api/json` of the controller, folders, multibranch projects, jobs and builds with Jenkins' `tree`
parameter (nested `name[a,b[c]]`, list ranges `{m,n}`; `builds` holds the newest 100 as in Jenkins
core, `allBuilds` all of them, only when asked), `wfapi/describe` of pipeline builds,
`testReport/api/json`, the crumb issuer, and basic auth with a user's API token (401 otherwise).
Answers render beans as Jenkins' Stapler does: without `tree`, every property of the top object,
nested objects cut to their summary (a build in a job's `builds` is `{_class, number, url}`); with
`tree`, exactly the properties asked for, unknown names left out, `_class` always present.
Faults and rate limits come from the server framework; `corrupt()` serves a malformed build. The
controller is shown as it was at `at`: builds not started yet do not exist, builds still running
are `building`, with no result until a failing step set one (`jenkins_org.shown_result`).
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sandbox.jenkins_org import iter_jobs, published_suites, visible_builds
from sandbox.jenkins_payloads import Exported, Renderer
from sandbox.model import JenkinsBuild, JenkinsJob, Organisation, TestSuite
from sandbox.server import HTTPError, Request, Response, Router

DELETE = object()  # a corruption that removes the field
Tree = tuple[tuple[str, "Tree | None", "tuple[int | None, int | None] | None"], ...]


def _resolve(value: Any) -> Any:
    return value() if callable(value) else value


# -- tree= ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*([\w$.]+|[\[\]{},])")


class TreeError(ValueError):
    """A malformed `tree` parameter (Jenkins answers 400)."""


@lru_cache(maxsize=256)
def parse_tree(text: str) -> Tree:
    """`jobs[name,builds[number]{0,5}],url` -> ((name, subtree, range), ...)."""
    tokens = [m.group(1) for m in _TOKEN.finditer(text)]
    if "".join(tokens) != re.sub(r"\s", "", text):
        raise TreeError(f"tree: unexpected character in {text!r}")
    tree, pos = _parse_items(tokens, 0)
    if pos != len(tokens):
        raise TreeError(f"tree: unexpected {tokens[pos]!r} in {text!r}")
    return tree


def _parse_items(tokens: list[str], pos: int) -> tuple[Tree, int]:
    items = []
    while pos < len(tokens) and tokens[pos] not in ("]", "}"):
        name = tokens[pos]
        if not re.fullmatch(r"[\w$.]+", name):
            raise TreeError(f"tree: expected a property name, got {name!r}")
        pos += 1
        sub: Tree | None = None
        span: tuple[int | None, int | None] | None = None
        if pos < len(tokens) and tokens[pos] == "[":
            sub, pos = _parse_items(tokens, pos + 1)
            pos = _expect(tokens, pos, "]")
        if pos < len(tokens) and tokens[pos] == "{":
            span, pos = _parse_range(tokens, pos + 1)
        items.append((name, sub, span))
        if pos < len(tokens) and tokens[pos] == ",":
            pos += 1
    return tuple(items), pos


def _parse_range(tokens: list[str], pos: int) -> tuple[tuple[int | None, int | None], int]:
    """`{m,n}` (m to n-1), `{m,}`, `{,n}` or `{n}` (just n)."""
    parts: list[str] = []
    while pos < len(tokens) and tokens[pos] != "}":
        parts.append(tokens[pos])
        pos += 1
    pos = _expect(tokens, pos, "}")
    text = "".join(parts)
    m = re.fullmatch(r"(\d*)(,(\d*))?", text)
    if not m or (not m.group(1) and not m.group(3) and not m.group(2)):
        raise TreeError(f"tree: bad range {{{text}}}")
    low = int(m.group(1)) if m.group(1) else None
    if m.group(2) is None:
        return (low, (low or 0) + 1), pos
    return (low, int(m.group(3)) if m.group(3) else None), pos


def _expect(tokens: list[str], pos: int, token: str) -> int:
    if pos >= len(tokens) or tokens[pos] != token:
        raise TreeError(f"tree: expected {token!r}")
    return pos + 1


def export(value: Any, tree: Tree | None = None, patches: Mapping[Any, Any] | None = None) -> Any:
    """`value` rendered as Jenkins renders the answer's top object (see the module docstring)."""
    return _export(value, tree, patches or {}, top=True)


def _export(value: Any, tree: Tree | None, patches: Mapping[Any, Any], top: bool) -> Any:
    if isinstance(value, Exported):
        out: dict[str, Any] = {"_class": value.cls}
        if tree is None:
            names = (
                [n for n in value.fields if n not in value.hidden]
                if top or value.summary is None
                else [n for n in value.summary if n in value.fields]
            )
            for name in names:
                out[name] = _export(_resolve(value.fields[name]), None, patches, top=False)
        else:
            for name, sub, span in tree:
                if name not in value.fields:
                    continue  # Jenkins leaves out what it does not know
                item = _resolve(value.fields[name])
                if span is not None and isinstance(item, list):
                    item = item[slice(*span)]
                out[name] = _select(item, sub, patches)
        if value.key is not None and value.key in patches:
            patches[value.key](out)
        return out
    if isinstance(value, list):
        return [_export(v, tree, patches, top=False) for v in value]
    return value


def _select(value: Any, sub: Tree | None, patches: Mapping[Any, Any]) -> Any:
    if isinstance(value, list):
        return [_select(v, sub, patches) for v in value]
    if isinstance(value, Exported):
        return _export(value, sub or (), patches, top=False)
    if isinstance(value, dict) and sub:
        return {name: value[name] for name, _, _ in sub if name in value}
    return value


# -- the simulator ------------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+")


class JenkinsSimulator:
    """Serves `org.jenkins` as a Jenkins controller would at `self.at` (default: the end of its
    history). `gitlab_url` is where the GitLab simulator serves the code, so that BuildData name
    repositories by GitLab's clone URLs."""

    def __init__(
        self,
        org: Organisation,
        user: str = "sandbox",
        token: str = "sandbox-token",
        at: datetime | None = None,
        gitlab_url: str | None = None,
    ) -> None:
        self.org = org
        self.user, self.token = user, token
        self.at = at or org.now
        self.gitlab_url = gitlab_url
        self.jobs = {job.path: job for job in iter_jobs(org.jenkins)}
        self.services = {s.name: s for s in org.services}
        self.corruptions: dict[tuple[str, int], Callable[[dict[str, Any]], None]] = {}
        self._renderers: dict[str, Renderer] = {}
        self.router = Router()
        r = self.router
        r.add("/api/json", self.root)
        r.add("/crumbIssuer/api/json", self.crumb)
        r.add("/me/api/json", self.me)
        r.add("/{path:path}/wfapi/describe", self.describe)
        r.add("/{path:path}/wfapi/describe/", self.describe)
        r.add("/{path:path}/api/json", self.item)

    # -- control -------------------------------------------------------------------------------

    def advance(self, at: datetime) -> None:
        """Show the controller as it is at `at` (later or earlier)."""
        self.at = at
        self._renderers.clear()

    def corrupt(self, job: str, number: int, field_name: str, value: Any = DELETE) -> None:
        """Serve build `number` of job `job` (full name) with `field_name` set to `value` (or
        removed), wherever the build appears."""

        def patch(body: dict[str, Any]) -> None:
            if field_name not in body and value is DELETE:
                return
            if value is DELETE:
                body.pop(field_name, None)
            else:
                body[field_name] = value

        self.corruptions[(job, number)] = patch
        self._renderers.clear()

    def authorised(self, request: Request) -> bool:
        """Basic auth with the user's API token, compared in constant time."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:], validate=True)
        except ValueError:
            return False
        return hmac.compare_digest(given, f"{self.user}:{self.token}".encode())

    # -- helpers -------------------------------------------------------------------------------

    def _renderer(self, request: Request) -> Renderer:
        base = request.base_url
        renderer = self._renderers.get(base)
        if renderer is None:
            renderer = Renderer(base, self.at, self.gitlab_url, self.services)
            self._renderers[base] = renderer
        return renderer

    def _answer(self, request: Request, bean: Exported) -> Any:
        text = request.query.get("tree")
        try:
            tree = parse_tree(text) if text else None
        except TreeError as exc:
            raise HTTPError(400, str(exc)) from None
        return export(bean, tree, self.corruptions)

    def _locate(
        self, request: Request, path: str
    ) -> tuple[JenkinsJob, JenkinsBuild | None, list[str]]:
        """The job (and build) a path names, and what follows it (`testReport`)."""
        parts = path.strip("/").split("/")
        names: list[str] = []
        while len(parts) >= 2 and parts[0] == "job":
            names.append(parts[1])
            parts = parts[2:]
        job = self.jobs.get(tuple(names))
        renderer = self._renderer(request)
        if not names or job is None or not renderer.exists(job):
            raise HTTPError(404, "404 Not Found")
        build = None
        if parts and (parts[0] == "lastBuild" or _NUMBER.fullmatch(parts[0])):
            builds = visible_builds(job, self.at)
            number = len(builds) if parts[0] == "lastBuild" else int(parts[0])
            if not 1 <= number <= len(builds):
                raise HTTPError(404, "404 Not Found")
            build, parts = builds[number - 1], parts[1:]
        return job, build, parts

    # -- routes --------------------------------------------------------------------------------

    def root(self, request: Request) -> Any:
        items = self.org.jenkins
        return self._answer(request, self._renderer(request).root(items))

    def crumb(self, request: Request) -> dict[str, Any]:
        return {
            "_class": "hudson.security.csrf.DefaultCrumbIssuer",
            "crumb": hmac.new(self.token.encode(), b"crumb", "sha256").hexdigest()[:32],
            "crumbRequestField": "Jenkins-Crumb",
        }

    def me(self, request: Request) -> dict[str, Any]:
        return {
            "_class": "hudson.model.User",
            "absoluteUrl": f"{request.base_url}/user/{self.user}",
            "description": None,
            "fullName": self.user,
            "id": self.user,
            "property": [],
        }

    def item(self, request: Request) -> Any:
        job, build, rest = self._locate(request, request.params["path"])
        renderer = self._renderer(request)
        if build is None and not rest:
            return self._answer(request, renderer.job(job))
        if build is not None and not rest:
            return self._answer(request, renderer.build(job, build))
        if build is not None and rest == ["testReport"]:
            suites = published_suites(build, self.at)
            if not suites:
                raise HTTPError(404, "404 Not Found")
            return self._answer(request, test_report(suites, build))
        raise HTTPError(404, "404 Not Found")

    def describe(self, request: Request) -> Response:
        job, build, rest = self._locate(request, request.params["path"])
        if build is None or rest or job.kind != "pipeline":
            raise HTTPError(404, "404 Not Found")
        return Response(self._renderer(request).describe(job, build))


# -- test reports ------------------------------------------------------------------------------


def test_report(suites: list[TestSuite], b: JenkinsBuild) -> Exported:
    """The JUnit plugin's TestResult: suites with their cases."""
    test = next(j for j in b.stages if j.stage == "test")
    stamp = (test.finished_at or b.started_at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    failed = sum(t.failed for t in suites)
    skipped = sum(t.skipped for t in suites)
    return Exported(
        "hudson.tasks.junit.TestResult",
        {
            "testActions": [],
            "duration": round(sum(t.seconds for t in suites), 3),
            "empty": False,
            "failCount": failed,
            "passCount": sum(t.total for t in suites) - failed - skipped,
            "skipCount": skipped,
            "suites": [_suite(t, stamp) for t in suites],
        },
    )


def _suite(t: TestSuite, stamp: str) -> Exported:
    return Exported(
        "hudson.tasks.junit.SuiteResult",
        {
            "cases": lambda: _cases(t),
            "duration": t.seconds,
            "enclosingBlockNames": [],
            "enclosingBlocks": [],
            "id": None,
            "name": t.name,
            "nodeId": None,
            "properties": {},
            "stderr": None,
            "stdout": None,
            "timestamp": stamp,
        },
    )


def _cases(t: TestSuite) -> list[Exported]:
    """A suite's cases: the failed ones first, then the skipped, then the passed."""
    each = round(t.seconds / max(1, t.total), 3)
    cases = []
    for i in range(t.total):
        status = "FAILED" if i < t.failed else "SKIPPED" if i < t.failed + t.skipped else "PASSED"
        cases.append(
            Exported(
                "hudson.tasks.junit.CaseResult",
                {
                    "testActions": [],
                    "age": 1 if status == "FAILED" else 0,
                    "className": f"com.acme.{t.name}.Suite{i // 25}Test",
                    "duration": each,
                    "errorDetails": "expected:<200> but was:<500>" if status == "FAILED" else None,
                    "errorStackTrace": None,
                    "failedSince": 0,
                    "name": f"test{i}",
                    "skipped": status == "SKIPPED",
                    "skippedMessage": None,
                    "status": status,
                    "stderr": None,
                    "stdout": None,
                },
            )
        )
    return cases


__all__ = ["DELETE", "JenkinsSimulator", "TreeError", "export", "parse_tree"]
