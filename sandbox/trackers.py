"""Trackers in the generated organisation: every team files its work in Jira or Zentao (teams
alternate, Jira first), on-call pages through PagerDuty (DESIGN.md §9, issue 18).

`add_trackers(org)` is a post-pass with its own random stream and ids of its own (they start at
`FIRST_ID`), so no other random stream, id or ground truth of the organisation changes; the one
thing it touches is the title of the merge requests that reference a work item (`PAY-12 ...` in
Jira teams, `... (story #12)` in Zentao teams), which no other truth reads.

What it files, per team and tracker project (Jira: project key from the team; Zentao: a product
per team):
- requirements: about 40% of merged MRs reference one (an MR in four references the previous
  MR's requirement instead: two MRs for one requirement); created before the MR's first commit,
  started with it, done after it merged;
- bugs: a few per service, filed against the MR that caused them (their description links it:
  the tracker's own link), about 40% while it was in review (caught before production), the
  others after it merged; one reopened bug per project (done, then open again);
- tasks: a few, linked to nothing;
- incidents: every incident of the organisation is also filed in its team's tracker (the same
  times), half of them paged through PagerDuty too (and at least one service pages twice:
  when the draws page none twice, the two closest incidents of the service with the most are
  paged); about 30% of those of GitLab-built services
  carry an explicit link to the deployment (or pipeline) the window attributes them to, so the
  organisation's ground truth holds whichever source a sync reads;
- Zentao builds and releases: about half of the Zentao incidents of GitLab-built services that
  carry no other link and that the window attributes to a production deployment whose commit no
  other production deployment ran are found in a build (`openedBuild`) of a release named by a
  version tag, whose scm path names that deployment's commit (their own random stream: nothing
  else changes); the deployment is the incident's ground truth;
- Jira remote links: about 30% of the Jira requirements carry a remote link (the development
  panel's kind: `object.url` a GitLab commit URL) to the commit their first MR merged (its own
  random stream), which reaches production with that MR: the tracker's own link;
- every GitLab incident's description names its tracker records (the Jira key or Zentao
  `bug #n`, the PagerDuty incident URL when paged): one incident, several records;
- unmapped rows: per project, two incidents and two tasks filed with no component/module, which
  no mapping rule matches;
- incidents moved to another service after they were opened (`_reassign`, the last pass, a
  random stream of its own, history ids after every other): `REASSIGNED` Jira incidents of the
  organisation (one paged through PagerDuty and one not when there are such, else two of one
  kind) are filed first under
  a teammate service A whose production deployment the window would blame for them (any teammate
  for one with an explicit link to B's deployment: at A it names none of A's), and moved to
  their own service B while open (triage found the cause elsewhere): Jira changes the issue's
  component (a history entry, `updated` moves), PagerDuty reassigns the incident's service
  (`service` and `updated_at`). Before the move they count for A, from it on for B; at the
  organisation's `now` everything is as it was, so no other truth moves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from sandbox.clock import ms
from sandbox.model import Incident, MergeRequest, Organisation, Service
from sandbox.pagerduty_payloads import WEB as PAGERDUTY_WEB
from sandbox.reference import (
    CommitGraph,
    DeploymentTruth,
    attribute_incidents,
    service_production,
    tracked,
)

FIRST_ID = 700_000  # tracker ids: apart from the organisation's own
REQUIREMENT_SHARE = 0.4
LINKED_INCIDENTS = 0.3
PAGED_SHARE = 0.5
REMOTE_LINKED = 0.3  # Jira requirements with a remote link to their MR's commit (own stream)
BUILD_LINKED = 0.5  # Zentao incidents without a link named by their build (own random stream)
FIRST_BUILD = 1  # Zentao build and release ids
UNMAPPED = 2  # incidents and tasks per project with no service
REASSIGNED = 2  # incidents moved to another service while open (own random stream)

# (category, status name) per tracker: the workflow each tracker's simulator serves
STATUSES = {
    "jira": {"todo": "To Do", "in_progress": "In Progress", "done": "Done"},
    "zentao": {"todo": "active", "in_progress": "doing", "done": "closed"},
}
REOPENED = {"jira": "Reopened", "zentao": "active"}


@dataclass(slots=True)
class TrackerTransition:
    id: int
    at: datetime
    from_category: str | None
    to_category: str
    from_status: str | None
    to_status: str


@dataclass(frozen=True, slots=True)
class ZentaoBuild:
    """A Zentao build (版本) of a release: the release's name is a version tag, the build's scm
    path names the commit the tag points at (the commit of the production deployment it names)."""

    id: int
    release_id: int
    tag: str
    sha: str
    path: str  # the service's project path
    at: datetime  # when it was built and released: the deployment's finish


@dataclass(slots=True)
class TrackerItem:
    """A work item or an incident in a tracker project."""

    id: int
    tracker: str  # jira | zentao
    project: str  # Jira project key, Zentao product name
    number: int  # the number in its key (Jira) or its id (Zentao)
    kind: str  # requirement | bug | task | incident
    title: str
    team: str
    service: str | None  # None: filed without a component/module (unmapped)
    created_at: datetime
    author: str
    transitions: list[TrackerTransition] = field(default_factory=list)
    merge_requests: list[tuple[str, int]] = field(default_factory=list)  # referenced by MRs
    caused_by: tuple[str, int] | None = None  # a bug's MR (the tracker's own link)
    incident: Incident | None = None  # the organisation's incident it files
    link: tuple[str, str] | None = None  # an incident's explicit link: (deployment|pipeline, id)
    linked_deployment: int | None = None  # the deployment that link names (ground truth)
    paged: bool = False  # also paged through PagerDuty
    build: ZentaoBuild | None = None  # Zentao: the build its `openedBuild` names (an explicit link)
    remote_commits: list[tuple[str, str]] = field(default_factory=list)  # Jira: (path, sha)
    # filed under `moved_from` first, moved to `service` at `moved_at` (`_reassign`); `move_id`
    # is the id of the Jira history entry of the move
    moved_from: str | None = None
    moved_at: datetime | None = None
    move_id: int | None = None

    def service_at(self, at: datetime) -> str | None:
        """The service the item is filed under at `at`."""
        if self.moved_at is not None and at < self.moved_at:
            return self.moved_from
        return self.service

    @property
    def key(self) -> str:
        """`PAY-12` (Jira); `story-12`, `bug-45`, `task-7` (Zentao, as references name them)."""
        if self.tracker == "jira":
            return f"{self.project}-{self.number}"
        return f"{ZENTAO_KIND.get(self.kind, self.kind)}-{self.number}"

    @property
    def category(self) -> str:
        return self.transitions[-1].to_category if self.transitions else "todo"

    @property
    def status(self) -> str:
        return (
            self.transitions[-1].to_status if self.transitions else STATUSES[self.tracker]["todo"]
        )

    @property
    def updated_at(self) -> datetime:
        moved = [self.moved_at] if self.moved_at is not None else []
        return max([self.created_at, *(t.at for t in self.transitions), *moved])

    @property
    def closed_at(self) -> datetime | None:
        return self.transitions[-1].at if self.category == "done" and self.transitions else None


ZENTAO_KIND = {"requirement": "story", "bug": "bug", "task": "task", "incident": "bug"}


@dataclass(slots=True)
class Trackers:
    """Every team's tracker project and what is filed in it."""

    projects: dict[str, tuple[str, str]]  # team -> (tracker, project)
    items: list[TrackerItem] = field(default_factory=list)

    def of(self, tracker: str) -> list[TrackerItem]:
        """The items filed in `tracker`, by id."""
        return [i for i in self.items if i.tracker == tracker]


