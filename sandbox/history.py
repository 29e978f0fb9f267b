"""A service's code history: merge requests on short feature branches (merge or squash), a few direct
pushes, a few long-lived and stale branches, and a build pipeline for every push."""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sandbox.clock import WORK_SECONDS, WorkClock, ms
from sandbox.model import Branch, Commit, Developer, MergeRequest, Note, Pipeline, Service, Team
from sandbox.pipelines import Ids, PipelineFactory, lognormal

# The profiles' coding, pickup and review medians are wall-clock hours, as the metrics measure them
# (DESIGN.md section 7); the clock adds working time, skipping nights and weekends, so a draw is
# scaled to the working time that spans about as much wall-clock time. Measured on the demo org:
# per-service medians of coding 1-27 h, pickup 1-17 h, review 0-22 h, branch life 17-74 h
# (before: coding 5-97 h, pickup 1-22 h, review 0-29 h, branch life 17-167 h).
WORK_SHARE_CODING = 0.3
WORK_SHARE_WAITING = 0.6

WORDS = [
    "cache",
    "checkout",
    "payment",
    "retry",
    "timeout",
    "ledger",
    "invoice",
    "search",
    "login",
    "token",
    "queue",
    "report",
    "export",
    "webhook",
    "refund",
    "metrics",
    "schema",
    "limit",
    "audit",
    "profile",
    "session",
    "index",
    "batch",
    "import",
    "pricing",
    "quota",
]
VERBS = ("Add", "Fix", "Refactor", "Speed up", "Remove", "Validate", "Log", "Handle", "Rename")


@dataclass
class CodeProfile:
    """How a team writes code (medians in hours; rates per working day per service)."""

    mr_rate: float
    coding_h: float
    pickup_h: float
    review_h: float
    squash_share: float  # share of MRs merged with squash
    direct_push_rate: float  # direct pushes per working day
    long_lived: int  # MRs kept open for weeks
    stale: int  # branches abandoned without an MR


@dataclass
class History:
    """What delivery needs from the code history: main's commits in order with their pipelines."""

    main: list[tuple[datetime, str]] = field(default_factory=list)  # (pushed at, sha)
    main_pipelines: dict[str, Pipeline] = field(default_factory=dict)  # sha -> build pipeline


def make_sha(service: str, n: int) -> str:
    """A deterministic 40-character commit sha."""
    return hashlib.sha1(f"{service}/{n}".encode()).hexdigest()


