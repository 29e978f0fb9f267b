"""A plain-Python reference implementation of the delivery metrics (DESIGN.md section 4).

Pure functions over a generated (or hand-built) `Organisation`, written to be obviously correct
rather than fast, and independent of the collectors, the warehouse and the SQL analytics, so tests
can compare what those compute with what happened.

Readings of the definitions, where DESIGN.md leaves room:
- Only deployments of kind `app` count, in every metric including the deployment failure rate
  (schema migrations are deployed by their own jobs and are not releases of the service's code;
  `schema_skipped_env` checks them); a deployment without a finish time has not finished.
- Deployments of a service to an environment are ordered by finished_at, ties by deployment id.
- Redeploying the commit of P is never a rollback, even when its digest ran before P (a rebuilt
  image of the same commit is the same code). Otherwise the definition is taken literally: an image
  that ran before P is a rollback even when it moves forward again (deploy B, roll back to A,
  deploy B's image again: a second rollback, no changes).
- Hotfix, as a failure reason and as rework, is the ref alone: a rollback to a deployment that was
  made from a hotfix branch re-runs its ref, so it counts as a hotfix too.
- Production is the tier: a service may run in several production environments (regions), each
  its own chain (P, N, rollbacks, failures, recovery and rework per environment).
- "Carries": a deployment carries a commit reachable from its sha. A change commit's lead time is
  measured at the first production deployment (in any production environment) that carries it;
  for a merge request, the first
  production deployment carrying its merge or squash commit (head sha for a fast-forward merge) may
  be the baseline: `MergeRequestTruth.baseline` says so, so a test can leave those out.
- An MR's first commit is its earliest authored commit (`MergeRequest.commits` is oldest first).
- Incidents have no environment in the model: every incident is a production incident. They are
  attributed to a deployment by the window (an explicit link from a tracker, given to
  `attribute_incidents`, wins over it); `Incident.deployment_id` (the generator's intent,
  which GitLab cannot carry) is only reported beside the attribution.
- "The resolution of the last incident attributed to D": when every incident attributed to D is
  resolved, the latest resolution; while one is open, incidents do not recover D. An incident
  resolved before it was opened (clock skew, a back-filled ticket) has no usable resolution: it is
  left out of time to restore (`IncidentTruth.resolved_before_opened`, counted) and its resolution
  is ignored for recovery (the other incidents' resolutions and the next good deployment decide).
- Rework: an unrecovered failed change makes every later production deployment rework.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from sandbox.incidents import resolved_before_opened
from sandbox.model import Deployment, Incident, MergeRequest, Organisation, Service
from warehouse.vocabulary import FAILED, SUCCESS

PRODUCTION = "production"
KINDS = ("app",)
FAILURE_WINDOW = timedelta(days=7)
HOTFIX_WINDOW = timedelta(hours=24)
HOTFIX_REFS: tuple[str, ...] = ("hotfix/*",)


def hours(start: datetime, end: datetime) -> float:
    """`end - start` in hours."""
    return (end - start).total_seconds() / 3600


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (`percentile_cont`, pandas' `quantile`)."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- the commit graph -------------------------------------------------------------------------


class CommitGraph:
    """A service's commit graph: ancestor sets (a commit is its own ancestor)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.position = {sha: i for i, sha in enumerate(service.commits)}
        self._ancestors: dict[str, frozenset[str]] = {}

    def parents(self, sha: str) -> tuple[str, ...]:
        """The parents of `sha`; an unknown commit is an error naming the service."""
        try:
            return self.service.commits[sha].parents
        except KeyError:
            raise KeyError(f"commit {sha} is not in service {self.service.name}") from None

    def ancestors(self, sha: str) -> frozenset[str]:
        """Every commit reachable from `sha` through parents, `sha` included.

        A walk that stops where an earlier answer already covers the rest; only asked-for shas
        are remembered (deployed commits), so memory stays near deployments x history.
        """
        if sha in self._ancestors:
            return self._ancestors[sha]
        walked: set[str] = set()
        known: list[frozenset[str]] = []
        stack = [sha]
        while stack:  # no recursion: histories are deeper than Python's stack
            top = stack.pop()
            if top in walked:
                continue
            if top in self._ancestors:
                known.append(self._ancestors[top])
                continue
            walked.add(top)
            stack.extend(self.parents(top))
        self._ancestors[sha] = frozenset(walked).union(*known)
        return self._ancestors[sha]

    def in_push_order(self, shas: Iterable[str]) -> tuple[str, ...]:
        """`shas` ordered as the service's commits were pushed."""
        return tuple(sorted(shas, key=self.position.__getitem__))


