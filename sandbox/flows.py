"""Branch strategies other than trunk-based development (DESIGN.md sections 5 and 7): in every
organisation but `tiny`, one GitLab-built service works git-flow and one GitLab flow; the rest stay
trunk-based. `Service.flow` records which (the ground truth of `analytics.branching`).

- **git-flow**: feature merge requests target a long-lived `develop` (direct pushes land there
  too); every few working days a `release/1.N` branch is cut from develop with a version bump,
  merged into `main` by a merge request and back into develop by another. `main` carries only
  release merges, so test, staging and production deploy releases from main; `hotfix/*` branches
  start from the failed production commit on main (`sandbox.delivery`).
- **GitLab flow**: feature merge requests target `main` as in trunk-based development; the
  environment branches `pre-production` and `production` receive fast-forward merge requests (from
  main, and production from pre-production; an untested promotion straight from main), and staging
  and production deploy from them. The commits are main's, so the image built once on main is what
  every environment runs. The team protects main: no direct pushes.

The chosen services are rebuilt by `sandbox.generate` after every other service (with their own
random streams, as before), so the others keep their history and ids; the rebuilt objects take the
instance-wide ids after all others but the migrations' (`sandbox.migrations`, which runs last).
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from sandbox.delivery import DeliveryBuilder
from sandbox.history import History, HistoryBuilder
from sandbox.model import Branch, Commit, Developer, MergeRequest, Note, Organisation
from sandbox.pipelines import lognormal

TRUNK, GIT_FLOW, GITLAB_FLOW = "trunk", "git-flow", "gitlab-flow"
DEVELOP = "develop"
ENVIRONMENT_BRANCHES = {"staging": "pre-production", "production": "production"}
RELEASE_EVERY_DAYS = (4, 7)  # working days between releases (git-flow)


def chosen_flows(org: Organisation) -> dict[str, str]:
    """Service name -> flow for the services that do not work trunk-based: git-flow for the last
    GitLab-built service of the first team on a medium or low profile (slow releases suit it),
    GitLab flow for the last GitLab-built service of the first team; none in `tiny`."""
    if org.size == "tiny":
        return {}
    gitlab = {s.name for s in org.services if s.builder == "gitlab"}

    def last_service(profiles: tuple[str, ...]) -> str | None:
        for team in org.teams:
            own = [name for name in team.services if name in gitlab]
            if team.profile in profiles and len(own) > 1:
                return own[-1]
        return None

    flows: dict[str, str] = {}
    slow = last_service(("medium", "low"))
    if slow:
        flows[slow] = GIT_FLOW
    fast = last_service(("elite", "high", "medium", "low"))
    if fast and fast not in flows:
        flows[fast] = GITLAB_FLOW
    return flows


class GitFlowHistory(HistoryBuilder):
    """Feature work on `develop`; releases cut from it and merged into main and back."""

    trunk = DEVELOP

    def build(self) -> History:
        self.develop: list[tuple[datetime, str]] = []
        self.minor = 0
        self.released: str | None = None  # the develop head of the last release
        history = super().build()
        assert self.s.created_at is not None
        self.s.branches[DEVELOP] = Branch(
            DEVELOP, self.s.created_at, [history.main[0], *self.develop], protected=True
        )
        return history

    def _plan_specials(self, events: list[tuple[datetime, int, str, object]], order: int) -> None:
        super()._plan_specials(events, order)
        days = self.clock.workdays(self.start, self.now)
        i = self.rng.randint(*RELEASE_EVERY_DAYS)
        while i < len(days):
            at = self.clock.random_time(self.rng, days[i])
            heapq.heappush(events, (at, order + 3000 + i, "release", None))
            i += self.rng.randint(*RELEASE_EVERY_DAYS)

    def _advance_main(self, commit: Commit, user: Developer) -> None:
        """Develop moves; main only moves when a release merges."""
        self.head = commit.sha
        self.develop.append((commit.committed_at, commit.sha))
        self.s.pipelines.append(
            self.pipelines.build(DEVELOP, commit.sha, user, commit.committed_at, main=True)
        )

    def _release(self, at: datetime) -> tuple[datetime, MergeRequest] | None:
        assert self.head is not None
        if self.head == self.released:
            return None  # nothing new on develop
        self.released = self.head
        self.minor += 1
        version = f"1.{self.minor}"
        name = f"release/{version}"
        author = self.rng.choice(self.team.developers)
        bump = self.commit((self.head,), author, at, name, f"Bump version to {version}")
        self.s.pipelines.append(
            self.pipelines.build(name, bump.sha, author, bump.committed_at, main=False, fail=False)
        )
        self.s.branches[name] = Branch(name, at, [(bump.committed_at, bump.sha)])
        created = bump.committed_at + timedelta(minutes=5)
        if created >= self.now:
            return None
        mr = self._merge_request(f"Release {version}", author, name, "main", created, bump)
        merge_at = self.clock.add(created, lognormal(self.rng, 2 * 3600, 0.5))
        reviewer = self._reviewer(author)
        review = max(created + timedelta(minutes=1), merge_at - timedelta(minutes=15))
        if review < self.now:
            mr.notes.append(Note(self.ids.next("note"), reviewer, review, "LGTM"))
            mr.first_review_at = mr.updated_at = review
        return merge_at, mr

    def _merge(self, mr: MergeRequest, at: datetime) -> None:
        if not mr.source_branch.startswith("release/"):
            super()._merge(mr, at)
            return
        approver = self._reviewer(mr.author)
        main_head = self.history.main[-1][1]
        title = f"Merge branch '{mr.source_branch}' into 'main'"
        merge = self.commit((main_head, mr.head_sha), approver, at, "main", title, committed=at)
        self._merged(mr, approver, at, merge.sha)
        self.s.branches[mr.source_branch].merged_at = at
        self.history.main.append((merge.committed_at, merge.sha))
        pipeline = self.pipelines.build(
            "main", merge.sha, approver, merge.committed_at, main=True, package=True
        )
        self.s.pipelines.append(pipeline)
        self.history.main_pipelines[merge.sha] = pipeline
        back_at = at + timedelta(minutes=10)
        if back_at >= self.now:
            return
        bump = self.s.commits[mr.head_sha]
        back = self._merge_request(
            f"Merge {mr.source_branch} back into develop",
            approver,
            mr.source_branch,
            DEVELOP,
            at + timedelta(minutes=1),
            bump,
        )
        title = f"Merge branch '{mr.source_branch}' into '{DEVELOP}'"
        assert self.head is not None
        commit = self.commit((self.head, bump.sha), approver, back_at, DEVELOP, title, back_at)
        self._merged(back, mr.author, back_at, commit.sha)
        self._advance_main(commit, approver)

    def _merge_request(
        self, title: str, author: Developer, source: str, target: str, at: datetime, head: Commit
    ) -> MergeRequest:
        self.mr_iid += 1
        mr = MergeRequest(
            self.ids.next("merge_request"),
            self.mr_iid,
            title,
            author,
            source,
            target,
            created_at=at,
            first_commit_at=head.authored_at,
            commits=[head.sha],
        )
        mr.updated_at = at
        self.s.merge_requests.append(mr)
        return mr

    def _merged(self, mr: MergeRequest, approver: Developer, at: datetime, sha: str) -> None:
        mr.notes.append(
            Note(
                self.ids.next("note"),
                approver,
                at - timedelta(seconds=30),
                "approved this merge request",
                system=True,
            )
        )
        if approver is not mr.author and mr.first_review_at is None:
            mr.first_review_at = at - timedelta(seconds=30)  # the approval is the first review
        mr.approvers, mr.merged_by, mr.state = [approver], approver, "merged"
        mr.updated_at = mr.merged_at = at
        mr.merge_commit_sha = sha

    def _reviewer(self, author: Developer) -> Developer:
        return self.rng.choice([d for d in self.team.developers if d is not author] or [author])


class EnvironmentBranchDelivery(DeliveryBuilder):
    """GitLab flow: staging deploys from `pre-production`, production from `production`; each
    promotion fast-forwards the environment branch by a merge request first."""

    refs = ENVIRONMENT_BRANCHES

    def build(self, history: History) -> None:
        self.mr_iid = max((mr.iid for mr in self.s.merge_requests), default=0)
        super().build(history)

    def _promoting(self, canonical: str, sha: str, at: datetime, *, untested: bool) -> None:
        target = ENVIRONMENT_BRANCHES[canonical]
        source = "main" if canonical == "staging" or untested else ENVIRONMENT_BRANCHES["staging"]
        branch = self.s.branches.get(target)
        if branch is not None and branch.head == sha:
            return  # already there: nothing to merge
        merged = at - timedelta(seconds=30)
        created = max(
            at - timedelta(minutes=self.rng.uniform(10, 40)),
            self.s.commits[sha].committed_at + timedelta(seconds=30),
        )
        author = self.rng.choice(self.team.developers)
        approver = self.rng.choice([d for d in self.team.developers if d is not author] or [author])
        self.mr_iid += 1
        review = merged - timedelta(seconds=60)
        mr = MergeRequest(
            self.ids.next("merge_request"),
            self.mr_iid,
            f"Promote {source} to {target}",
            author,
            source,
            target,
            created_at=created,
            first_commit_at=self.s.commits[sha].authored_at,
            commits=[sha],
            state="merged",
            updated_at=merged,
            merged_at=merged,
            merged_by=approver,
            approvers=[approver],
            first_review_at=review,
        )
        mr.notes.append(
            Note(self.ids.next("note"), approver, review, "approved this merge request", True)
        )
        self.s.merge_requests.append(mr)
        if branch is None:
            self.s.branches[target] = Branch(target, merged, [(merged, sha)], protected=True)
        else:
            branch.heads.append((merged, sha))
