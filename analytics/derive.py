"""Derived tables (DESIGN.md section 4), rebuilt incrementally after every sync:

- `deployment_chain`: each successful deployment linked to the previous successful one of the same
  service and environment, marked baseline (the first) or rollback;
- `deployment_change`: the commits a deployment brought (reachable from its commit, not from the
  previous one's), with where lead time starts;
- `change_failure`: production deployments that failed, with every reason, and their recovery;
- `merge_request.first_commit_at`: where each MR's work started (`analytics.first_commits`);
- `merge_request.released_at`: when each merged MR reached production (`analytics.releases`).

The commit graph is walked in Python, a repository at a time (it is a graph walk, not an
aggregation); everything else is selected in SQL.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from analytics import first_commits, releases
from analytics.ancestry import CommitGraph, RanLast, mark_generations, refresh_generations
from analytics.images import resolve_images
from analytics.incident_links import linked_incidents, mark_duplicates
from analytics.rules import DEPLOYMENT_REPO, MR_COMMIT, TEST_RUN_PIPELINE, FailureRules
from analytics.work_item_links import derive_work_item_links
from config.settings import TAG_REVISION_PATTERN
from warehouse.image_repositories import Configured
from warehouse.schema import (
    ChangeFailure,
    Commit,
    CommitGeneration,
    CommitParent,
    Deployment,
    DeploymentChain,
    DeploymentChange,
    DeriveState,
    Environment,
    Image,
    ImageRepository,
    ImageTag,
    Incident,
    MergeRequest,
    MrCommit,
    ObservedWorkload,
    Pipeline,
    Service,
    TestRun,
)
from warehouse.statistics import analyze
from warehouse.upsert import upsert

log = logging.getLogger(__name__)
K = TypeVar("K")


@dataclass
class DeriveSummary:
    images: int = 0  # image revisions found from tags
    generations: int = 0  # commit generations written (analytics.ancestry)
    resolved_deployments: int = 0  # deployments given a digest
    chains: int = 0
    deployments: int = 0
    changes: int = 0
    failures: int = 0
    failure_services: int = 0  # services whose change failures were recomputed
    failure_deployments: int = 0  # their production deployments read to recompute them
    first_commits: int = 0  # merge requests whose first commit time (first_commit_at) changed
    work_item_links: int = 0  # work item <-> change links found in titles and branches
    released: int = 0  # merged MRs whose production release time (released_at) changed
    rollup_days: int = 0  # (service, environment, day) and (repo, branch flag, day) rows written
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {**vars(self), "seconds": round(self.seconds, 3)}


@dataclass
class _Step:
    id: int
    sha: str | None
    digest: str | None
    finished_at: datetime
    ref: str | None


# what derive (and the image resolution it starts with) reads: their statistics are refreshed first
DERIVE_READS = tuple(
    t.__tablename__
    for t in (
        Commit,
        CommitGeneration,
        CommitParent,
        Deployment,
        DeploymentChain,
        DeploymentChange,
        ChangeFailure,
        Environment,
        Image,
        ImageRepository,
        ImageTag,
        Incident,
        MergeRequest,
        MrCommit,
        ObservedWorkload,
        Pipeline,
        Service,
        TestRun,
    )
)


def derive(
    engine: Engine,
    rules: FailureRules | None = None,
    full: bool = False,
    tag_revision_pattern: str = TAG_REVISION_PATTERN,
    image_repositories: Configured | None = None,
    timezone: str = "UTC",
) -> DeriveSummary:
    """Bring the derived tables up to date (everything when `full`; `image_repositories`: service
    name -> its configured image repositories), then the rollups of the days new data touched, in
    `timezone` (`[sync] timezone`); returns what it did."""
    from analytics import rollups  # reads rows through analytics.selects

    rules = rules or FailureRules()
    summary = DeriveSummary()
    start = time.perf_counter()
    started_at = datetime.now(UTC)
    analyze(engine, DERIVE_READS)  # fresh planner statistics for what a sync just wrote
    with engine.begin() as conn:
        if full:
            for table in (ChangeFailure, DeploymentChange, DeploymentChain):
                conn.execute(delete(table))
        changed_after = None if full else _changed_after(conn)
        summary.generations = refresh_generations(conn, changed_after)
        # before the chains: a squash commit's lead time starts at its MR's first commit
        summary.first_commits = first_commits.refresh(conn, started_at, changed_after)
        resolved = resolve_images(conn, tag_revision_pattern, image_repositories, changed_after)
        summary.images, summary.resolved_deployments = resolved.revisions, resolved.deployments
        graphs: dict[int | None, CommitGraph] = {}
        touched: dict[int, CommitGraph] = {}
        dirty: dict[int, datetime] = {}  # service -> earliest moment whose day to roll up again
        rederived: dict[int, datetime] = {}  # repository -> earliest finish re-derived
        late = late_chains(conn, changed_after)
        for chain, moment in _rechained(conn, changed_after).items():
            late[chain] = min(moment, late.get(chain, moment))
        tiers = dict(conn.execute(select(Environment.id, Environment.tier)).all())
        linked = _Linked()
        stale = _stale_chains(conn, late, changed_after, resolved.unchained)
        ends = _chain_ends(conn, min((since for *_, since in stale), default=None))
        for service_id, environment_id, repo_id, since in stale:
            summary.chains += 1
            if repo_id not in graphs:
                graphs[repo_id] = CommitGraph(conn, repo_id)
            graph, tier = graphs[repo_id], tiers.get(environment_id)
            end = ends.get((service_id, environment_id))
            if _derive_chain(
                conn, service_id, environment_id, tier, graph, since, end, summary, linked
            ):
                touched[service_id] = graphs[repo_id]
                _earliest(dirty, service_id, since)
                if repo_id is not None:  # a chain left as it was moves no release
                    _earliest(rederived, repo_id, since)
        linked.flush(conn)
        for service_id in _several_production(conn, sorted(touched)):
            _first_in_production(conn, service_id, touched[service_id])
        failures_before = _failures(conn)
        # deployments written since the last derive (None: a full or first derive): their
        # services' failures and days
        attempts = {} if changed_after is None else _attempts_changed(conn, changed_after)
        moved = dict(dirty)  # a touched service's earliest re-derived finish, so far
        for service_id, moment in attempts.items():
            _earliest(moved, service_id, moment)
        services = (
            None  # every service: a full derive, the first one, or other failure rules
            if changed_after is None or rollups.stored_rules(conn) != rollups.fingerprint(rules)
            else _failure_services(conn, changed_after, moved)
        )
        summary.failures, summary.failure_services, summary.failure_deployments = derive_failures(
            conn, rules, services
        )
        summary.work_item_links = derive_work_item_links(conn, changed_after)
        summary.released = releases.refresh(
            conn,
            started_at,
            None if changed_after is None else rederived,
            _clock_skew(conn),
        )
        if changed_after is None:
            summary.rollup_days = rollups.refresh(conn, timezone, rules, None, None)
        else:
            for service_id, moment in [
                *_failures_changed(conn, failures_before),
                *attempts.items(),
            ]:
                _earliest(dirty, service_id, moment)
            summary.rollup_days = rollups.refresh(
                conn, timezone, rules, dirty, _pipelines_changed(conn, changed_after)
            )
        mark_generations(conn, started_at)
        upsert(
            conn,
            DeriveState,
            [{"name": "derive", "started_at": started_at, "finished_at": datetime.now(UTC)}],
        )
    summary.seconds = time.perf_counter() - start
    log.info("derive: %s", summary.as_json())
    return summary


def _earliest(moments: dict[K, datetime], key: K, moment: datetime) -> None:
    moments[key] = min(moment, moments.get(key, moment))


def _failures(conn: Connection) -> dict[int, tuple[Any, ...]]:
    """change_failure as deployment -> (reasons, recovery), to see what a derive changed."""
    return {
        row[0]: tuple(row[1:])
        for row in conn.execute(
            select(
                ChangeFailure.deployment_id,
                ChangeFailure.incident,
                ChangeFailure.rollback,
                ChangeFailure.hotfix,
                ChangeFailure.recovered_at,
            )
        )
    }


def _failures_changed(
    conn: Connection, before: dict[int, tuple[Any, ...]]
) -> list[tuple[int, datetime]]:
    """(service, finish) of the deployments whose change failure this derive added, removed or
    changed: their days (and the rework of the days after them) are rolled up again."""
    after = _failures(conn)
    ids = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    found: list[tuple[int, datetime]] = []
    for start in range(0, len(ids), 500):
        found.extend(
            conn.execute(
                select(Deployment.service_id, Deployment.finished_at).where(
                    Deployment.id.in_(ids[start : start + 500]),
                    Deployment.service_id.is_not(None),
                    Deployment.finished_at.is_not(None),
                )
            )  # type: ignore[arg-type]
        )
    return found


def _attempts_changed(conn: Connection, after: datetime) -> dict[int, datetime]:
    """service -> earliest finish of its deployments written since the last derive (attempts)."""
    query = select(Deployment.service_id, Deployment.finished_at).where(
        Deployment.changed_at >= after
    )
    return _earliest_changed(conn, query)


def _pipelines_changed(conn: Connection, after: datetime) -> dict[int, datetime]:
    """repo -> earliest finish of the pipelines written since the last derive, or whose tests
    were."""
    repos: dict[int, datetime] = {}
    for query in (
        select(Pipeline.repo_id, Pipeline.finished_at).where(Pipeline.changed_at >= after),
        select(Pipeline.repo_id, Pipeline.finished_at)
        .join(TestRun, TEST_RUN_PIPELINE)
        .where(TestRun.changed_at >= after),
    ):
        for repo_id, moment in _earliest_changed(conn, query).items():
            _earliest(repos, repo_id, moment)
    return repos


def _earliest_changed(conn: Connection, query: Any) -> dict[int, datetime]:
    """key -> earliest moment of the (key, moment) rows `query` selects, rows with neither left
    out. `query` selects rows changed since the last derive by `changed_at`, which are few: they
    are read by that index and folded here, where a GROUP BY in the query would have SQLite's
    planner (no statistics) walk the whole table in the grouped column's index order instead
    (0.2-0.4 s each on the large organisation)."""
    found: dict[int, datetime] = {}
    for key, moment in conn.execute(query):
        if key is not None and moment is not None:
            _earliest(found, key, moment)
    return found


# successful application deployments (schema and config deployments are tracked apart)
_SUCCESSFUL = and_(
    Deployment.status == "success",
    Deployment.kind == "app",
    Deployment.finished_at.is_not(None),
    Deployment.service_id.is_not(None),
    Deployment.environment_id.is_not(None),
)


Chain = tuple[int, int, int | None]  # service, environment, repository


# A deployment's repository: its own (a deploy job naming a service no code source knows checks
# out its code), else its service's. Chains, changes and the MR breakdown all read it.
def _stale_chains(
    conn: Connection, late: dict[Chain, datetime], after: datetime | None, unchained: set[int]
) -> list[tuple[int, int, int | None, datetime]]:
    """(service, environment, repo, earliest finish to re-derive from) of chains with deployments
    not derived yet, or touched by late data (`late`). A service without a repository (known only
    from pushed events, e.g. CDEvents) has a chain too: its deployments count, have no changes,
    and are rollbacks by digest. `after`: the last derive's start (None: none, or a full derive:
    every deployment not chained). Otherwise a deployment not chained was written since (every
    successful deployment of a service and environment is chained by the derive that reads it)
    or unchained by this derive's image resolution (`unchained`): only those are read, by id
    (SQLite, given `changed_at` beside the rest, walked every deployment by its (service,
    environment) index to group them: 0.12 s against 0.004 s on a large organisation's weekday)."""
    repo = DEPLOYMENT_REPO
    query = (
        select(
            Deployment.service_id, Deployment.environment_id, repo, func.min(Deployment.finished_at)
        )
        .join(Service, Service.id == Deployment.service_id)
        .outerjoin(DeploymentChain, DeploymentChain.deployment_id == Deployment.id)
        .where(_SUCCESSFUL, DeploymentChain.id.is_(None))
        .group_by(Deployment.service_id, Deployment.environment_id, repo)
    )
    if after is None:
        parts = [query]
    else:
        written = select(Deployment.id).where(Deployment.changed_at >= after)
        ids = sorted(set(conn.execute(written).scalars()) | unchained)
        parts = [
            query.where(Deployment.id.in_(ids[start : start + 500]))
            for start in range(0, len(ids), 500)
        ]
    stale: dict[Chain, datetime] = dict(late)
    for part in parts:
        for s, e, r, since in conn.execute(part):
            chain: Chain = (s, e, r)  # type: ignore[assignment]  # non-null by _SUCCESSFUL
            _earliest(stale, chain, since)  # type: ignore[arg-type]  # likewise
    return [(s, e, r, since) for (s, e, r), since in stale.items()]


def _chain_ends(conn: Connection, since: datetime | None) -> dict[tuple[int, int], datetime]:
    """(service, environment) -> the last finish of its chain rows, for the chains with rows
    finished at or after `since` (the earliest a stale chain re-derives from; None: none): a
    chain without lets `_derive_chain` skip dropping rows it does not have."""
    if since is None:
        return {}
    rows = conn.execute(
        select(
            DeploymentChain.service_id,
            DeploymentChain.environment_id,
            func.max(DeploymentChain.finished_at),
        )
        .where(DeploymentChain.finished_at >= since)
        .group_by(DeploymentChain.service_id, DeploymentChain.environment_id)
    )
    return {(service, environment): end for service, environment, end in rows}


# On PostgreSQL, sync workers on other hosts write while derive runs: a row stamped before derive
# started may commit after derive read, and the hosts' clocks may differ. Rows changed this long
# before the last derive started count as late too. SQLite has one writer at a time on one host.
CLOCK_SKEW = timedelta(minutes=5)


def _rechained(conn: Connection, after: datetime | None) -> dict[Chain, datetime]:
    """Chains a deployment written since `after` and chained before may have made wrong (its
    status, finish, service, environment or repository corrected since): the chain its row sits
    in, from the finish the row holds, and the chain it belongs to now, from its finish."""
    if after is None:
        return {}
    chained = aliased(Service)
    rows = conn.execute(
        select(
            DeploymentChain.service_id,
            DeploymentChain.environment_id,
            func.coalesce(Deployment.repo_id, chained.repo_id),
            DeploymentChain.finished_at,
            Deployment.service_id,
            Deployment.environment_id,
            DEPLOYMENT_REPO,
            Deployment.finished_at,
        )
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .join(chained, chained.id == DeploymentChain.service_id)
        .outerjoin(Service, Service.id == Deployment.service_id)
        .where(Deployment.changed_at >= after)
    ).all()
    stale: dict[Chain, datetime] = {}
    for s, e, r, since, service, environment, repo, finished in rows:
        _earliest(stale, (s, e, r), since)
        if service is not None and environment is not None and finished is not None:
            _earliest(stale, (service, environment, repo), finished)
    return stale


def _changed_after(conn: Connection) -> datetime | None:
    """Rows changed at or after this are late for the last derive: its start, less the clock
    skew margin on PostgreSQL (None: no derive ran yet)."""
    since = conn.execute(
        select(DeriveState.started_at).where(DeriveState.name == "derive")
    ).scalar()
    if since is None:
        return None
    return since - _clock_skew(conn)


def _clock_skew(conn: Connection) -> timedelta:
    """The margin for writers whose clocks differ from ours: PostgreSQL's (several writers)."""
    return CLOCK_SKEW if conn.dialect.name == "postgresql" else timedelta(0)


def late_chains(conn: Connection, after: datetime | None) -> dict[Chain, datetime]:
    """Derived chains that data changed at or after `after` may have made wrong, each with the
    earliest finish to re-derive from: a commit or a parent link can only be carried by a
    deployment that finished after the commit was committed; a merge request's commits (where a
    squash commit's lead time starts) only by one that finished after it merged."""
    if after is None:
        return {}
    committed = func.coalesce(Commit.committed_at, Commit.authored_at)
    moments = [
        select(Commit.repo_id, committed).where(Commit.changed_at >= after),
        select(CommitParent.repo_id, committed)
        .join(Commit, and_(Commit.repo_id == CommitParent.repo_id, Commit.sha == CommitParent.sha))
        .where(CommitParent.changed_at >= after),
        select(MergeRequest.repo_id, MergeRequest.merged_at).where(
            MergeRequest.changed_at >= after
        ),
        select(MrCommit.repo_id, MergeRequest.merged_at)
        .join(MergeRequest, MR_COMMIT)
        .where(MrCommit.changed_at >= after),
    ]
    earliest: dict[int, datetime] = {}
    for query in moments:
        for repo_id, moment in _earliest_changed(conn, query).items():
            _earliest(earliest, repo_id, moment)
    if not earliest:
        return {}
    repo = DEPLOYMENT_REPO
    # a chain whose deployments all finished before the late data's moment cannot carry it: it is
    # left alone (one not derived yet is _stale_chains' from its first new deployment on)
    chains = conn.execute(
        select(
            DeploymentChain.service_id,
            DeploymentChain.environment_id,
            repo,
            func.max(DeploymentChain.finished_at),
        )
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .join(Service, Service.id == DeploymentChain.service_id)
        # a chain to re-derive has a deployment after the earliest moment: the rows before it
        # are passed over in the index, not joined and grouped (0.24 s -> 0.03 s)
        .where(repo.in_(list(earliest)), DeploymentChain.finished_at >= min(earliest.values()))
        .group_by(DeploymentChain.service_id, DeploymentChain.environment_id, repo)
    ).all()
    return {
        (s, e, r): earliest[r]
        for s, e, r, last in chains
        if r is not None and last is not None and last >= earliest[r]
    }


def _derive_chain(
    conn: Connection,
    service_id: int,
    environment_id: int,
    tier: str | None,
    graph: CommitGraph,
    since: datetime,
    end: datetime | None,
    summary: DeriveSummary,
    linked: _Linked,
) -> bool:
    """Re-derive one chain (its environment of `tier`) from its first new deployment on (earlier
    links are kept), its rows written through `linked`; whether there was anything to
    re-derive. `end`: the last finish of its chain rows from `since` on (None: it has none)."""
    at = {"service": service_id, "environment": environment_id, "since": since}
    # the rows from `since` on go first: a deployment no longer successful or moved elsewhere
    # since it was chained leaves none behind
    dropped = 0
    if end is not None and end >= since:
        conn.execute(_DROP_CHANGES, at)
        dropped = conn.execute(_DROP_LINKS, at).rowcount
    rows = conn.execute(_NEW, at).all()
    if not rows:
        return dropped > 0  # nothing to link from `since` on (late data newer than the chain)
    new = [_as_step(row) for row in rows]
    # chained elsewhere (moved since: another service or environment)
    redo = [row.id for row in rows if row.chained]
    for start in range(0, len(redo), 500):
        part = {"ids": redo[start : start + 500]}
        conn.execute(_REDO_CHANGES, part)
        conn.execute(_REDO_LINKS, part)
    # of the earlier deployments only what linking the new ones reads: the previous one, the
    # last that named a commit (the history the chain ran last), the first (the baseline), and
    # which of the new ones' images ran before the previous one
    found = conn.execute(_PREVIOUS, at).first()
    previous = _as_step(found) if found else None
    base = previous.sha if previous else None
    if previous is not None and base is None:
        base = conn.execute(_NAMED, at).scalar()
    first = new[0] if previous is None else _as_step(conn.execute(_FIRST, at).one())
    ran = _ran_before(conn, at, previous, {_image(s) for s in new})
    chain_rows: list[dict[str, Any]] = []
    new_changes: list[tuple[int, str]] = []
    ran_last = RanLast(graph, base, as_set=len(new) >= WHOLE_HISTORY_FROM)
    for step in new:
        rollback, changes = _link(ran_last, step, previous, ran)
        chain_rows.append(
            {
                "deployment_id": step.id,
                "service_id": service_id,
                "environment_id": environment_id,
                "is_production": tier == "production",
                "finished_at": step.finished_at,
                "previous_deployment_id": previous.id if previous else None,
                "baseline": previous is None,
                "rollback": rollback,
                "changes": len(changes),
            }
        )
        new_changes.extend((step.id, sha) for sha in changes)
        if previous is not None:
            ran.add(_image(previous))
        previous = step
    shas = sorted({sha for _, sha in new_changes})
    # brought here before: by the baseline (its history) or as an earlier deployment's change
    carried: set[str] = set()
    if shas:
        baseline = graph.ancestors_among(shas, first.sha) if first.sha else set()
        carried = baseline | _carried(conn, service_id, environment_id, shas)
    starts = graph.starts(shas)
    change_rows = []
    for deployment_id, sha in new_changes:
        started, is_merge = starts[sha]
        change_rows.append(
            {
                "deployment_id": deployment_id,
                "sha": sha,
                "started_at": started,
                "is_merge": is_merge,
                "first_in_environment": sha not in carried,
                # right for a service with one production environment; _first_in_production
                # re-marks a service with several
                "first_in_production": tier == "production" and sha not in carried,
            }
        )
        carried.add(sha)
    linked.add(conn, chain_rows, change_rows)
    summary.deployments += len(chain_rows)
    summary.changes += len(change_rows)
    return True


@dataclass
class _Linked:
    """Chain and change rows derived and not written yet, written `FLUSH_ROWS` at a time (one
    write per chain was two statements a chain). No chain reads another's rows: a chain's reads
    are of its own earlier rows and of deployments, and its deletes are of its own rows."""

    chains: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self, conn: Connection, chains: list[dict[str, Any]], changes: list[dict[str, Any]]
    ) -> None:
        self.chains.extend(chains)
        self.changes.extend(changes)
        if len(self.chains) + len(self.changes) >= FLUSH_ROWS:
            self.flush(conn)

    def flush(self, conn: Connection) -> None:
        upsert(conn, DeploymentChain, self.chains)
        upsert(conn, DeploymentChange, self.changes)
        self.chains, self.changes = [], []


