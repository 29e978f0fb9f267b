"""Zentao REST payloads (v1 `/api.php/v1`, and the v2 shapes where they differ) for the sandbox's
Zentao simulator: plain builders from values, no model of their own.

Shapes follow the Zentao API (../shared/fixtures/zentao holds the v2 examples the official SDK
ships, recorded on a demo server): v1 writes times as ISO 8601 UTC (`2026-08-19T09:38:05Z`) and
people as `{id, account, avatar, realname}`; v2 writes the server's local time
(`2026-08-19 17:38:05`, "" for none) and people as the account string. Lists are paged: v1
`{page, total, limit, <items>}`, v2 `{status, <items>, pager: {recTotal, recPerPage, pageID}}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

V1, V2 = "v1", "v2"
SERVER_ZONE = ZoneInfo("Asia/Shanghai")


def when(at: datetime | None, version: str = V1, zone: ZoneInfo = SERVER_ZONE) -> str | None:
    """A time as the API writes it: v1 zoned UTC (None for none), v2 local ("" for none)."""
    if at is None:
        return None if version == V1 else ""
    if version == V1:
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def person(account: str | None, version: str = V1, uid: int = 0) -> Any:
    """A person field: v1 an object, v2 the account."""
    if not account:
        return None if version == V1 else ""
    if version == V2:
        return account
    return {"id": uid, "account": account, "avatar": "", "realname": account}


def page(
    key: str, items: Sequence[Any], number: int, limit: int, total: int, version: str = V1
) -> dict[str, Any]:
    """One page of a list answer."""
    if version == V1:
        return {"page": number, "total": total, "limit": limit, key: list(items)}
    return {
        "status": "success",
        key: list(items),
        "pager": {"recTotal": total, "recPerPage": limit, "pageID": number},
    }


def token(value: str) -> dict[str, Any]:
    """The answer of `POST /tokens` (v1, 201) and `POST /users/login` (v2)."""
    return {"token": value} if value else {"status": "fail"}


def product(
    pid: int, name: str, code: str, created_at: datetime, version: str = V1
) -> dict[str, Any]:
    """A product (产品): one per service that the organisation tracks in Zentao."""
    return {
        "id": pid,
        "program": 0,
        "name": name,
        "code": code,
        "type": "normal",
        "status": "normal",
        "desc": "",
        "PO": person("po", version),
        "acl": "open",
        "createdBy": person("admin", version),
        "createdDate": when(created_at, version),
        "deleted": 0 if version == V2 else False,
    }


def action(
    aid: int,
    object_type: str,
    object_id: int,
    verb: str,
    at: datetime,
    actor: str,
    history: Sequence[tuple[str, str, str]] = (),
    version: str = V1,
) -> dict[str, Any]:
    """One entry of an object's actions (its history: `(field, old, new)` changes)."""
    return {
        "id": aid,
        "objectType": object_type,
        "objectID": object_id,
        "actor": actor,
        "action": verb,
        "date": when(at, version),
        "comment": "",
        "extra": "",
        "history": [
            {"id": aid * 10 + i, "action": aid, "field": f, "old": old, "new": new, "diff": ""}
            for i, (f, old, new) in enumerate(history)
        ],
    }


def bug(
    *,
    bid: int,
    product_id: int,
    title: str,
    status: str,
    severity: int,
    pri: int,
    bug_type: str,
    module: int,
    opened_by: str,
    opened_at: datetime,
    opened_build: str,
    edited_at: datetime | None,
    resolved_at: datetime | None = None,
    closed_at: datetime | None = None,
    activated_count: int = 0,
    story: int = 0,
    confirmed: int = 0,
    steps: str = "",
    actions: Sequence[dict[str, Any]] | None = None,
    version: str = V1,
) -> dict[str, Any]:
    """A bug; `actions` only in the detail answer (`GET /bugs/{id}`)."""
    payload: dict[str, Any] = {
        "id": bid,
        "project": 0,
        "product": product_id,
        "branch": 0,
        "module": module,
        "execution": 0,
        "plan": 0,
        "story": story,
        "storyVersion": 1 if story else 0,
        "title": title,
        "keywords": "",
        "severity": severity,
        "pri": pri,
        "type": bug_type,
        "steps": steps,
        "status": status,
        "subStatus": "",
        "confirmed": confirmed,
        "activatedCount": activated_count,
        "openedBy": person(opened_by, version),
        "openedDate": when(opened_at, version),
        "openedBuild": opened_build,
        "assignedTo": person(opened_by, version),
        "resolvedBy": person(opened_by if resolved_at else None, version),
        "resolution": "fixed" if resolved_at else "",
        "resolvedBuild": "",
        "resolvedDate": when(resolved_at, version),
        "closedBy": person(opened_by if closed_at else None, version),
        "closedDate": when(closed_at, version),
        "lastEditedBy": person(opened_by if edited_at else None, version),
        "lastEditedDate": when(edited_at, version),
        "deleted": "0",
    }
    if actions is not None:
        payload["actions"] = list(actions)
    return payload