def project_key(team: str) -> str:
    """A team's Jira project key: its name's first three letters, upper case."""
    return team[:3].upper()


class _Filer:
    def __init__(self, org: Organisation, rng: random.Random) -> None:
        self.org, self.rng = org, rng
        self.next_id = FIRST_ID
        self.numbers: dict[str, int] = {}
        self.builds = 0
        self.trackers = Trackers(
            {
                t.name: (
                    ("jira", project_key(t.name)) if i % 2 == 0 else ("zentao", f"{t.name}产品")
                )
                for i, t in enumerate(org.teams)
            }
        )

    def ident(self) -> int:
        self.next_id += 1
        return self.next_id

    def item(
        self, team: str, service: str | None, kind: str, title: str, at: datetime, author: str
    ) -> TrackerItem:
        tracker, project = self.trackers.projects[team]
        counter = project if tracker == "jira" else f"zentao/{ZENTAO_KIND[kind]}"
        self.numbers[counter] = self.numbers.get(counter, 0) + 1
        item = TrackerItem(
            self.ident(),
            tracker,
            project,
            self.numbers[counter],
            kind,
            title,
            team,
            service,
            ms(at),
            author,
        )
        self.trackers.items.append(item)
        return item

    def move(
        self, item: TrackerItem, at: datetime, category: str, status: str | None = None
    ) -> None:
        names = STATUSES[item.tracker]
        if max(at, item.updated_at) >= self.org.now:
            return  # has not happened yet
        item.transitions.append(
            TrackerTransition(
                self.ident(),
                ms(max(at, item.updated_at)),
                item.category if item.transitions else "todo",
                category,
                item.status,
                status or names[category],
            )
        )


