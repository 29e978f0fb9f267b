"""Explicit incident -> deployment links from trackers, resolved to a production deployment.

A tracker incident may name the change that caused it (`incident.linked_deployment`,
`linked_pipeline`, `linked_merge_request`, `linked_sha`: a PagerDuty change event, a Jira link to
a GitLab deployment, pipeline or MR, a Zentao build naming a release). Derive attributes an
incident with a resolved link to that deployment, whatever the time window says (DESIGN.md §4:
an explicit link wins); an incident whose link resolves to nothing is attributed to nothing (it
names a change that never reached production), as an unresolved GitLab/CDEvents
`deployment_external_id` is.

Resolution, in this order (the first kind the incident names decides):
1. deployment: a production deployment of the incident's service with that external id; a
   `tag:<name>` link (a Zentao bug found in a build of the release tagged <name>) names the
   production deployments from that ref, and when none ran from it (a team deploying from a
   branch) the next kinds decide (the build's commit);
2. pipeline: the production deployments of the service made by that pipeline;
3. merge request: its merge, squash or head commit, then as a commit;
4. commit: the production deployments of the service that brought the commit (deployment_change)
   or ran it (deployment.sha); a short sha matches by prefix.
With several candidates (regions, a redeploy), the one that finished last at or before the
incident opened; when none finished before it, the first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select, update

from warehouse.references import incident_names
from warehouse.schema import (
    Deployment,
    DeploymentChain,
    DeploymentChange,
    Incident,
    MergeRequest,
    Repo,
    Service,
)

TAG_LINK = "tag:"  # `linked_deployment` naming the deployments from a release tag
LINK_COLUMNS = (
    Incident.linked_deployment,
    Incident.linked_pipeline,
    Incident.linked_merge_request,
    Incident.linked_sha,
)


def linked_incidents(conn: Connection, services: Any = None) -> dict[int, int | None]:
    """incident id -> the production deployment id its explicit tracker link resolves to (None:
    it names a change no production deployment of its service carries), for every incident of a
    service (those `services`, a condition on `incident.service_id`, selects) that has a tracker
    link."""
    rows = conn.execute(
        select(Incident.id, Incident.service_id, Incident.opened_at, *LINK_COLUMNS).where(
            Incident.service_id.is_not(None) if services is None else services,
            or_(*(c.is_not(None) for c in LINK_COLUMNS)),
        )
    ).all()
    if not rows:
        return {}
    production = _production(conn, {r.service_id for r in rows})
    return {r.id: _resolve(conn, r, production.get(r.service_id, [])) for r in rows}


def _production(conn: Connection, services: Iterable[int]) -> dict[int, list[Any]]:
    """Production deployments of `services`: (id, external_id, pipeline, sha, ref, finished_at)."""
    found: dict[int, list[Any]] = defaultdict(list)
    for row in conn.execute(
        select(
            DeploymentChain.service_id,
            Deployment.id,
            Deployment.external_id,
            Deployment.pipeline_external_id,
            Deployment.sha,
            Deployment.ref,
            DeploymentChain.finished_at,
        )
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .where(DeploymentChain.is_production, DeploymentChain.service_id.in_(list(services)))
        .order_by(DeploymentChain.finished_at, Deployment.id)
    ):
        found[row.service_id].append(row)
    return found


def _resolve(conn: Connection, incident: Any, production: list[Any]) -> int | None:
    if incident.linked_deployment:
        link = incident.linked_deployment
        tag = link[len(TAG_LINK) :] if link.startswith(TAG_LINK) else None
        found = _pick(
            [d for d in production if (d.ref == tag if tag else d.external_id == link)],
            incident.opened_at,
        )
        if found is not None or not (tag and (incident.linked_pipeline or incident.linked_sha)):
            return found
        # no deployment ran from the tag's ref: the tag's commit (a Zentao build's) decides
    if incident.linked_pipeline:
        return _pick(
            [d for d in production if d.pipeline_external_id == incident.linked_pipeline],
            incident.opened_at,
        )
    sha = incident.linked_sha
    if incident.linked_merge_request:
        sha = _merge_request_sha(conn, incident.service_id, incident.linked_merge_request)
    if not sha:
        return None
    carrying = {d.id for d in production if d.sha and d.sha.startswith(sha)}
    ids = [d.id for d in production]
    for part in range(0, len(ids), 500):
        carrying.update(
            conn.execute(
                select(DeploymentChange.deployment_id).where(
                    DeploymentChange.deployment_id.in_(ids[part : part + 500]),
                    DeploymentChange.sha.startswith(sha, autoescape=True),
                )
            ).scalars()
        )
    return _pick([d for d in production if d.id in carrying], incident.opened_at)


def _pick(candidates: list[Any], opened: datetime) -> int | None:
    """The candidate that finished last at or before `opened`, else the first (module doc)."""
    if not candidates:
        return None
    before = [d for d in candidates if d.finished_at <= opened]
    return int((before[-1] if before else candidates[0]).id)


def _merge_request_sha(conn: Connection, service_id: int, link: str) -> str | None:
    """The commit a merge request brought (merge, squash, else head) — `path!iid` names its
    project, a bare iid the service's own repository."""
    path, _, iid = link.rpartition("!")
    if not iid.isdigit():
        return None
    query = select(
        MergeRequest.merge_commit_sha, MergeRequest.squash_commit_sha, MergeRequest.head_sha
    ).where(MergeRequest.iid == int(iid))
    if path:
        query = query.join(Repo, Repo.id == MergeRequest.repo_id).where(Repo.path == path)
    else:
        query = query.join(Service, Service.repo_id == MergeRequest.repo_id).where(
            Service.id == service_id
        )
    row = conn.execute(query.limit(1)).first()
    if row is None:
        return None
    return row.squash_commit_sha or row.merge_commit_sha or row.head_sha