# -- 1. deployments and their changes ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeploymentTruth:
    """A successful deployment with P (the previous one to the same environment) and its changes."""

    id: int
    service: str
    environment: str  # canonical
    sha: str
    ref: str
    digest: str | None
    finished_at: datetime
    previous_id: int | None
    changes: tuple[str, ...]  # in push order
    rollback: bool
    baseline: bool


def _order(d: Deployment) -> tuple[datetime, int]:
    assert d.finished_at is not None
    return d.finished_at, d.id


def successful(
    service: Service, environment: str | None = None, tier: str | None = None
) -> dict[str, list[Deployment]]:
    """The service's successful app deployments by canonical environment, in order (of
    `environment`, or of every environment of `tier`, default all)."""
    by_env: dict[str, list[Deployment]] = defaultdict(list)
    for d in service.deployments:
        canonical = d.environment.canonical
        if environment not in (None, canonical) or tier not in (None, d.environment.tier):
            continue
        if d.status == SUCCESS and d.kind in KINDS and d.finished_at is not None:
            by_env[canonical].append(d)
    return {env: sorted(ds, key=_order) for env, ds in by_env.items()}


def _truth(
    service: Service, d: Deployment, p: Deployment | None, before_p: set[str], graph: CommitGraph
) -> DeploymentTruth:
    assert d.finished_at is not None
    changes: frozenset[str] = frozenset()
    rollback = False
    if p is not None and d.sha != p.sha:
        rollback = d.sha in graph.ancestors(p.sha) or (
            d.digest is not None and d.digest in before_p
        )
        if not rollback:
            changes = graph.ancestors(d.sha) - graph.ancestors(p.sha)
    return DeploymentTruth(
        d.id,
        service.name,
        d.environment.canonical,
        d.sha,
        d.ref,
        d.digest,
        d.finished_at,
        p.id if p else None,
        graph.in_push_order(changes),
        rollback,
        baseline=p is None,
    )


def service_deployments(
    service: Service, graph: CommitGraph, environment: str | None = None, tier: str | None = None
) -> list[DeploymentTruth]:
    """One service's successful deployments with their changes, per environment in order."""
    truths = []
    for deployments in successful(service, environment, tier).values():
        before_p: set[str] = set()  # digests that ran in the environment before P
        previous: Deployment | None = None
        for d in deployments:
            truths.append(_truth(service, d, previous, before_p, graph))
            if previous is not None and previous.digest:
                before_p.add(previous.digest)
            previous = d
    return truths


def deployment_changes(
    org: Organisation, environment: str | None = None, tier: str | None = None
) -> dict[int, DeploymentTruth]:
    """Every successful deployment (of `environment` or `tier`, default all) keyed by id."""
    return {
        t.id: t
        for s in org.services
        for t in service_deployments(s, CommitGraph(s), environment, tier)
    }


def _truth_order(t: DeploymentTruth) -> tuple[datetime, int]:
    return t.finished_at, t.id


def service_production(service: Service, graph: CommitGraph) -> list[DeploymentTruth]:
    """One service's production deployments, every production-tier environment (region) merged,
    in order; each keeps P, its previous one in its own environment."""
    return sorted(service_deployments(service, graph, tier=PRODUCTION), key=_truth_order)


