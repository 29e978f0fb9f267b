"""A SonarQube Web API simulator serving `sandbox.sonarqube_org` over real HTTP, and the webhook
sender.

Endpoints (shapes from ../shared/fixtures/sonarqube): `api/components/search_projects`,
`api/project_branches/list`, `api/project_analyses/search` (newest first, `from`/`to`, `p`/`ps`
paging, QUALITY_GATE events), `api/qualitygates/project_status?analysisId=`, `api/ce/activity`
and `api/ce/task`. Auth by version: `10` takes the token as a Bearer token or as a basic-auth user
name, `9.9` only the latter (Bearer arrived in 10.0); anything else is 401. The server is shown as
it was at `at`: analyses made later do not exist yet. `webhook` renders the payload SonarQube
posts after an analysis, and `signature` its `X-Sonar-Webhook-HMAC-SHA256` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from sandbox.server import HTTPError, Request, Router
from sandbox.sonarqube_org import Analysis, Project, SonarOrg

GATE_EVENT = {"ERROR": "Failed", "OK": "Passed", "WARN": "Warning"}
WEBHOOK_OPERATORS = {"GT": "GREATER_THAN", "LT": "LESS_THAN"}


def sonar_time(at: datetime) -> str:
    """A SonarQube date: `2016-12-12T17:12:45+0000`."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def parse_sonar_time(text: str) -> datetime:
    """A `from`/`to` parameter: a date (midnight UTC) or a SonarQube datetime."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPError(400, f"'{text}' cannot be parsed as either a date or date+time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class SonarQubeSimulator:
    """The API of one SonarQube server over `sonar`, as it was at `at`."""

    def __init__(
        self, sonar: SonarOrg, token: str, at: datetime | None = None, version: str = "10"
    ) -> None:
        self.sonar, self.token, self.version = sonar, token, version
        self.at = at or datetime.now(UTC)
        self.administer = True  # whether the token may read api/ce/activity (Administer)
        self.router = Router()
        r = self.router
        r.add("/api/components/search_projects", self.search_projects)
        r.add("/api/project_branches/list", self.branches)
        r.add("/api/project_analyses/search", self.analyses)
        r.add("/api/qualitygates/project_status", self.project_status)
        r.add("/api/ce/activity", self.activity)
        r.add("/api/ce/task", self.task)

    def advance(self, at: datetime) -> None:
        """Show the server as it is at `at`."""
        self.at = at

    def authorised(self, request: Request) -> bool:
        """The token as Bearer (10 only) or as the basic-auth user, compared in constant time."""
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer ") and self.version != "9.9":
            return hmac.compare_digest(header[7:].encode(), self.token.encode())
        if header.startswith("Basic "):
            try:
                given = base64.b64decode(header[6:], validate=True)
            except ValueError:
                return False
            return hmac.compare_digest(given, f"{self.token}:".encode())
        return False

    # -- helpers -------------------------------------------------------------------------------

    def _visible(self, project: Project) -> list[Analysis]:
        return [a for a in project.analyses if a.date <= self.at]

    def _project(self, request: Request, name: str = "project") -> Project:
        key = request.query.get(name)
        if not key:
            raise HTTPError(400, f"The '{name}' parameter is missing")
        try:
            return self.sonar.project(key)
        except StopIteration:
            raise HTTPError(404, f"Component key '{key}' not found") from None

    @staticmethod
    def _page(request: Request, items: list[Any], name: str) -> dict[str, Any]:
        size = min(int(request.query.get("ps", "100") or 100), 500)
        page = max(1, int(request.query.get("p", "1") or 1))
        start = (page - 1) * size
        paging = {"pageIndex": page, "pageSize": size, "total": len(items)}
        return {"paging": paging, name: items[start : start + size]}

    def _analysis(self, key: str) -> Analysis:
        for a in self.sonar.analyses():
            if a.key == key and a.date <= self.at:
                return a
        raise HTTPError(404, f"Analysis '{key}' is not found")

    # -- endpoints -----------------------------------------------------------------------------

    def search_projects(self, request: Request) -> Any:
        items = [
            {"key": p.key, "name": p.name, "qualifier": "TRK", "isFavorite": False, "tags": [],
             "visibility": "private"}
            for p in sorted(self.sonar.projects, key=lambda p: p.name)
        ]  # fmt: skip
        return self._page(request, items, "components")

    def branches(self, request: Request) -> Any:
        project = self._project(request)
        seen = self._visible(project)
        out = []
        for name in project.branches():
            mine = [a for a in seen if a.branch == name]
            entry: dict[str, Any] = {
                "name": name,
                "isMain": name == project.default_branch,
                "type": "BRANCH",
            }
            if mine:
                entry["status"] = {"qualityGateStatus": mine[-1].status}
                entry["analysisDate"] = sonar_time(mine[-1].date)
            if mine or name == project.default_branch:
                out.append(entry)
        return {"branches": out}

    def analyses(self, request: Request) -> Any:
        project = self._project(request)
        branch = request.query.get("branch") or project.default_branch
        since = parse_sonar_time(request.query["from"]) if request.query.get("from") else None
        until = parse_sonar_time(request.query["to"]) if request.query.get("to") else None
        found = [
            a
            for a in reversed(self._visible(project))
            if a.branch == branch
            and (since is None or a.date >= since)
            and (until is None or a.date <= until)
        ]
        return self._page(request, [self.render_analysis(a) for a in found], "analyses")

    def render_analysis(self, a: Analysis) -> dict[str, Any]:
        """An analysis as `api/project_analyses/search` lists it."""
        events = [
            {
                "key": f"E{a.key}",
                "category": "QUALITY_GATE",
                "name": GATE_EVENT[a.status],
                "description": ", ".join(
                    c["metricKey"] for c in a.conditions if c["status"] == "ERROR"
                ),
            }
        ]
        out: dict[str, Any] = {
            "key": a.key,
            "date": sonar_time(a.date),
            "projectVersion": a.version,
            "buildString": f"{a.version}.{a.key[-3:]}",
            "manualNewCodePeriodBaseline": False,
            "detectedCI": "Gitlab CI",
            "events": events,
        }
        if a.revision:
            out["revision"] = a.revision
        return out

    def project_status(self, request: Request) -> Any:
        key = request.query.get("analysisId")
        if not key:
            raise HTTPError(
                400, "Either 'analysisId', 'projectId' or 'projectKey' must be provided"
            )
        a = self._analysis(key)
        status: dict[str, Any] = {
            "status": a.status,
            "ignoredConditions": False,
            "conditions": a.conditions,
            "period": {"mode": "PREVIOUS_VERSION", "date": sonar_time(a.date)},
        }
        if self.version != "9.9":
            status["caycStatus"] = "compliant" if a.status == "OK" else "non-compliant"
        return {"projectStatus": status}

    def render_task(self, a: Analysis) -> dict[str, Any]:
        """The background task (type REPORT) that produced analysis `a`."""
        return {
            "id": a.task_id,
            "type": "REPORT",
            "componentKey": a.project,
            "componentQualifier": "TRK",
            "analysisId": a.key,
            "status": "SUCCESS",
            "submittedAt": sonar_time(a.date),
            "startedAt": sonar_time(a.date),
            "executedAt": sonar_time(a.date),
            "executionTimeMs": 1200,
            "hasScannerContext": True,
            "warningCount": 0,
            "warnings": [],
            **({"branch": a.branch, "branchType": "BRANCH"} if a.branch else {}),
        }

    def activity(self, request: Request) -> Any:
        if not self.administer:
            raise HTTPError(403, "Insufficient privileges")
        project = self._project(request, "component")
        since = request.query.get("minSubmittedAt")
        floor = parse_sonar_time(since) if since else None
        tasks = [
            self.render_task(a)
            for a in reversed(self._visible(project))
            if floor is None or a.date >= floor
        ]
        return self._page(request, tasks, "tasks")

    def task(self, request: Request) -> Any:
        task_id = request.query.get("id")
        for a in self.sonar.analyses():
            if a.task_id == task_id and a.date <= self.at:
                return {"task": self.render_task(a)}
        raise HTTPError(404, f"No activity found for task '{task_id}'")

    # -- webhooks ------------------------------------------------------------------------------

    def webhook(self, a: Analysis, server_url: str) -> dict[str, Any]:
        """The payload SonarQube posts after analysis `a` (operators spelled out, `value` for
        the actual value, `revision` only when the analysis has one)."""
        project = self.sonar.project(a.project)
        dashboard = f"{server_url}/dashboard?id={a.project}"
        payload: dict[str, Any] = {
            "serverUrl": server_url,
            "taskId": a.task_id,
            "status": "SUCCESS",
            "analysedAt": sonar_time(a.date),
            "changedAt": sonar_time(a.date),
            "project": {"key": a.project, "name": project.name, "url": dashboard},
            "branch": {
                "name": a.branch,
                "type": "BRANCH",
                "isMain": a.branch == project.default_branch,
                "url": f"{dashboard}&branch={a.branch}",
            },
            "qualityGate": {
                "name": "Sonar way",
                "status": a.status,
                "conditions": [
                    {
                        "metric": c["metricKey"],
                        "operator": WEBHOOK_OPERATORS.get(c["comparator"], c["comparator"]),
                        "value": c["actualValue"],
                        "status": c["status"],
                        "errorThreshold": c["errorThreshold"],
                    }
                    for c in a.conditions
                ],
            },
            "properties": {},
        }
        if a.revision:
            payload["revision"] = a.revision
        return payload


def signature(body: bytes, secret: str) -> str:
    """SonarQube's `X-Sonar-Webhook-HMAC-SHA256`: the hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The bytes SonarQube sends (compact JSON)."""
    return json.dumps(payload, separators=(",", ":")).encode()
