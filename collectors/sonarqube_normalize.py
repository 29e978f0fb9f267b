"""Pure normalisers of SonarQube payloads into `code_analysis` rows: an analysis from
`api/project_analyses/search` with its gate from `api/qualitygates/project_status?analysisId=`
(the poller), or a webhook payload (collectors/webhooks_sonarqube.py); both give the same row.

Decisions where DESIGN.md is silent:
- The row's key is (source, project key, analysis date): a webhook does not carry the analysis
  key, the date it does carry is the analysis's. The webhook's receiver reads that one analysis
  (`api/project_analyses/search` from and to its date: Browse is enough, where `api/ce/task`
  needs Execute Analysis) for its key and project version; when that read fails the row is
  written without them and the next poll fills them in.
- The CI task: the webhook names it (`taskId`); the poller reads `api/ce/activity` of a project
  with new analyses (which needs Administer on the project: without it the task stays unknown).
- The row's link is the configured server URL's dashboard of the branch, from either source (a
  webhook's `serverUrl` is what SonarQube calls itself, which may not be what we reach it by).
- Gate status: `OK` and `WARN` are `passed` (WARN left SonarQube in 7.6; an older server's
  warning does not deny), `ERROR` is `failed`, `NONE` or no gate is `none`; the raw one is kept.
- Failing conditions: those whose status is ERROR, as `{metric, comparator, threshold, actual}`;
  the webhook's `GREATER_THAN`/`LESS_THAN` read as the API's `GT`/`LT`, its `value` as the actual
  value, so the two sources write the same JSON.
- An analysis without a revision (a scanner run outside a git checkout; SonarQube's own example
  P1) cannot be matched to a commit: rejected, so the sync keeps it raw and counts it.
- A project's repository: `repositories` from config, else the repository whose path equals the
  key, else the key with `:` read as `/` (SonarQube keys cannot hold `/`; `group:project` is the
  usual spelling). The row keeps the path; `repo_id` is filled when the warehouse knows it.
- A pull request's analysis has `pull_request` set and no branch; the policies never count it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from collectors.payload import Fields, RejectedPayload, Row, rejects

GATE_STATUSES = {"OK": "passed", "WARN": "passed", "ERROR": "failed", "NONE": "none"}
OPERATORS = {"GREATER_THAN": "GT", "LESS_THAN": "LT", "EQUALS": "EQ", "NOT_EQUALS": "NE"}


def repo_path(project_key: str, repositories: Mapping[str, str]) -> str:
    """The repository path of a project: the configured one, else the key itself."""
    return repositories.get(project_key, project_key)


def gate_status(raw: str | None) -> str:
    """passed, failed or none for SonarQube's OK/WARN, ERROR and NONE (or no gate)."""
    if raw is None:
        return "none"
    try:
        return GATE_STATUSES[raw]
    except KeyError:
        raise RejectedPayload(f"unknown quality gate status {raw!r}") from None


def failing(conditions: list[Fields], webhook: bool = False) -> list[dict[str, Any]]:
    """The conditions whose status is ERROR, in one shape for the API and the webhook."""
    out = []
    for c in conditions:
        if c.string("status") != "ERROR":
            continue
        if webhook:
            comparator = c.string("operator")
            out.append(
                {
                    "metric": c.required("metric"),
                    "comparator": OPERATORS.get(comparator or "", comparator),
                    "threshold": c.string("errorThreshold"),
                    "actual": c.string("value"),
                }
            )
        else:
            out.append(
                {
                    "metric": c.required("metricKey"),
                    "comparator": c.string("comparator"),
                    "threshold": c.string("errorThreshold"),
                    "actual": c.string("actualValue"),
                }
            )
    return out


def dashboard_url(server: str, project: str, branch: str | None, pull_request: str | None) -> str:
    """The project's page on the server for that branch or pull request."""
    url = f"{server.rstrip('/')}/dashboard?id={project}"
    if pull_request:
        return f"{url}&pullRequest={pull_request}"
    return f"{url}&branch={branch}" if branch else url


@rejects("analysis")
def normalize_analysis(
    analysis: Any,
    status: Any,
    *,
    source_id: int,
    project: str,
    branch: str,
    repositories: Mapping[str, str],
    server: str,
    task_id: str | None = None,
) -> Row:
    """The `code_analysis` row of one analysis of `project` on `branch` (a project_analyses item)
    and its `project_status` answer (None: the gate was not read)."""
    a = Fields(analysis)
    key = a.required("key")
    revision = a.string("revision")
    if not revision:
        raise RejectedPayload(f"{key} has no revision: it cannot be matched to a commit")
    gate = Fields(status).obj("projectStatus") if status is not None else None
    raw = gate.string("status") if gate is not None else None
    return _row(
        source_id=source_id,
        project=project,
        analysed_at=a.required_time("date"),
        analysis_key=key,
        branch=branch,
        pull_request=None,
        revision=revision,
        raw_status=raw,
        failing_conditions=failing(gate.objects("conditions")) if gate is not None else [],
        version=a.string("projectVersion"),
        task_id=task_id,
        repositories=repositories,
        server=server,
    )


@rejects("webhook")
def normalize_webhook(
    payload: Any,
    *,
    source_id: int,
    repositories: Mapping[str, str],
    server: str,
    analysis: Any = None,
) -> Row:
    """The `code_analysis` row of a SonarQube webhook payload; `analysis` is the analysis as
    `api/project_analyses/search` lists it (None: not read)."""
    p = Fields(payload)
    project = p.obj("project").required("key")
    revision = p.string("revision")
    if not revision:
        raise RejectedPayload(
            f"the analysis of {project} has no revision: it cannot be matched to a commit"
        )
    branch = p.obj("branch")
    kind = branch.string("type") or "BRANCH"
    name = branch.string("name")
    gate = p.obj("qualityGate")
    listed = Fields(analysis, "analysis") if analysis is not None else None
    return _row(
        source_id=source_id,
        project=project,
        analysed_at=p.required_time("analysedAt"),
        analysis_key=listed.required("key") if listed is not None else None,
        branch=None if kind == "PULL_REQUEST" else name,
        pull_request=name if kind == "PULL_REQUEST" else None,
        revision=revision,
        raw_status=gate.string("status") if p.has("qualityGate") else None,
        failing_conditions=failing(gate.objects("conditions"), webhook=True),
        version=listed.string("projectVersion") if listed is not None else None,
        task_id=p.string("taskId"),
        repositories=repositories,
        server=server,
    )


def _row(
    *,
    source_id: int,
    project: str,
    analysed_at: datetime,
    analysis_key: str | None,
    branch: str | None,
    pull_request: str | None,
    revision: str,
    raw_status: str | None,
    failing_conditions: list[dict[str, Any]],
    version: str | None,
    task_id: str | None,
    repositories: Mapping[str, str],
    server: str,
) -> Row:
    row: Row = {
        "source_id": source_id,
        "project_key": project,
        "analysed_at": analysed_at,
        "repo_path": repo_path(project, repositories),
        "branch": branch,
        "pull_request": pull_request,
        "revision": revision,
        "gate_status": gate_status(raw_status),
        "raw_gate_status": raw_status,
        "failing_conditions": failing_conditions,
        "url": dashboard_url(server, project, branch, pull_request) if server else None,
    }
    # what a source does not say is left out, so it does not erase what the other one wrote
    for column, value in (
        ("analysis_key", analysis_key),
        ("project_version", version),
        ("ce_task_id", task_id),
    ):
        if value is not None:
            row[column] = value
    return row
