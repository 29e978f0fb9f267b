"""A PagerDuty REST API v2 simulator over real HTTP, serving the incidents of the sandbox's
trackers (`PagerDutyData`, built from the tracker model by `sandbox.trackers`' callers).

Routes (GET): `/services`, `/incidents` (`service_ids[]` on the incident's service at the
simulator's instant, `since`/`until` on `created_at`, at most 6 months apart, `statuses[]`,
`sort_by=created_at:asc|desc`), `/incidents/{id}` (`{"incident": ...}`), `/incidents/{id}/
log_entries`, `/incidents/{id}/related_change_events`. Classic pagination (`limit` up to 100, `offset`,
`more`, `total` with `total=true`); `offset + limit` over 10,000 answers 400 as PagerDuty does
(for `/incidents`, over `offset_cap`, which a test may lower). Auth: `Authorization: Token
token=<key>`, else 401. What an incident shows depends on the simulator's instant (`advance`): an
incident not yet created is absent, an acknowledgement or resolution not yet made is not shown,
an incident reassigned to another service (`moved_from`, `moved_at`: PagerDuty's "reassign an
incident's service", made while it is open) shows its first service until then, and its
`updated_at` moves with the reassignment (no log entry is served for it).
`corrupt(id)` serves a malformed incident in the lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox import pagerduty_payloads as pd
from sandbox.server import HTTPError, Request, Response, Router

MAX_RANGE = timedelta(days=183)  # "the maximum range is 6 months"
OFFSET_CAP = 10_000


@dataclass
class PagerDutyIncident:
    """An incident as the simulator serves it."""

    id: str
    number: int
    title: str
    service_id: str
    created_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    urgency: str = "high"
    priority: str | None = None
    # change events PagerDuty correlated with it (built payloads, `sandbox.pagerduty_payloads`)
    change_events: list[dict[str, Any]] = field(default_factory=list)
    moved_from: str | None = None  # its service until `moved_at`, then `service_id`
    moved_at: datetime | None = None

    def service_at(self, at: datetime) -> str:
        """The incident's service at `at`."""
        if self.moved_from is not None and self.moved_at is not None and at < self.moved_at:
            return self.moved_from
        return self.service_id


@dataclass
class PagerDutyData:
    """The account: services (id -> name) and their incidents."""

    services: dict[str, str]
    incidents: list[PagerDutyIncident]


def _bad(message: str) -> Response:
    return Response(
        {"error": {"message": "Invalid Input Provided", "code": 2001, "errors": [message]}}, 400
    )