def production_chains(production: Sequence[DeploymentTruth]) -> list[list[DeploymentTruth]]:
    """Production deployments split into their environments' chains, each in order."""
    chains: dict[str, list[DeploymentTruth]] = defaultdict(list)
    for t in production:
        chains[t.environment].append(t)
    return [chains[env] for env in sorted(chains)]


def production_deployments(org: Organisation) -> list[DeploymentTruth]:
    """Production deployments (every production-tier environment) ordered by (finished_at, id):
    deployment frequency's input."""
    return sorted(deployment_changes(org, tier=PRODUCTION).values(), key=_truth_order)


# -- 2. lead time for changes -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeadTime:
    """A change commit's lead time, at the first production deployment that carries it."""

    service: str
    sha: str
    deployment_id: int
    start: datetime
    finished: datetime
    hours: float
    is_merge: bool  # excluded from the statistics
    squash_of: int | None  # the iid of the MR whose squash commit this is


def first_carriers(
    graph: CommitGraph, production: Sequence[DeploymentTruth]
) -> dict[str, DeploymentTruth]:
    """sha -> the first production deployment (in order) whose sha reaches it."""
    carriers: dict[str, DeploymentTruth] = {}
    for t in production:
        for sha in graph.ancestors(t.sha):
            carriers.setdefault(sha, t)
    return carriers


def _mr_first_commit_at(service: Service, mr: MergeRequest) -> datetime:
    authored = [service.commits[sha].authored_at for sha in mr.commits]
    return min(authored) if authored else mr.first_commit_at


def _service_lead_times(service: Service) -> list[LeadTime]:
    graph = CommitGraph(service)
    production = service_production(service, graph)
    carriers = first_carriers(graph, production)
    squashed = {mr.squash_commit_sha: mr for mr in service.merge_requests if mr.squash_commit_sha}
    rows = []
    for t in production:
        for sha in t.changes:
            if carriers[sha] is not t:
                continue  # carried before (e.g. deployed, rolled back, deployed again)
            commit = service.commits[sha]
            mr = squashed.get(sha)
            start = _mr_first_commit_at(service, mr) if mr else commit.authored_at
            rows.append(
                LeadTime(
                    service.name,
                    sha,
                    t.id,
                    start,
                    t.finished_at,
                    hours(start, t.finished_at),
                    is_merge=len(commit.parents) > 1,
                    squash_of=mr.iid if mr else None,
                )
            )
    return rows


def lead_times(org: Organisation) -> list[LeadTime]:
    """Every production change commit once, with its lead time (merge commits flagged)."""
    return [row for s in org.services for row in _service_lead_times(s)]


# -- 3. merge-request breakdown ---------------------------------------------------------------

STAGES = ("coding", "pickup", "review", "deploy", "cycle")


@dataclass(frozen=True, slots=True)
class MergeRequestTruth:
    """A merged MR's stages in hours (None: an end is missing, or the span was negative)."""

    service: str
    iid: int
    first_commit_at: datetime
    created_at: datetime
    first_review_at: datetime | None
    merged_at: datetime
    deployment_id: int | None  # the first production deployment carrying it; None: not yet
    deployed_at: datetime | None
    baseline: bool  # carried first by a baseline deployment
    coding: float | None
    pickup: float | None
    review: float | None
    deploy: float | None
    cycle: float | None
    negative: tuple[str, ...]  # stages dropped because their span was negative
    age_hours: float | None  # not yet in production: merged -> org.now


def first_review_at(mr: MergeRequest) -> datetime | None:
    """The first note (approval notes included) by someone other than the author, from creation."""
    times = [
        n.created_at
        for n in mr.notes
        if n.author.id != mr.author.id and n.created_at >= mr.created_at
    ]
    return min(times, default=None)