FLUSH_ROWS = 5000


# a chain with this many deployments to link holds the history it ran last as a set over the
# whole graph (a full derive); with fewer it asks bounded walks (an incremental one)
WHOLE_HISTORY_FROM = 16

# a chain's statements (bound to service, environment and the finish to re-derive from)
_CHAIN = and_(
    _SUCCESSFUL,
    Deployment.service_id == bindparam("service"),
    Deployment.environment_id == bindparam("environment"),
)
_STALE = select(DeploymentChain.deployment_id).where(
    DeploymentChain.service_id == bindparam("service"),
    DeploymentChain.environment_id == bindparam("environment"),
    DeploymentChain.finished_at >= bindparam("since"),
)
_DROP_CHANGES = delete(DeploymentChange).where(DeploymentChange.deployment_id.in_(_STALE))
_DROP_LINKS = delete(DeploymentChain).where(
    DeploymentChain.id.in_(_STALE.with_only_columns(DeploymentChain.id))
)
_REDO_CHANGES = delete(DeploymentChange).where(
    DeploymentChange.deployment_id.in_(bindparam("ids", expanding=True))
)
_REDO_LINKS = delete(DeploymentChain).where(
    DeploymentChain.deployment_id.in_(bindparam("ids", expanding=True))
)
_STEPS = select(
    Deployment.id, Deployment.sha, Deployment.image_digest, Deployment.finished_at, Deployment.ref
)
_EARLIEST = (Deployment.finished_at, Deployment.id)
_LATEST = (Deployment.finished_at.desc(), Deployment.id.desc())
_BEFORE = and_(_CHAIN, Deployment.finished_at < bindparam("since"))
_NEW = (
    _STEPS.add_columns(
        select(DeploymentChain.id)
        .where(DeploymentChain.deployment_id == Deployment.id)
        .exists()
        .label("chained")
    )
    .where(_CHAIN, Deployment.finished_at >= bindparam("since"))
    .order_by(*_EARLIEST)
)
_PREVIOUS = _STEPS.where(_BEFORE).order_by(*_LATEST).limit(1)
_NAMED = (
    select(Deployment.sha).where(_BEFORE, Deployment.sha.is_not(None)).order_by(*_LATEST).limit(1)
)
_FIRST = _STEPS.where(_CHAIN).order_by(*_EARLIEST).limit(1)