def story(
    *,
    sid: int,
    product_id: int,
    title: str,
    status: str,
    stage: str,
    pri: int,
    module: int,
    opened_by: str,
    opened_at: datetime,
    edited_at: datetime | None,
    released_at: datetime | None = None,
    closed_at: datetime | None = None,
    spec: str = "",
    actions: Sequence[dict[str, Any]] | None = None,
    version: str = V1,
) -> dict[str, Any]:
    """A story (需求, a requirement); `actions` only in the detail answer."""
    payload: dict[str, Any] = {
        "id": sid,
        "parent": 0,
        "product": product_id,
        "branch": 0,
        "module": module,
        "plan": "",
        "source": "",
        "title": title,
        "spec": spec,
        "type": "story",
        "category": "feature",
        "pri": pri,
        "estimate": 1,
        "status": status,
        "subStatus": "",
        "stage": stage,
        "openedBy": person(opened_by, version),
        "openedDate": when(opened_at, version),
        "assignedTo": person(opened_by, version),
        "lastEditedBy": person(opened_by if edited_at else None, version),
        "lastEditedDate": when(edited_at, version),
        "releasedDate": when(released_at, version),
        "closedBy": person(opened_by if closed_at else None, version),
        "closedDate": when(closed_at, version),
        "closedReason": "done" if closed_at else "",
        "version": 1,
        "deleted": "0",
    }
    if actions is not None:
        payload["actions"] = list(actions)
    return payload


def build(
    bid: int,
    product_id: int,
    execution: int,
    name: str,
    at: datetime,
    scm_path: str,
    version: str = V1,
) -> dict[str, Any]:
    """A build (版本): what an execution produced, by its scm path."""
    return {
        "id": bid,
        "project": 0,
        "product": product_id,
        "branch": 0,
        "execution": execution,
        "name": name,
        "scmPath": scm_path,
        "filePath": "",
        "date": at.astimezone(SERVER_ZONE).strftime("%Y-%m-%d"),
        "stories": "",
        "bugs": "",
        "builder": person("admin", version),
        "desc": "",
        "deleted": "0",
    }


def release(
    rid: int, product_id: int, name: str, build_ids: Sequence[int], at: datetime, version: str = V1
) -> dict[str, Any]:
    """A release (发布) shipping builds; its name is the release tag."""
    return {
        "id": rid,
        "product": product_id,
        "branch": 0,
        "build": ",".join(str(b) for b in build_ids),
        "builds": [{"id": b, "name": f"build-{b}"} for b in build_ids],
        "name": name,
        "date": at.astimezone(SERVER_ZONE).strftime("%Y-%m-%d"),
        "releasedDate": when(at, version),
        "status": "normal",
        "desc": "",
        "deleted": "0",
    }


def execution(
    eid: int, project: int, name: str, begin: datetime, end: datetime, status: str
) -> dict[str, Any]:
    """An execution (执行: a sprint or stage)."""
    return {
        "id": eid,
        "project": project,
        "name": name,
        "type": "sprint",
        "status": status,
        "begin": begin.astimezone(SERVER_ZONE).strftime("%Y-%m-%d"),
        "end": end.astimezone(SERVER_ZONE).strftime("%Y-%m-%d"),
        "deleted": "0",
    }