Span = tuple[datetime | None, datetime | None]


def _spans(points: dict[str, Span]) -> tuple[dict[str, float | None], tuple[str, ...]]:
    """Each stage's span in hours; a negative span becomes None and is named."""
    values: dict[str, float | None] = {}
    negative = []
    for stage, (start, end) in points.items():
        span = hours(start, end) if start is not None and end is not None else None
        if span is not None and span < 0:
            negative.append(stage)
            span = None
        values[stage] = span
    return values, tuple(negative)


def _merge_request_truth(
    org: Organisation, service: Service, mr: MergeRequest, carriers: dict[str, DeploymentTruth]
) -> MergeRequestTruth:
    assert mr.merged_at is not None
    first = _mr_first_commit_at(service, mr)
    review = first_review_at(mr)
    landed = mr.merge_commit_sha or mr.squash_commit_sha or mr.head_sha
    carrier = carriers.get(landed)
    deployed = carrier.finished_at if carrier else None
    values, negative = _spans(
        {
            "coding": (first, mr.created_at),
            "pickup": (mr.created_at, review),
            "review": (review, mr.merged_at),
            "deploy": (mr.merged_at, deployed),
            "cycle": (first, deployed),
        }
    )
    return MergeRequestTruth(
        service.name,
        mr.iid,
        first,
        mr.created_at,
        review,
        mr.merged_at,
        carrier.id if carrier else None,
        deployed,
        bool(carrier and carrier.baseline),
        values["coding"],
        values["pickup"],
        values["review"],
        values["deploy"],
        values["cycle"],
        negative=negative,
        age_hours=None if carrier else hours(mr.merged_at, org.now),
    )


def merge_requests(org: Organisation) -> list[MergeRequestTruth]:
    """The breakdown of every merged MR (`deployment_id` None: not yet in production)."""
    rows: list[MergeRequestTruth] = []
    for s in org.services:
        graph = CommitGraph(s)
        carriers = first_carriers(graph, service_production(s, graph))
        rows.extend(
            _merge_request_truth(org, s, mr, carriers)
            for mr in s.merge_requests
            if mr.state == "merged" and mr.merged_at is not None
        )
    return rows


def merged_not_in_production(org: Organisation, until: datetime) -> list[MergeRequestTruth]:
    """Merged MRs, merged before `until`, whose first production deployment carrying their merge
    or squash commit (fast-forward: head) had not finished before `until` (or never happened)."""
    return [
        m
        for m in merge_requests(org)
        if m.merged_at < until and (m.deployed_at is None or m.deployed_at >= until)
    ]


# -- 4. change failures -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """The parameters of change failure: windows and the refs of hotfixes."""

    failure_window: timedelta = FAILURE_WINDOW
    hotfix_window: timedelta = HOTFIX_WINDOW
    hotfix_refs: tuple[str, ...] = HOTFIX_REFS

    def is_hotfix(self, ref: str) -> bool:
        """Whether `ref` matches one of the hotfix globs."""
        return any(fnmatchcase(ref, pattern) for pattern in self.hotfix_refs)


@dataclass(frozen=True, slots=True)
class ChangeFailure:
    """A production deployment and why it is a failed change (no reasons: it is not)."""

    deployment_id: int
    service: str
    finished_at: datetime
    next_id: int | None  # N, the next production deployment of the service
    reasons: tuple[str, ...]  # sorted: hotfix, incident, rollback
    incidents: tuple[int, ...]  # ids of the incidents attributed to it

    @property
    def failed(self) -> bool:
        """Whether any reason applies."""
        return bool(self.reasons)


@dataclass(frozen=True, slots=True)
class Recovery:
    """When a failed change was recovered, and by what (`recovered_at` None: unrecovered)."""

    deployment_id: int
    service: str
    failed_at: datetime
    recovered_at: datetime | None
    by: str | None  # deployment | incident
    recovering_deployment_id: int | None  # the first later production deployment not failed
    hours: float | None