def _as_step(row: Any) -> _Step:
    """A successful deployment's row (finished, by `_SUCCESSFUL`) as a step of its chain."""
    return _Step(row.id, row.sha, row.image_digest, row.finished_at, row.ref)


def _ran_before(
    conn: Connection, at: dict[str, Any], previous: _Step | None, images: set[str]
) -> set[str]:
    """Which of `images` (`_image`) the chain ran before its deployment `previous`."""
    if previous is None:
        return set()
    digests = sorted(i for i in images if not i.startswith("commit:"))
    commits = sorted(i.removeprefix("commit:") for i in images if i.startswith("commit:"))
    named = [c for c in commits if c != "None"]
    kinds = (bool(digests), bool(named), "None" in commits)
    rows = conn.execute(
        _ran_before_statement(*kinds),
        {
            **at,
            "before": previous.finished_at,
            "before_id": previous.id,
            **({"digests": digests} if digests else {}),
            **({"named": named} if named else {}),
        },
    )
    return {_image(_Step(0, sha, digest, previous.finished_at, None)) for sha, digest in rows}


# The images are few and rarely ran before: looked up by digest or commit, the chain's service and
# environment inside coalesce so that SQLite (no statistics) does not walk the chain's history by
# its (service, environment, finished) index instead (0.15 s of a large organisation's weekday)
_RAN_BEFORE = (
    select(Deployment.sha, Deployment.image_digest)
    .where(
        _SUCCESSFUL,
        func.coalesce(Deployment.service_id, 0) == bindparam("service"),
        func.coalesce(Deployment.environment_id, 0) == bindparam("environment"),
        or_(
            Deployment.finished_at < bindparam("before"),
            and_(
                Deployment.finished_at == bindparam("before"),
                Deployment.id < bindparam("before_id"),
            ),
        ),
    )
    .distinct()
)