def add_trackers(org: Organisation) -> Trackers:
    """File the organisation's work in trackers (module docstring); returns them."""
    filer = _Filer(org, random.Random(f"{org.seed}/trackers/{org.size}"))
    # phase by phase, each service with a random stream of its own: the MR titles a phase
    # changes depend on that service's merge requests alone (not on migrations, regions, ...)
    for phase in (_requirements, _bugs_and_tasks, _incidents):
        for service in org.services:
            filer.rng = random.Random(f"{org.seed}/trackers/{phase.__name__}/{service.name}")
            phase(filer, service)
    _page_twice(filer.trackers)
    for service in org.services:
        filer.rng = random.Random(f"{org.seed}/trackers/builds/{service.name}")
        _builds(filer, service)
        filer.rng = random.Random(f"{org.seed}/trackers/remote/{service.name}")
        _remote_links(filer, service)
    _name_records(filer.trackers)
    filer.rng = random.Random(f"{org.seed}/trackers/{org.size}/unmapped")
    for team in org.teams:
        _unmapped(filer, team.name)
    filer.rng = random.Random(f"{org.seed}/trackers/{org.size}/reassigned")
    _reassign(filer)
    return filer.trackers


def _requirements(filer: _Filer, service: Service) -> None:
    rng = filer.rng
    previous: TrackerItem | None = None
    for mr in sorted(service.merge_requests, key=lambda m: m.iid):
        if mr.merged_at is None or rng.random() >= REQUIREMENT_SHARE:
            continue
        if previous is not None and rng.random() < 0.25:
            item = previous  # a second MR for the same requirement
        else:
            created = mr.first_commit_at - timedelta(hours=rng.uniform(2, 120))
            item = filer.item(
                service.team,
                service.name,
                "requirement",
                f"{service.name}: {mr.title.lower()}",
                created,
                mr.author.username,
            )
            filer.move(
                item, mr.first_commit_at - timedelta(minutes=rng.uniform(0, 90)), "in_progress"
            )
        item.merge_requests.append((service.name, mr.iid))
        _reference(item, mr)
        if item.category != "done" or item.transitions[-1].at < mr.merged_at:
            if item.category == "done":
                item.transitions.pop()  # done again after its next MR merged
            filer.move(item, mr.merged_at + timedelta(hours=rng.uniform(1, 48)), "done")
        previous = item


def _reference(item: TrackerItem, mr: MergeRequest) -> None:
    """Name the work item in the MR's title, as teams do."""
    if item.tracker == "jira":
        mr.title = f"{item.key} {mr.title}"
    else:
        mr.title = f"{mr.title} (story #{item.number})"


def _bugs_and_tasks(filer: _Filer, service: Service) -> None:
    rng = filer.rng
    merged = [m for m in service.merge_requests if m.merged_at is not None]
    for _ in range(rng.randint(2, 4)):
        if not merged:
            break
        cause = rng.choice(merged)
        assert cause.merged_at is not None
        caught = rng.random() < 0.4  # found in review or test, before the MR shipped
        at = (
            cause.created_at + (cause.merged_at - cause.created_at) * rng.uniform(0.1, 0.9)
            if caught
            else cause.merged_at + timedelta(hours=rng.uniform(1, 24 * 10))
        )
        if at >= filer.org.now:
            continue
        bug = filer.item(
            service.team,
            service.name,
            "bug",
            f"{service.name}: regression after !{cause.iid}",
            at,
            cause.author.username,
        )
        bug.caused_by = (service.path, cause.iid)
        fixed = at + timedelta(hours=rng.uniform(2, 72))
        if fixed < filer.org.now:
            filer.move(bug, at + timedelta(hours=rng.uniform(0.2, 2)), "in_progress")
            filer.move(bug, fixed, "done")
    for n in range(rng.randint(1, 3)):
        at = filer.org.start + timedelta(
            hours=rng.uniform(0, (filer.org.now - filer.org.start).total_seconds() / 3600 - 1)
        )
        task = filer.item(
            service.team, service.name, "task", f"{service.name}: chore {n + 1}", at, "ops"
        )
        if rng.random() < 0.5:
            filer.move(task, at + timedelta(hours=rng.uniform(1, 20)), "in_progress")