class HistoryBuilder:
    """Generates one service's history between `start` and `now`: trunk-based, feature branches
    merged into `trunk` (sandbox.flows subclasses it for git-flow)."""

    trunk = "main"  # where feature merge requests land and direct pushes go

    def __init__(
        self,
        service: Service,
        team: Team,
        clock: WorkClock,
        rng: random.Random,
        ids: Ids,
        profile: CodeProfile,
        pipelines: PipelineFactory,
        start: datetime,
        now: datetime,
    ) -> None:
        self.s, self.team, self.clock, self.rng, self.ids = service, team, clock, rng, ids
        self.p, self.pipelines, self.start, self.now = profile, pipelines, start, now
        self.counter = 0
        self.history = History()
        self.head: str | None = None
        self.mr_iid = 0

    # -- commits ----------------------------------------------------------------------------

    def commit(
        self,
        parents: tuple[str, ...],
        author: Developer,
        authored: datetime,
        branch: str,
        title: str,
        committed: datetime | None = None,
    ) -> Commit:
        self.counter += 1
        size = max(1, int(lognormal(self.rng, 40, 1.0)))
        commit = Commit(
            make_sha(self.s.name, self.counter),
            parents,
            author,
            ms(authored),
            ms(committed or authored + timedelta(seconds=self.rng.uniform(5, 300))),
            title,
            additions=int(size * 0.7),
            deletions=size - int(size * 0.7),
            branch=branch,
        )
        self.s.commits[commit.sha] = commit
        return commit

    def title(self) -> str:
        return f"{self.rng.choice(VERBS)} {self.rng.choice(WORDS)} {self.rng.choice(WORDS)}"

    # -- the sweep --------------------------------------------------------------------------

    def build(self) -> History:
        """Generate the history; returns main's commits and their build pipelines."""
        root_author = self.team.developers[0]
        root = self.commit(
            (), root_author, self.start - timedelta(days=30), "main", "Initial commit"
        )
        self.s.created_at = root.authored_at
        self.head = root.sha
        self.history.main.append((root.committed_at, root.sha))
        events: list[tuple[datetime, int, str, object]] = []
        order = 0
        for day in self.clock.workdays(self.start, self.now):
            for _ in range(self._poisson(self.p.mr_rate)):
                order += 1
                plan = self._plan_mr(day)
                heapq.heappush(events, (plan.first_commit_at, order, "open", plan))
            for _ in range(self._poisson(self.p.direct_push_rate)):
                order += 1
                at = self.clock.random_time(self.rng, day)
                heapq.heappush(events, (at, order, "push", self.rng.choice(self.team.developers)))
        self._plan_specials(events, order)
        while events:
            at, _, kind, payload = heapq.heappop(events)
            if at >= self.now:
                continue
            if kind == "open":
                assert isinstance(payload, MergeRequest)
                merge_at = self._open(payload)
                if merge_at is not None:
                    order += 1
                    heapq.heappush(events, (merge_at, order, "merge", payload))
            elif kind == "merge":
                assert isinstance(payload, MergeRequest)
                self._merge(payload, at)
            elif kind == "push":
                assert isinstance(payload, Developer)
                self._direct_push(payload, at)
            elif kind == "stale":
                assert isinstance(payload, Developer)
                self._stale_branch(payload, at)
            elif kind == "release":
                planned = self._release(at)
                if planned is not None:
                    order += 1
                    heapq.heappush(events, (planned[0], order, "merge", planned[1]))
        self.s.branches["main"] = Branch(
            "main", self.s.created_at, list(self.history.main), protected=True
        )
        return self.history

    def _poisson(self, rate: float) -> int:
        count, limit, product = 0, pow(2.718281828, -rate), self.rng.random()
        while product > limit:
            count += 1
            product *= self.rng.random()
        return count

    def _plan_mr(self, day: object, coding_days: float | None = None) -> MergeRequest:
        rng = self.rng
        author = rng.choice(self.team.developers)
        first = self.clock.random_time(rng, day)  # type: ignore[arg-type]
        coding = (
            coding_days * WORK_SECONDS
            if coding_days
            else lognormal(rng, self.p.coding_h * 3600 * WORK_SHARE_CODING, 0.8)
        )
        created = self.clock.add(first, coding)
        self.mr_iid += 1
        slug = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{self.mr_iid}"
        mr = MergeRequest(
            self.ids.next("merge_request"),
            self.mr_iid,
            self.title(),
            author,
            f"feature/{slug}",
            self.trunk,
            created_at=created,
            first_commit_at=first,
            commits=[],
            squash=rng.random() < self.p.squash_share,
        )
        mr.updated_at = created
        return mr

    def _plan_specials(self, events: list[tuple[datetime, int, str, object]], order: int) -> None:
        days = self.clock.workdays(self.start, self.now)
        for i in range(self.p.long_lived):
            day = days[max(0, len(days) - 1 - self.rng.randint(12, 20) - i)]
            mr = self._plan_mr(day, coding_days=self.rng.uniform(25, 40))  # still open at the end
            heapq.heappush(events, (mr.first_commit_at, order + 1000 + i, "open", mr))
        for i in range(self.p.stale):
            day = days[max(0, len(days) - 1 - self.rng.randint(30, 45) - i)]
            at = self.clock.random_time(self.rng, day)
            heapq.heappush(
                events, (at, order + 2000 + i, "stale", self.rng.choice(self.team.developers))
            )

    # -- events ---------------------------------------------------------------------------

    def _open(self, mr: MergeRequest) -> datetime | None:
        """Push the MR's commits (a pipeline each) and open it; returns when it will merge."""
        rng = self.rng
        assert self.head is not None
        count = min(5, max(1, int(lognormal(rng, 2, 0.5) + 0.5)))
        span = (mr.created_at - mr.first_commit_at).total_seconds()
        parent = self.head
        for i in range(count):
            authored = mr.first_commit_at + timedelta(seconds=span * i / count)
            if authored >= self.now:
                break
            commit = self.commit((parent,), mr.author, authored, mr.source_branch, self.title())
            mr.commits.append(commit.sha)
            last = i == count - 1
            fail = (rng.random() < 0.05) if last else None  # ~5% are merged on a red pipeline
            self.s.pipelines.append(
                self.pipelines.build(
                    mr.source_branch,
                    commit.sha,
                    mr.author,
                    commit.committed_at,
                    main=False,
                    fail=fail,
                )
            )
            parent = commit.sha
        if not mr.commits:
            return None
        self.s.branches[mr.source_branch] = Branch(
            mr.source_branch,
            mr.first_commit_at,
            [(self.s.commits[sha].committed_at, sha) for sha in mr.commits],
        )
        if mr.created_at >= self.now:  # still coding: a branch without an MR yet
            return None
        self.s.merge_requests.append(mr)
        reviewers = [d for d in self.team.developers if d is not mr.author] or [mr.author]
        reviewer = rng.choice(reviewers)
        wait = WORK_SHARE_WAITING
        pickup = self.clock.add(mr.created_at, lognormal(rng, self.p.pickup_h * 3600 * wait, 1.2))
        review = self.clock.add(pickup, lognormal(rng, self.p.review_h * 3600 * wait, 0.8))
        if rng.random() < 0.15:  # a note copied from an old issue, before the MR existed
            mr.notes.append(
                Note(
                    self.ids.next("note"),
                    reviewer,
                    mr.created_at - timedelta(hours=3),
                    "Context from the original issue",
                )
            )
        if pickup < self.now:
            mr.notes.append(
                Note(self.ids.next("note"), reviewer, pickup, "Looks reasonable; a question inline")
            )
            mr.first_review_at = pickup
            mr.updated_at = pickup
        if review >= self.now:
            return None  # still in review at the end
        if rng.random() < 0.05:
            mr.state, mr.closed_at, mr.updated_at = "closed", review, review
            return None
        return review

    def _merge(self, mr: MergeRequest, at: datetime) -> None:
        rng = self.rng
        assert self.head is not None
        approver = next((n.author for n in mr.notes if n.created_at >= mr.created_at), mr.author)
        mr.updated_at = mr.merged_at = at
        if rng.random() > 0.04:  # a few merged without an approval
            mr.approvers = [approver]
            mr.notes.append(
                Note(
                    self.ids.next("note"),
                    approver,
                    at - timedelta(seconds=30),
                    "approved this merge request",
                    system=True,
                )
            )
        mr.state, mr.merged_by = "merged", approver
        title = f"Merge branch '{mr.source_branch}' into '{self.trunk}'"
        if mr.squash:
            commit = self.commit((self.head,), mr.author, at, self.trunk, mr.title, committed=at)
            mr.squash_commit_sha = commit.sha
        else:
            commit = self.commit(
                (self.head, mr.head_sha), approver, at, self.trunk, title, committed=at
            )
            mr.merge_commit_sha = commit.sha
        self.s.branches[mr.source_branch].merged_at = at
        self._advance_main(commit, approver)

    def _direct_push(self, author: Developer, at: datetime) -> None:
        assert self.head is not None
        commit = self.commit((self.head,), author, at, self.trunk, f"{self.title()} (direct)")
        self._advance_main(commit, author)

    def _advance_main(self, commit: Commit, user: Developer) -> None:
        self.head = commit.sha
        self.history.main.append((commit.committed_at, commit.sha))
        pipeline = self.pipelines.build(
            "main", commit.sha, user, commit.committed_at, main=True, package=True
        )
        self.s.pipelines.append(pipeline)
        self.history.main_pipelines[commit.sha] = pipeline

    def _release(self, at: datetime) -> tuple[datetime, MergeRequest] | None:
        """Cut a release at `at`; returns when its merge request merges. Trunk-based: none."""
        return None

    def _stale_branch(self, author: Developer, at: datetime) -> None:
        assert self.head is not None
        name = f"spike/{self.rng.choice(WORDS)}-{self.counter}"
        commit = self.commit((self.head,), author, at, name, f"WIP {self.title()}")
        self.s.pipelines.append(
            self.pipelines.build(name, commit.sha, author, commit.committed_at, main=False)
        )
        self.s.branches[name] = Branch(name, at, [(commit.committed_at, commit.sha)])