@cache
def _ran_before_statement(digests: bool, named: bool, neither: bool) -> Select[Any, Any]:
    """`_RAN_BEFORE` for the kinds of image there are (built once each: a chain's read is then
    a compiled statement, not an expression built and keyed again): by digest, by commit
    without a digest, by neither. Only those: an empty IN is no index lookup, and SQLite would
    scan every deployment for the OR."""
    ran = [
        *([Deployment.image_digest.in_(bindparam("digests", expanding=True))] if digests else []),
        *(
            [
                and_(
                    Deployment.image_digest.is_(None),
                    Deployment.sha.in_(bindparam("named", expanding=True)),
                )
            ]
            if named
            else []
        ),
        *([and_(Deployment.image_digest.is_(None), Deployment.sha.is_(None))] if neither else []),
    ]
    return _RAN_BEFORE.where(or_(*ran))


def _image(step: _Step) -> str:
    """What ran: the image digest, or the commit where the source gave no digest."""
    return step.digest or f"commit:{step.sha}"


def _link(
    ran_last: RanLast, step: _Step, previous: _Step | None, ran: set[str]
) -> tuple[bool, list[str]]:
    """(rollback, changes) for `step` after `previous`; `ran_last` is the history the chain ran
    last (moved on by `step`), `ran` the images that ran before `previous`."""
    if previous is None:
        ran_last.move(step.sha)
        return False, []
    if not step.sha and step.digest and step.digest != previous.digest:  # only the image known
        return _image(step) in ran, []
    if not step.sha or step.sha == previous.sha:  # a redeploy: neither change nor rollback
        return False, []
    if ran_last.holds(step.sha) or _image(step) in ran:
        ran_last.move(step.sha)
        return True, []
    return False, ran_last.bring(step.sha)