def reopen_one(filer: _Filer, team: str) -> None:
    """Reopen the team's first done bug: done, then open again (and back in progress)."""
    bug = next(
        (
            i
            for i in filer.trackers.items
            if i.team == team and i.kind == "bug" and i.category == "done"
        ),
        None,
    )
    if bug is None:
        return
    done = bug.transitions[-1].at
    if done + timedelta(hours=30) >= filer.org.now:
        return
    filer.move(bug, done + timedelta(hours=24), "todo", REOPENED[bug.tracker])
    filer.move(bug, done + timedelta(hours=26), "in_progress")


def _incidents(filer: _Filer, service: Service) -> None:
    rng = filer.rng
    attributed: dict[int, int | None] = {}
    if service.builder == "gitlab" and service.incidents:
        production = service_production(service, CommitGraph(service))
        attributed = attribute_incidents(production, tracked(service))
        by_id = {d.id: d for d in service.deployments}
    for incident in sorted(service.incidents, key=lambda i: i.id):
        item = filer.item(
            service.team,
            service.name,
            "incident",
            incident.title,
            incident.created_at,
            incident.author.username,
        )
        item.incident = incident
        # the same draws for every incident, so the stream does not shift with what else the
        # service has (a migration sharing the pipeline, an unattributed incident)
        paged, linked, by_pipeline = rng.random(), rng.random(), rng.random()
        acknowledged = incident.created_at + timedelta(minutes=rng.uniform(2, 30))
        item.paged = paged < PAGED_SHARE
        target = attributed.get(incident.id)
        if target is not None and linked < LINKED_INCIDENTS:
            deployment = by_id[target]
            shared = [d for d in service.deployments if d.pipeline.id == deployment.pipeline.id]
            if len(shared) == 1 and by_pipeline < 0.3:
                item.link = ("pipeline", str(deployment.pipeline.id))
            else:
                item.link = ("deployment", str(deployment.id))
            item.linked_deployment = target
        filer.move(item, acknowledged, "in_progress")
        if incident.closed_at is not None:
            item.transitions.append(
                TrackerTransition(
                    filer.ident(),
                    ms(incident.closed_at),
                    "in_progress",
                    "done",
                    item.status,
                    STATUSES[item.tracker]["done"],
                )
            )


def _page_twice(trackers: Trackers) -> None:
    """Make sure one service pages twice (module docstring): no random draw, so nothing else
    moves."""
    by_service: dict[str, list[TrackerItem]] = {}
    for item in trackers.items:
        if item.incident is not None and item.service is not None:
            by_service.setdefault(item.service, []).append(item)
    if not by_service or any(sum(i.paged for i in v) >= 2 for v in by_service.values()):
        return
    most = max(by_service.values(), key=len)
    busiest = sorted(most, key=lambda i: i.created_at)
    if len(busiest) < 2:
        return
    first, second = min(pairwise(busiest), key=lambda p: p[1].created_at - p[0].created_at)
    first.paged = second.paged = True


def _builds(filer: _Filer, service: Service) -> None:
    """Zentao builds and releases naming the deployments some incidents are found in (module
    docstring); ids of their own, no other random stream touched."""
    rng = filer.rng
    items = [
        i
        for i in filer.trackers.items
        if i.tracker == "zentao"
        and i.kind == "incident"
        and i.service == service.name
        and i.link is None
        and i.incident is not None
    ]
    if service.builder != "gitlab" or not items:
        return
    production = service_production(service, CommitGraph(service))
    attributed = attribute_incidents(production, tracked(service))
    ran: dict[str, list[int]] = {}
    for d in production:
        ran.setdefault(d.sha, []).append(d.id)
    by_id = {d.id: d for d in production}
    for item in items:
        assert item.incident is not None
        target = attributed.get(item.incident.id)
        if target is None or len(ran[by_id[target].sha]) != 1 or rng.random() >= BUILD_LINKED:
            continue
        deployment = by_id[target]
        filer.builds += 1
        item.build = ZentaoBuild(
            FIRST_BUILD + filer.builds,
            FIRST_BUILD + filer.builds,
            f"v1.{filer.builds}.{rng.randint(0, 9)}",
            deployment.sha,
            service.path,
            deployment.finished_at,
        )
        item.linked_deployment = target