@dataclass
class _Outcomes:
    """One service's production deployments in order, their failures and recoveries."""

    production: list[DeploymentTruth]
    attributed: dict[int, int | None]  # incident id -> deployment id
    failures: dict[int, ChangeFailure]
    recoveries: dict[int, Recovery]


def tracked(service: Service) -> list[Incident]:
    """The incidents that can meet the service's deployments: none when its deployments go by
    another name (`Service.deploy_name`): the tracker files them under the project's service,
    which has no deployments (configure the name, or name deploy jobs after the project)."""
    return [] if service.deploy_name else list(service.incidents)


def attribute_incidents(
    production: Sequence[DeploymentTruth],
    incidents: Iterable[Incident],
    failure_window: timedelta = FAILURE_WINDOW,
    links: Mapping[int, int | None] | None = None,
) -> dict[int, int | None]:
    """incident id -> the production deployment D (of the incident's service) with
    D.finished_at <= opened < N.finished_at and opened < D.finished_at + failure_window, N the next
    deployment in D's environment; with several production environments (regions) each may have
    such a D, and the incident goes to the one that finished last (the newest change before it).
    An incident in `links` (an explicit link from a tracker: incident id -> the deployment it
    names) goes to that deployment instead, whatever the window says, when it is one of
    `production`; to none when it is not (DESIGN.md §4: an explicit link wins)."""
    attributed: dict[int, int | None] = {}
    known = {t.id for t in production}
    for incident in incidents:
        if links is not None and incident.id in links:
            linked = links[incident.id]
            attributed[incident.id] = linked if linked in known else None
            continue
        candidates = []
        for chain in production_chains(production):
            before = [t for t in chain if t.finished_at <= incident.created_at]
            d = before[-1] if before else None  # the last one: N, if any, finished after
            if d is not None and incident.created_at < d.finished_at + failure_window:
                candidates.append(d)
        d = max(candidates, key=_truth_order, default=None)
        attributed[incident.id] = d.id if d is not None else None
    return attributed


def _failure(
    d: DeploymentTruth, n: DeploymentTruth | None, incidents: tuple[int, ...], policy: Policy
) -> ChangeFailure:
    reasons = []
    if n and policy.is_hotfix(n.ref) and n.finished_at < d.finished_at + policy.hotfix_window:
        reasons.append("hotfix")
    if incidents:
        reasons.append("incident")
    if n and n.rollback and n.finished_at < d.finished_at + policy.failure_window:
        reasons.append("rollback")
    return ChangeFailure(
        d.id, d.service, d.finished_at, n.id if n else None, tuple(reasons), incidents
    )


def _incident_resolution(incidents: Sequence[Incident]) -> datetime | None:
    """When the last of `incidents` was resolved; None while any is open (or there are none).
    One resolved before it was opened is left out: its resolution is not usable."""
    closed = [i.closed_at for i in incidents if not resolved_before_opened(i)]
    if not closed or any(c is None for c in closed):
        return None
    return max(c for c in closed if c is not None)


def _recovery(
    d: DeploymentTruth, good: DeploymentTruth | None, resolved: datetime | None
) -> Recovery:
    candidates = []
    if good is not None:
        candidates.append((good.finished_at, "deployment"))
    if resolved is not None:
        candidates.append((resolved, "incident"))
    at, by = min(candidates) if candidates else (None, None)
    return Recovery(
        d.id,
        d.service,
        d.finished_at,
        at,
        by,
        good.id if good else None,
        hours(d.finished_at, at) if at is not None else None,
    )