def parse_when(value: str, name: str) -> datetime:
    """An ISO 8601 time parameter; 400 otherwise."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPError(400, f"{name} is not a date: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class PagerDutySimulator:
    """Serves `data` as of `advance(at)`; `token` is the REST API key."""

    def __init__(
        self,
        data: PagerDutyData,
        token: str,
        at: datetime | None = None,
        offset_cap: int = OFFSET_CAP,
    ) -> None:
        self.data, self.token, self.offset_cap = data, token, offset_cap
        self.at = at or datetime.now(UTC)
        self.corruptions: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.router = Router()
        r = self.router
        r.add("/services", self.services)
        r.add("/incidents", self.incidents)
        r.add("/incidents/{id}", self.one_incident)
        r.add("/incidents/{id}/log_entries", self.log_entries)
        r.add("/incidents/{id}/related_change_events", self.related_change_events)

    def advance(self, at: datetime) -> None:
        """Serve the account as it is at `at`."""
        self.at = at

    def authorised(self, request: Request) -> bool:
        """Whether the request carries the API key (`Token token=...`)."""
        return request.headers.get("authorization", "") == f"Token token={self.token}"

    def corrupt(self, incident_id: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Serve incident `incident_id` changed by `change` (a malformed payload)."""
        self.corruptions[incident_id] = change

    # -- payloads -----------------------------------------------------------------------------

    def _visible(self, i: PagerDutyIncident) -> bool:
        return i.created_at <= self.at

    def _shown(self, when: datetime | None) -> datetime | None:
        return when if when is not None and when <= self.at else None

    def payload(self, i: PagerDutyIncident) -> dict[str, Any]:
        """The incident as listed, at the simulator's instant."""
        service = i.service_at(self.at)
        body = pd.incident(
            iid=i.id,
            number=i.number,
            title=i.title,
            created_at=i.created_at,
            acknowledged_at=self._shown(i.acknowledged_at),
            resolved_at=self._shown(i.resolved_at),
            service_id=service,
            service_name=self.data.services.get(service, service),
            urgency=i.urgency,
            priority=i.priority,
            moved_at=self._shown(i.moved_at) if i.moved_from is not None else None,
        )
        if i.id in self.corruptions:
            self.corruptions[i.id](body)
        return body

    def _incident(self, request: Request) -> PagerDutyIncident:
        found = next(
            (i for i in self.data.incidents if i.id == request.params["id"] and self._visible(i)),
            None,
        )
        if found is None:
            raise HTTPError(404, "Not Found")
        return found

    # -- routes -------------------------------------------------------------------------------

    def _page(
        self, request: Request, key: str, items: Sequence[Any], cap: int = OFFSET_CAP
    ) -> Response:
        try:
            limit = min(int(request.query.get("limit", "25")), 100)
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return _bad("limit and offset must be integers")
        if limit < 1 or offset < 0:
            return _bad("limit and offset must be positive")
        if offset + limit > cap:
            return _bad(f"Offset+limit exceeds maximum allowed value of {cap}")
        total = len(items) if request.query.get("total") == "true" else None
        page = list(items[offset : offset + limit])
        return Response(pd.page(key, page, limit, offset, offset + limit < len(items), total))

    def services(self, request: Request) -> Response:
        items = [
            pd.reference("service", sid, name, "services") | {"type": "service", "name": name}
            for sid, name in sorted(self.data.services.items())
        ]
        return self._page(request, "services", items)

    def incidents(self, request: Request) -> Response:
        until = parse_when(request.query["until"], "until") if "until" in request.query else self.at
        since = (
            parse_when(request.query["since"], "since")
            if "since" in request.query
            else until - timedelta(days=30)
        )
        if until - since > MAX_RANGE:
            return _bad("Date Range must be less than 6 months")
        wanted = set(request.query_multi.get("service_ids[]", []))
        statuses = set(request.query_multi.get("statuses[]", []))
        chosen = [
            i
            for i in self.data.incidents
            if self._visible(i)
            and since <= i.created_at < until
            and (not wanted or i.service_at(self.at) in wanted)
        ]
        desc = request.query.get("sort_by", "created_at:asc").endswith(":desc")
        chosen.sort(key=lambda i: (i.created_at, i.id), reverse=desc)
        items = [self.payload(i) for i in chosen]
        if statuses:
            items = [p for p in items if p.get("status") in statuses]
        return self._page(request, "incidents", items, self.offset_cap)

    def one_incident(self, request: Request) -> Response:
        """One incident, as of the simulator's instant."""
        return Response({"incident": self.payload(self._incident(request))})

    def log_entries(self, request: Request) -> Response:
        i = self._incident(request)
        entries = [
            pd.log_entry(f"T{i.id}", "trigger", i.created_at, i.id, "Triggered through the API")
        ]
        for kind, when in (("acknowledge", i.acknowledged_at), ("resolve", i.resolved_at)):
            if self._shown(when) is not None:
                assert when is not None
                entries.append(pd.log_entry(f"{kind[0].upper()}{i.id}", kind, when, i.id, kind))
        entries.sort(key=lambda e: e["created_at"], reverse=True)  # newest first, as PagerDuty
        return self._page(request, "log_entries", entries)

    def related_change_events(self, request: Request) -> Response:
        i = self._incident(request)
        return Response(
            pd.page("change_events", i.change_events, 0, 0, False, None)
            | {"limit": None, "offset": None}
        )


def service_id(name: str, n: int) -> str:
    """The PagerDuty id of the sandbox service `name` (the `n`th)."""
    return f"PSV{n:04d}"


def from_trackers(org: Any) -> PagerDutyData:
    """The PagerDuty account of the organisation: a PagerDuty service per service, and every
    tracker incident paged through PagerDuty (`TrackerItem.paged`), with a change event for each
    deploy before it (a build event naming nothing, and, for an incident with an explicit link,
    the deploy naming the deployment or pipeline it links); an incident its tracker item moved to
    another service (`TrackerItem.moved_from`) is reassigned to it at the same instant."""
    ids = {s.name: service_id(s.name, n) for n, s in enumerate(org.services, start=1)}
    incidents = []
    for item in org.trackers.items:
        if item.kind != "incident" or not item.paged or item.service is None:
            continue
        moves = item.transitions
        acknowledged = next((t.at for t in moves if t.to_category != "todo"), None)
        resolved = item.incident.closed_at if item.incident is not None else item.closed_at
        sid = ids[item.service]
        events = [
            pd.change_event(
                event_id=f"CE{item.id}B",
                summary=f"Build passed: {item.service}",
                at=item.created_at - timedelta(minutes=45),
                service_id=sid,
                details={"build_state": "passed"},
                reason="related_service",
            )
        ]
        if item.link is not None:
            kind, value = item.link
            events.append(
                pd.change_event(
                    event_id=f"CE{item.id}D",
                    summary=f"Deploy {item.service} to production",
                    at=item.created_at - timedelta(minutes=20),
                    service_id=sid,
                    details={f"{kind}_id": value},
                    reason="most_recent",
                )
            )
        moved = item.moved_from is not None and item.moved_at is not None
        incidents.append(
            PagerDutyIncident(
                id=f"PI{item.id}",
                number=item.id,
                title=item.title,
                service_id=sid,
                created_at=item.created_at,
                acknowledged_at=acknowledged,
                resolved_at=resolved,
                urgency="high",
                priority="P2",
                change_events=events,
                moved_from=ids[item.moved_from] if moved else None,
                moved_at=item.moved_at if moved else None,
            )
        )
    incidents.sort(key=lambda i: (i.created_at, i.id))
    return PagerDutyData({sid: name for name, sid in ids.items()}, incidents)