def _several_production(conn: Connection, services: list[int]) -> list[int]:
    """Which of `services` have chains in several production environments (regions): one
    grouped read of their production chain rows in the index, not each service's rows fetched
    (0.17 s of a large organisation's weekday, where one service of 264 touched has two)."""
    found: list[int] = []
    for start in range(0, len(services), 500):
        found.extend(
            conn.execute(
                select(DeploymentChain.service_id)
                .where(
                    DeploymentChain.service_id.in_(services[start : start + 500]),
                    DeploymentChain.is_production,
                )
                .group_by(DeploymentChain.service_id)
                .having(
                    func.min(DeploymentChain.environment_id)
                    != func.max(DeploymentChain.environment_id)
                )
            ).scalars()
        )
    return found


def _first_in_production(conn: Connection, service_id: int, graph: CommitGraph) -> None:
    """Mark each change of a service with several production environments (regions) first in
    production where it first reached any of them: walking the service's production deployments
    in finish order, a commit is first carried by the first deployment whose walk reaches it (a
    baseline carries its history, as in one environment)."""
    rows = conn.execute(
        select(DeploymentChain.deployment_id, Deployment.sha, DeploymentChain.environment_id)
        .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
        .where(DeploymentChain.service_id == service_id, DeploymentChain.is_production)
        .order_by(DeploymentChain.finished_at, DeploymentChain.deployment_id)
    ).all()
    if len({environment for _, _, environment in rows}) < 2:
        return  # one production environment: first there is first in production
    carried: set[str] = set()
    first: set[tuple[int, str]] = set()
    for deployment_id, sha, _ in rows:
        if sha:
            found, _ = graph.new_since(sha, carried)
            first.update((deployment_id, c) for c in found)
            carried.update(found)
    ids = [deployment_id for deployment_id, _, _ in rows]
    for start in range(0, len(ids), 500):
        changes = conn.execute(
            select(
                DeploymentChange.id,
                DeploymentChange.deployment_id,
                DeploymentChange.sha,
                DeploymentChange.first_in_production,
            ).where(DeploymentChange.deployment_id.in_(ids[start : start + 500]))
        ).all()
        wrong: dict[bool, list[int]] = {True: [], False: []}
        for c in changes:
            should = (c.deployment_id, c.sha) in first
            if should != c.first_in_production:
                wrong[should].append(c.id)
        for flag, change_ids in wrong.items():
            if change_ids:
                conn.execute(
                    update(DeploymentChange)
                    .where(DeploymentChange.id.in_(change_ids))
                    .values(first_in_production=flag)
                )