def _outcomes(service: Service, policy: Policy) -> _Outcomes:
    """Failures of one service's production deployments (N: the next one), then recoveries."""
    production = service_production(service, CommitGraph(service))
    attributed = attribute_incidents(production, tracked(service), policy.failure_window)
    chains = production_chains(production)
    failures = {}
    for chain in chains:  # N: the next deployment in D's own environment
        for i, d in enumerate(chain):
            n = chain[i + 1] if i + 1 < len(chain) else None
            mine = tuple(sorted(k for k, v in attributed.items() if v == d.id))
            failures[d.id] = _failure(d, n, mine, policy)
    by_id = {i.id: i for i in service.incidents}
    recovered = {}
    for chain in chains:
        for i, d in enumerate(chain):
            if failures[d.id].failed:
                good = next((t for t in chain[i + 1 :] if not failures[t.id].failed), None)
                resolved = _incident_resolution([by_id[k] for k in failures[d.id].incidents])
                recovered[d.id] = _recovery(d, good, resolved)
    return _Outcomes(production, attributed, failures, recovered)


def _all_outcomes(
    org: Organisation,
    failure_window: timedelta,
    hotfix_window: timedelta,
    hotfix_refs: Sequence[str],
) -> list[_Outcomes]:
    policy = Policy(failure_window, hotfix_window, tuple(hotfix_refs))
    return [_outcomes(s, policy) for s in org.services]


def change_failures(
    org: Organisation,
    failure_window: timedelta = FAILURE_WINDOW,
    hotfix_window: timedelta = HOTFIX_WINDOW,
    hotfix_refs: Sequence[str] = HOTFIX_REFS,
) -> dict[int, ChangeFailure]:
    """Every production deployment by id, with its failure reasons (the rate's denominator too)."""
    outcomes = _all_outcomes(org, failure_window, hotfix_window, hotfix_refs)
    return {k: v for o in outcomes for k, v in o.failures.items()}


# -- 5. recovery and incidents ----------------------------------------------------------------


def recoveries(
    org: Organisation,
    failure_window: timedelta = FAILURE_WINDOW,
    hotfix_window: timedelta = HOTFIX_WINDOW,
    hotfix_refs: Sequence[str] = HOTFIX_REFS,
) -> dict[int, Recovery]:
    """Every failed change by deployment id, with its recovery."""
    outcomes = _all_outcomes(org, failure_window, hotfix_window, hotfix_refs)
    return {k: v for o in outcomes for k, v in o.recoveries.items()}


@dataclass(frozen=True, slots=True)
class IncidentTruth:
    """An incident, the deployment the window attributes it to, and the generator's link."""

    id: int
    iid: int
    service: str
    opened_at: datetime
    resolved_at: datetime | None
    attributed_to: int | None  # by the window (what the analytics can know)
    linked_to: int | None  # Incident.deployment_id: the generator's intent
    hours_to_restore: float | None  # None: open, or resolved before opened
    resolved_before_opened: bool = False


def incidents(org: Organisation, failure_window: timedelta = FAILURE_WINDOW) -> list[IncidentTruth]:
    """Every incident with its time to restore (opened -> resolved; none when it was resolved
    before it was opened, flagged instead) and its attribution."""
    rows: list[IncidentTruth] = []
    for s in org.services:
        production = service_production(s, CommitGraph(s))
        attributed = attribute_incidents(production, tracked(s), failure_window)
        rows.extend(
            IncidentTruth(
                i.id,
                i.iid,
                s.name,
                i.created_at,
                i.closed_at,
                attributed.get(i.id),
                i.deployment_id,
                hours(i.created_at, i.closed_at)
                if i.closed_at is not None and not resolved_before_opened(i)
                else None,
                resolved_before_opened(i),
            )
            for i in s.incidents
        )
    return rows


# -- 6. rework --------------------------------------------------------------------------------


def _rework_reasons(t: DeploymentTruth, o: _Outcomes, policy: Policy) -> tuple[str, ...]:
    reasons = []
    if t.rollback:
        reasons.append("rollback")
    if policy.is_hotfix(t.ref):
        reasons.append("hotfix")
    environment = {d.id: d.environment for d in o.production}
    for r in o.recoveries.values():  # a failed change's recovery in t's own environment
        if (
            environment[r.deployment_id] == t.environment
            and r.failed_at < t.finished_at
            and (r.recovered_at is None or t.finished_at <= r.recovered_at)
        ):
            reasons.append("recovering")
            break
    return tuple(reasons)