def mark_duplicates(conn: Connection) -> dict[int, int]:
    """Count an incident recorded by several sources once (docs/METRICS.md#one-incident-many-
    records): incidents of the same service are one when the text of one names another
    (`incident.mentions`: a tracker key, a GitLab issue or PagerDuty incident URL, against the
    other's key and URL path), transitively. Of each group the counted one is the one with an
    explicit link (a tracker's or a deployment key), else the first opened, then the lowest id;
    the others get `duplicate_of` = its id (cleared when they are no longer named). Returns
    duplicate id -> counted id."""
    rows = conn.execute(
        select(
            Incident.id,
            Incident.service_id,
            Incident.key,
            Incident.url,
            Incident.mentions,
            Incident.opened_at,
            Incident.duplicate_of,
            Incident.deployment_external_id,
            *LINK_COLUMNS,
        ).where(Incident.service_id.is_not(None))
    ).all()
    named: dict[tuple[int, str], list[int]] = defaultdict(list)
    for r in rows:
        for name in incident_names(r.key, r.url):
            named[(r.service_id, name)].append(r.id)
    parent = {r.id: r.id for r in rows}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for r in rows:
        for mention in (r.mentions or "").split():
            for other in named.get((r.service_id, mention), []):
                if other != r.id:
                    parent[root(other)] = root(r.id)
    groups: dict[int, list[Any]] = defaultdict(list)
    for r in rows:
        groups[root(r.id)].append(r)
    found: dict[int, int] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        counted = min(
            members,
            key=lambda r: (
                not (r.deployment_external_id or any(getattr(r, c.key) for c in LINK_COLUMNS)),
                r.opened_at,
                r.id,
            ),
        )
        found.update({r.id: counted.id for r in members if r.id != counted.id})
    changed: dict[int | None, list[int]] = defaultdict(list)
    for r in rows:
        if r.duplicate_of != found.get(r.id):
            changed[found.get(r.id)].append(r.id)
    for duplicate_of, ids in changed.items():
        for start in range(0, len(ids), 500):
            conn.execute(
                update(Incident)
                .where(Incident.id.in_(ids[start : start + 500]))
                .values(duplicate_of=duplicate_of)
            )
    return found