def _carried(conn: Connection, service_id: int, environment_id: int, shas: list[str]) -> set[str]:
    """Which of `shas` earlier (still derived) deployments of this chain already brought."""
    found: set[str] = set()
    for part in range(0, len(shas), 500):
        chunk = {
            "service": service_id,
            "environment": environment_id,
            "shas": shas[part : part + 500],
        }
        found.update(conn.execute(_CARRIED, chunk).scalars())
    return found


# the changes of these commits first (by sha: a few rows each), then whether their deployment is
# of this chain (joined, SQLite read every chain row of the service first)
_CARRIED = select(DeploymentChange.sha).where(
    DeploymentChange.sha.in_(bindparam("shas", expanding=True)),
    exists().where(
        DeploymentChain.deployment_id == DeploymentChange.deployment_id,
        DeploymentChain.service_id == bindparam("service"),
        DeploymentChain.environment_id == bindparam("environment"),
    ),
)


# -- change failures ------------------------------------------------------------------------


@dataclass
class _Prod:
    id: int
    finished_at: datetime
    ref: str | None
    rollback: bool
    reasons: set[str] = field(default_factory=set)
    incidents: list[tuple[datetime, datetime | None]] = field(default_factory=list)


def _failure_services(
    conn: Connection, after: datetime, moved: dict[int, datetime]
) -> dict[int, datetime | None]:
    """The services whose change failures data written at or after `after` may have changed,
    each with the earliest finish its deployments' change may reach back to, or None when
    anything of its history may have changed: `moved` (services whose chains this derive
    re-derived or whose deployments were written, a ref, a pipeline, an external id an incident
    names, with the earliest finish re-derived or written); those whose incidents were written
    or moved to another service (both services: None); and, when a merge request was written,
    those with an incident linked to a merge request (its commit may be another now: None)."""
    services: dict[int, datetime | None] = dict(moved)
    incidents = select(Incident.service_id, Incident.failure_service_id)
    for query in (
        incidents.where(Incident.changed_at >= after),
        incidents.where(Incident.failure_service_id.is_distinct_from(Incident.service_id)),
    ):
        for now, before in conn.execute(query):
            services.update((s, None) for s in (now, before) if s is not None)
    if conn.execute(select(MergeRequest.id).where(MergeRequest.changed_at >= after)).first():
        linked = select(Incident.service_id).where(Incident.linked_merge_request.is_not(None))
        services.update((s, None) for s in conn.execute(linked).scalars() if s is not None)
    return services