def _remote_links(filer: _Filer, service: Service) -> None:
    """Jira requirements' remote links to the commit their first MR merged (module docstring)."""
    by_iid = {m.iid: m for m in service.merge_requests}
    for item in filer.trackers.items:
        if item.tracker != "jira" or item.kind != "requirement" or item.service != service.name:
            continue
        mr = by_iid.get(item.merge_requests[0][1]) if item.merge_requests else None
        if mr is None or filer.rng.random() >= REMOTE_LINKED:
            continue
        sha = mr.squash_commit_sha or mr.merge_commit_sha or mr.head_sha
        item.remote_commits.append((service.path, sha))


def _name_records(trackers: Trackers) -> None:
    """Every GitLab incident filed in a tracker names its records there, as teams do: the Jira
    key or Zentao `bug #n`, and the PagerDuty incident's URL when it was paged (one incident,
    several records: counted once, docs/METRICS.md)."""
    for item in trackers.items:
        if item.incident is None:
            continue
        named = item.key if item.tracker == "jira" else f"Zentao bug #{item.number}"
        paged = f"; paged: {PAGERDUTY_WEB}/incidents/PI{item.id}" if item.paged else ""
        item.incident.tracked_in = f"Tracked in {named}{paged}."


def _unmapped(filer: _Filer, team: str) -> None:
    rng = filer.rng
    span = (filer.org.now - filer.org.start).total_seconds() / 3600
    for n in range(UNMAPPED):
        at = filer.org.start + timedelta(hours=rng.uniform(0, span - 48))
        incident = filer.item(team, None, "incident", f"{team}: alert storm {n + 1}", at, "oncall")
        filer.move(incident, at + timedelta(minutes=rng.uniform(2, 30)), "in_progress")
        filer.move(incident, at + timedelta(hours=rng.uniform(1, 12)), "done")
        at = filer.org.start + timedelta(hours=rng.uniform(0, span - 1))
        filer.item(team, None, "task", f"{team}: triage inbox {n + 1}", at, "ops")
    reopen_one(filer, team)


def _reassign(filer: _Filer) -> None:
    """Move `REASSIGNED` Jira incidents to their own service while open, from a teammate service
    the window blames them on (module docstring)."""
    org, rng = filer.org, filer.rng
    by_name = {s.name: s for s in org.services}
    blamed: dict[str, list[DeploymentTruth]] = {}

    def production(name: str) -> list[DeploymentTruth]:
        if name not in blamed:
            service = by_name[name]
            blamed[name] = service_production(service, CommitGraph(service))
        return blamed[name]

    def eligible(name: str | None) -> bool:
        service = by_name.get(name or "")
        return service is not None and service.builder == "gitlab" and not service.deploy_name

    candidates = [
        i
        for i in filer.trackers.items
        if i.kind == "incident"
        and i.tracker == "jira"
        and i.incident is not None
        and i.incident.closed_at is not None
        and i.incident.closed_at > i.created_at + timedelta(hours=1)
        and eligible(i.service)
    ]
    teams = {t.name: t.services for t in org.teams}

    def move(item: TrackerItem) -> bool:
        assert item.incident is not None and item.incident.closed_at is not None
        others = [s for s in teams[item.team] if s != item.service and eligible(s)]
        blame = [
            s
            for s in others
            if attribute_incidents(production(s), [item.incident])[item.incident.id]
        ]
        if not blame:
            return False
        opened, closed = item.created_at, item.incident.closed_at
        item.moved_from = rng.choice(blame)
        item.moved_at = ms(opened + (closed - opened) * rng.uniform(0.3, 0.7))
        item.move_id = filer.ident()
        return True

    paged = [i for i in candidates if i.paged]
    unpaged = [i for i in candidates if not i.paged]
    rng.shuffle(paged)
    rng.shuffle(unpaged)
    paged.sort(key=lambda i: i.link is not None)  # those A's window blames first
    unpaged.sort(key=lambda i: i.link is not None)
    moved = sum(any(move(i) for i in pool) for pool in (paged, unpaged))  # one of each kind
    for item in paged + unpaged:  # else two of one kind
        if moved >= REASSIGNED:
            return
        if item.moved_from is None:
            moved += move(item)