def rework(
    org: Organisation,
    failure_window: timedelta = FAILURE_WINDOW,
    hotfix_window: timedelta = HOTFIX_WINDOW,
    hotfix_refs: Sequence[str] = HOTFIX_REFS,
) -> dict[int, tuple[str, ...]]:
    """Every production deployment by id -> why it is rework (rollback, hotfix, recovering: it
    finished after a failed change and no later than its recovery); empty: it is not rework."""
    policy = Policy(failure_window, hotfix_window, tuple(hotfix_refs))
    return {
        t.id: _rework_reasons(t, o, policy)
        for o in (_outcomes(s, policy) for s in org.services)
        for t in o.production
    }


# -- 7. deployment failure rate ---------------------------------------------------------------


def deployment_failure_rates(org: Organisation) -> dict[str, tuple[int, int]]:
    """Canonical environment -> (failed attempts, finished attempts: success + failed)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in org.services:
        for d in s.deployments:
            if d.kind in KINDS and d.status in (SUCCESS, FAILED):
                counts[d.environment.canonical][0] += d.status == FAILED
                counts[d.environment.canonical][1] += 1
    return {env: (failed, total) for env, (failed, total) in sorted(counts.items())}


# -- 8. schema migrations (the policy schema-skipped-env, DESIGN.md section 5) ----------------


def schema_skipped_env(
    org: Organisation, path: Sequence[str] = ("test", "staging", "production")
) -> set[int]:
    """Ids of the successful schema deployments to an environment E of the promotion path whose
    migration version had no successful schema deployment of the service, finished at or before
    this one started, in the environment before E."""
    found: set[int] = set()
    for s in org.services:
        schema = [d for d in s.deployments if d.kind == "schema" and d.status == SUCCESS]
        for d in schema:
            env = d.environment.canonical
            if env not in path or path.index(env) == 0:
                continue
            upstream = path[path.index(env) - 1]
            start = d.job.started_at or d.created_at
            if not any(
                u.environment.canonical == upstream
                and u.schema_version == d.schema_version
                and u.finished_at is not None
                and u.finished_at <= start
                for u in schema
            ):
                found.add(d.id)
    return found


def untested_images(
    org: Organisation,
    path: Sequence[str] = ("test", "staging", "production"),
    require: str = "all",
    soak: timedelta = timedelta(0),
    image: Callable[[Deployment], str] = lambda d: d.digest or d.sha,
) -> dict[int, tuple[str, ...]]:
    """Successful application deployments to an environment E of the promotion path -> the
    environments before E (every one with `require="all"`, the adjacent one with "previous") where
    their image (`image`: the digest, or the commit when there is none; a world whose deployments
    carry no digest, GitLab's, knows images by their commit) had no successful application
    deployment of the service finished at or before this one started minus `soak`."""
    found: dict[int, tuple[str, ...]] = {}
    for s in org.services:
        apps = [d for d in s.deployments if d.kind == "app" and d.status == SUCCESS]
        for d in apps:
            env = d.environment.canonical
            if env not in path and d.environment.tier == PRODUCTION and PRODUCTION in path:
                env = PRODUCTION  # a production region stands where production does
            if env not in path:
                continue
            before = list(path[: path.index(env)])
            start = d.job.started_at or d.created_at
            skipped = tuple(
                upstream
                for upstream in (before if require == "all" else before[-1:])
                if not any(
                    u.environment.canonical == upstream
                    and image(u) == image(d)
                    and u.finished_at is not None
                    and u.finished_at <= start - soak
                    for u in apps
                )
            )
            if skipped:
                found[d.id] = skipped
    return found


# -- the generator's intent, and the figures --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disagreement:
    """Where the reference finds something else than the generator meant."""

    service: str
    subject: str  # "deployment <id> (iid <iid>)" or "incident <id> (iid <iid>)"
    what: str  # failed_change | rollback | hotfix | incident
    intended: str
    found: str


def _deployment_disagreements(
    d: Deployment, t: DeploymentTruth, failure: ChangeFailure, policy: Policy
) -> list[Disagreement]:
    subject = f"deployment {d.id} (iid {d.iid})"
    checks = (
        ("failed_change", ",".join(d.failed_change), ",".join(failure.reasons)),
        ("rollback", str(d.rollback), str(t.rollback)),
        ("hotfix", str(d.hotfix), str(policy.is_hotfix(t.ref))),
    )
    return [
        Disagreement(t.service, subject, what, intended, found)
        for what, intended, found in checks
        if intended != found
    ]


def intent_disagreements(
    org: Organisation,
    failure_window: timedelta = FAILURE_WINDOW,
    hotfix_window: timedelta = HOTFIX_WINDOW,
    hotfix_refs: Sequence[str] = HOTFIX_REFS,
) -> list[Disagreement]:
    """Production deployments whose failure reasons, rollback or hotfix differ from the
    generator's intent, and incidents whose window attribution differs from their link."""
    policy = Policy(failure_window, hotfix_window, tuple(hotfix_refs))
    found: list[Disagreement] = []
    for s in org.services:
        o = _outcomes(s, policy)
        by_id = {d.id: d for d in s.deployments}
        for t in o.production:
            found += _deployment_disagreements(by_id[t.id], t, o.failures[t.id], policy)
        for i in tracked(s):
            if o.attributed[i.id] != i.deployment_id:
                subject = f"incident {i.id} (iid {i.iid})"
                intended, got = str(i.deployment_id), str(o.attributed[i.id])
                found.append(Disagreement(s.name, subject, "incident", intended, got))
    return found


@dataclass(frozen=True, slots=True)
class Figures:
    """The headline numbers of the reference (default parameters)."""

    production_deployments: int
    changes: int  # change commits of production deployments (a commit may recur after a rollback)
    lead_time_changes: int  # in the statistics: first carried, merge commits left out
    lead_time_median_h: float | None
    lead_time_p90_h: float | None
    failed_changes: int
    failed_by_reason: dict[str, int]
    recovered: int
    unrecovered: int
    recovery_median_h: float | None
    rework: int
    merged_mrs: int
    mrs_not_in_production: int
    deployment_failure_rates: dict[str, tuple[int, int]]


def figures(org: Organisation) -> Figures:
    """The headline numbers of the reference, with default parameters (for a reader or a test)."""
    production = production_deployments(org)
    leads = [x.hours for x in lead_times(org) if not x.is_merge]
    failed = [f for f in change_failures(org).values() if f.failed]
    times = [r.hours for r in recoveries(org).values() if r.hours is not None]
    mrs = merge_requests(org)
    reasons: dict[str, int] = defaultdict(int)
    for f in failed:
        for reason in f.reasons:
            reasons[reason] += 1
    return Figures(
        production_deployments=len(production),
        changes=sum(len(t.changes) for t in production),
        lead_time_changes=len(leads),
        lead_time_median_h=percentile(leads, 0.5),
        lead_time_p90_h=percentile(leads, 0.9),
        failed_changes=len(failed),
        failed_by_reason=dict(sorted(reasons.items())),
        recovered=len(times),
        unrecovered=len(failed) - len(times),
        recovery_median_h=percentile(times, 0.5),
        rework=sum(1 for r in rework(org).values() if r),
        merged_mrs=len(mrs),
        mrs_not_in_production=sum(1 for m in mrs if m.deployment_id is None),
        deployment_failure_rates=deployment_failure_rates(org),
    )