def _of(services: Iterable[int] | None, column: Any) -> Any:
    """The condition that `column` (a service id) is one of `services` (None: any service)."""
    return column.is_not(None) if services is None else column.in_(sorted(services))


def _failure_starts(
    conn: Connection, rules: FailureRules, moved: dict[int, datetime | None]
) -> dict[int, datetime | None]:
    """Per service, the first finish from which its change failures are recomputed (None: its
    whole history), given the earliest moment `moved` its data may have changed from.

    What happened before a moment T cannot change a production deployment D finished more than
    the longest window (failure, hotfix) before T: its next deployment in its chain and the
    incidents the window gives it are all before T. Only its recovery can: the first later
    deployment without a failure, which may lie after T. So each production environment's chain
    is recomputed from its last deployment before T - window that had no failure (its failed
    deployments since then may recover otherwise now), and the service from the earliest of
    those (incidents take the latest deployment of any region by the window rule). A chain with
    deployments before T - window but none of them without a failure needs the whole history."""
    window = max(rules.failure_window, rules.hotfix_window)
    starts: dict[int, datetime | None] = {}
    for service_id, moment in moved.items():
        if moment is None:
            starts[service_id] = None
            continue
        before = moment - window
        rows = conn.execute(_LAST_GOOD, {"service": service_id, "before": before}).all()
        good = [last for _, last in rows]
        starts[service_id] = None if None in good else min(good, default=before)
    return starts


# per production environment of a service, the finish of its last deployment before `before`
# without a change failure (None: it has deployments before then, all failed)
_LAST_GOOD = (
    select(
        DeploymentChain.environment_id,
        func.max(case((ChangeFailure.id.is_(None), DeploymentChain.finished_at))),
    )
    .outerjoin(ChangeFailure, ChangeFailure.deployment_id == DeploymentChain.deployment_id)
    .where(
        DeploymentChain.service_id == bindparam("service"),
        DeploymentChain.is_production,
        DeploymentChain.finished_at < bindparam("before"),
    )
    .group_by(DeploymentChain.environment_id)
)


def derive_failures(
    conn: Connection, rules: FailureRules, services: dict[int, datetime | None] | None = None
) -> tuple[int, int, int]:
    """Rebuild change_failure from the production chains and incidents of `services` (None:
    every service; those whose incidents' duplicate marks change are added), each from the
    earliest moment its data may have changed (None: its whole history; `_failure_starts`): a
    service's failures depend on its own chains and incidents only. Returns (failed changes of
    every service, services recomputed, production deployments read)."""
    marked = {
        incident_id: (service_id, counted)
        for incident_id, service_id, counted in conn.execute(
            select(Incident.id, Incident.service_id, Incident.duplicate_of).where(
                Incident.service_id.is_not(None)
            )
        )
    }
    # an incident several sources recorded counts once: the group's counted one (METRICS.md)
    now = mark_duplicates(conn)
    starts = None
    if services is not None:  # and the services whose incidents' marks changed
        services = dict(services)
        for i, (service_id, counted) in marked.items():
            if now.get(i) != counted and service_id is not None:
                services[service_id] = None
        starts = _failure_starts(conn, rules, services)
    production: dict[int, dict[int, list[_Prod]]] = defaultdict(lambda: defaultdict(list))
    rows = _production(conn, starts)
    by_key: dict[tuple[int, str], _Prod] = {}
    by_id: dict[int, _Prod] = {}
    for service_id, env_id, dep_id, finished, ref, rollback, source_id, external_id in rows:
        prod = _Prod(dep_id, finished, ref, bool(rollback))
        production[service_id][env_id].append(prod)
        by_key[(source_id, external_id)] = prod
        by_id[dep_id] = prod
    # incidents with a tracker's explicit link -> the production deployment it resolves to (one
    # before a service's start resolves to none here: its change failure is left as it is)
    explicit = {
        incident_id: by_id.get(deployment_id) if deployment_id is not None else None
        for incident_id, deployment_id in linked_incidents(
            conn, _of(services, Incident.service_id)
        ).items()
    }
    incidents = conn.execute(
        select(
            Incident.id,
            Incident.service_id,
            Incident.opened_at,
            Incident.resolved_at,
            Incident.deployment_source_id,
            Incident.deployment_external_id,
        ).where(_of(services, Incident.service_id), Incident.duplicate_of.is_(None))
    ).all()
    by_service: dict[int, list[Any]] = defaultdict(list)
    for incident in incidents:
        by_service[incident.service_id].append(incident)
    failures = []
    for service_id, chains in production.items():
        failures.extend(
            _service_failures(
                list(chains.values()), by_service.get(service_id, []), by_key, explicit, rules
            )
        )
    stale = _held(conn, starts) - {f["deployment_id"] for f in failures}
    gone = sorted(stale)
    for start in range(0, len(gone), 500):
        conn.execute(
            delete(ChangeFailure).where(ChangeFailure.deployment_id.in_(gone[start : start + 500]))
        )
    upsert(conn, ChangeFailure, failures)
    conn.execute(
        update(Incident)
        .where(Incident.failure_service_id.is_distinct_from(Incident.service_id))
        .values(failure_service_id=Incident.service_id)
    )
    total = conn.execute(select(func.count()).select_from(ChangeFailure)).scalar_one()
    return total, len(production) if services is None else len(services), len(rows)


_PRODUCTION = (
    select(
        DeploymentChain.service_id,
        DeploymentChain.environment_id,
        Deployment.id,
        DeploymentChain.finished_at,
        Deployment.ref,
        DeploymentChain.rollback,
        Deployment.source_id,
        Deployment.external_id,
    )
    .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
    .where(DeploymentChain.is_production)
)
_PRODUCTION_SINCE = _PRODUCTION.where(
    DeploymentChain.service_id == bindparam("service"),
    DeploymentChain.finished_at >= bindparam("start"),
).order_by(DeploymentChain.finished_at, Deployment.id)


def _production(conn: Connection, starts: dict[int, datetime | None] | None) -> list[Any]:
    """The production chain rows whose change failures are recomputed, by service, finish and
    id: of every service (`starts` None), else of each service of `starts` from its start (None:
    its whole history). A statement per service with a start: one statement with a condition per
    service had SQLite scan (0.27 s against 0.05 s on the large organisation)."""
    whole = None if starts is None else [s for s, start in starts.items() if start is None]
    rows: list[Any] = []
    if whole is None or whole:
        order = (DeploymentChain.service_id, DeploymentChain.finished_at, Deployment.id)
        rows.extend(
            conn.execute(_PRODUCTION.where(_of(whole, DeploymentChain.service_id)).order_by(*order))
        )
    for service_id, start in sorted((starts or {}).items()):
        if start is not None:
            rows.extend(conn.execute(_PRODUCTION_SINCE, {"service": service_id, "start": start}))
    return rows


def _held(conn: Connection, starts: dict[int, datetime | None] | None) -> set[int]:
    """The deployments with a change failure stored that the recompute replaces (`_production`'s
    services and starts), whether or not they are still in a production chain."""
    if starts is None:
        return set(conn.execute(select(ChangeFailure.deployment_id)).scalars())
    held: Any = conn.execute(
        select(ChangeFailure.deployment_id, Deployment.service_id, Deployment.finished_at)
        .join(Deployment, Deployment.id == ChangeFailure.deployment_id)
        .where(_of(starts, Deployment.service_id))
    )
    replaced = set()
    for deployment_id, service_id, finished in held:
        start = starts[service_id]  # one of `starts`, so not NULL
        if start is None or finished is None or finished >= start:
            replaced.add(deployment_id)
    return replaced


def _service_failures(
    chains: list[list[_Prod]],
    incidents: Iterable[Any],
    by_key: dict[tuple[int, str], _Prod],
    explicit: dict[int, _Prod | None],
    rules: FailureRules,
) -> list[dict[str, Any]]:
    """Failed changes of one service's production chains (one per production environment:
    N, rollbacks and recovery follow each environment's own chain). An incident goes to its
    explicit link when it has one (`explicit`: a tracker link resolved, None when it resolved to
    nothing; `by_key`: a linked deployment's key), else to the deployment the window gives."""
    for deployments in chains:
        for d, n in zip(deployments, [*deployments[1:], None], strict=True):
            if (
                n is not None
                and n.rollback
                and n.finished_at < d.finished_at + rules.failure_window
            ):
                d.reasons.add("rollback")
            if (
                n is not None
                and rules.is_hotfix(n.ref)
                and n.finished_at < d.finished_at + rules.hotfix_window
            ):
                d.reasons.add("hotfix")
    carried = {d.id for deployments in chains for d in deployments}
    finishes = [[d.finished_at for d in deployments] for deployments in chains]
    for incident in incidents:
        has_link = incident.id in explicit
        linked = (
            explicit[incident.id]
            if has_link
            else by_key.get((incident.deployment_source_id, incident.deployment_external_id))
        )
        target = (
            linked
            if linked and linked.id in carried
            else (
                None
                if incident.deployment_external_id or has_link
                else _by_window(chains, finishes, incident.opened_at, rules)
            )
        )
        if target is not None:
            target.reasons.add("incident")
            target.incidents.append((incident.opened_at, incident.resolved_at))
    return [row for deployments in chains for row in _recoveries(deployments)]


def _recoveries(deployments: list[_Prod]) -> list[dict[str, Any]]:
    """change_failure rows of one chain's failed changes, with their recovery."""
    rows = []
    for d in (d for d in deployments if d.reasons):
        later_good = next(
            (n for n in deployments if n.finished_at > d.finished_at and not n.reasons), None
        )
        candidates = [later_good.finished_at] if later_good else []
        # restored when its last incident is resolved; one resolved before it was opened has no
        # usable resolution and is left out (docs/METRICS.md)
        resolutions = [r for opened, r in d.incidents if r is None or r >= opened]
        if resolutions and None not in resolutions:
            candidates.append(max(r for r in resolutions if r is not None))
        recovered = min(candidates) if candidates else None
        rows.append(
            {
                "deployment_id": d.id,
                "incident": "incident" in d.reasons,
                "rollback": "rollback" in d.reasons,
                "hotfix": "hotfix" in d.reasons,
                "recovered_at": recovered,
                "recovered_by_deployment_id": later_good.id
                if later_good and recovered == later_good.finished_at
                else None,
            }
        )
    return rows


def _by_window(
    chains: list[list[_Prod]], finishes: list[list[datetime]], opened: datetime, rules: FailureRules
) -> _Prod | None:
    """The production deployment an incident opened at `opened` belongs to by the window rule
    (the last one finished by then, if within the failure window; `finishes`: each chain's
    finish times, in order); with several production environments (regions), the
    latest-finished of their candidates."""
    found = []
    for deployments, finished in zip(chains, finishes, strict=True):
        last = bisect_right(finished, opened) - 1
        if last >= 0 and opened < finished[last] + rules.failure_window:
            found.append(deployments[last])
    return max(found, key=lambda d: (d.finished_at, d.id), default=None)
