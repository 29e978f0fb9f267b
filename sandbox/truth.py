"""Ground truth of a generated organisation: what a correct sync and correct analytics must find.

The generator knows what happened; these functions say it in the warehouse's terms (counts per
table, per-object facts), as of an instant, so tests can compare collectors and analytics with it.
The metrics themselves (deployment changes, lead times, failures, recoveries, rework), computed in
plain Python from the same objects, are in `sandbox.reference`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sandbox import gitlab_payloads as render
from sandbox import jenkins_org as jenkins
from sandbox.image_repos import repositories
from sandbox.jenkins_org import iter_jobs
from sandbox.model import Organisation, Service

# the warehouse tables a GitLab sync fills, as `counts` reports them
SYNCED_TABLES = (
    "repo",
    "commit",
    "commit_parent",
    "branch",
    "merge_request",
    "mr_commit",
    "pipeline",
    "job",
    "test_run",
    "deployment",
    "image",
    "image_tag",
    "incident",
    "environment",
)


def counts(org: Organisation, at: datetime | None = None) -> dict[str, int]:
    """Rows each warehouse table must hold after a full sync of the GitLab simulator at `at`.

    GitLab holds every service's code, registry and incidents, but the pipelines, environments
    and deployments of GitLab-built services only (Jenkins builds and deploys the others:
    `jenkins_counts`)."""
    at = at or org.now
    c: dict[str, int] = dict.fromkeys((t for t in SYNCED_TABLES if t != "environment"), 0)
    environments: set[str] = set()
    for s in org.services:
        c["repo"] += 1
        commits = [x for x in s.commits.values() if x.committed_at <= at]
        c["commit"] += len(commits)
        unlisted = render.unlisted_commits(s, at)  # stored from MR commits, without parents
        c["commit_parent"] += sum(len(x.parents) for x in commits if x.sha not in unlisted)
        c["branch"] += sum(1 for b in s.branches.values() if render.branch(s, b, "", at))
        mrs = [mr for mr in s.merge_requests if mr.created_at <= at]
        c["merge_request"] += len(mrs)
        c["mr_commit"] += sum(
            1 for mr in mrs for sha in mr.commits if s.commits[sha].committed_at <= at
        )
        for r in repositories(s):
            tags = render.current_tags(r, at)
            c["image"] += len({digest for digest, _ in tags.values()})
            c["image_tag"] += len(tags)
        c["incident"] += sum(1 for i in s.incidents if i.created_at <= at)
        if s.builder == "jenkins":
            continue
        pipelines = [p for p in s.pipelines if p.created_at <= at]
        c["pipeline"] += len(pipelines)
        c["job"] += sum(1 for p in pipelines for j in p.jobs if j.created_at <= at)
        c["test_run"] += sum(
            len(p.test_suites)
            for p in pipelines
            if render.pipeline_state(p, at)["status"] in ("success", "failed", "canceled")
            and render.test_report_summary(p, at)["test_suites"]
        )
        c["deployment"] += sum(1 for d in s.deployments if d.created_at <= at)
        environments.update(e.canonical for e in s.environments.values())
    c["environment"] = len(environments)
    return c


def jenkins_counts(org: Organisation, at: datetime | None = None) -> dict[str, int]:
    """Rows a full sync of the Jenkins simulator at `at` must write: a pipeline per build of a
    build job, a job per stage its pipeline builds show, a test run per suite of a finished build,
    a deployment per build of a deploy job; and the services, repos and environments they name."""
    at = at or org.now
    c = dict.fromkeys(("pipeline", "job", "test_run", "deployment"), 0)
    environments: set[str] = set()
    for job in iter_jobs(org.jenkins):
        builds = [b for b in job.builds if jenkins.visible(b, at)]
        if job.deploy:
            c["deployment"] += len(builds)
            environments.update(b.deployment.environment.canonical for b in builds if b.deployment)
            continue
        c["pipeline"] += len(builds)
        for b in builds:
            if job.kind == "pipeline":
                c["job"] += sum(1 for j in b.stages if jenkins.stage_status(b, j, at))
            if not jenkins.building(b, at):
                c["test_run"] += len(jenkins.published_suites(b, at))
    services = {job.service for job in iter_jobs(org.jenkins) if job.service}
    c["service"] = len(services)  # a service deployed under another name is two
    c["repo"] = len({s.name for s in org.services if {s.name, s.deployed_as} & services})
    c["environment"] = len(environments)
    return c


def deployments(org: Organisation) -> list[dict[str, Any]]:
    """Per deployment: where, what, when, and what the generator meant by it."""
    return [
        {
            "service": s.deployed_as,
            "external_id": str(d.id),
            "environment": d.environment.canonical,
            "raw_environment": d.environment.name,
            "status": d.status,
            "sha": d.sha,
            "ref": d.ref,
            "digest": d.digest,
            "finished_at": render.ts(d.finished_at),
            "rollback": d.rollback,
            "hotfix": d.hotfix,
            "untested": d.untested,
            "rebuilt": d.rebuilt,
            "failed_change": list(d.failed_change),
            "kind": d.kind,
            "schema_version": d.schema_version,
            "skipped_env": d.skipped_env,
        }
        for s in org.services
        for d in s.deployments
    ]


def summary(org: Organisation) -> dict[str, Any]:
    """The ground truth as JSON: the organisation, counts per table, every deployment with its
    changes, failure reasons, recovery and the environments an untested image skipped (by the
    definitions, sandbox/reference.py), every change's
    lead time and every merged MR's stage times."""
    from sandbox import reference as ref

    chains = ref.deployment_changes(org)
    failures = ref.change_failures(org)
    recoveries = ref.recoveries(org)
    untested = ref.untested_images(org)  # the policy's definition: every environment before
    rows = deployments(org)
    for row in rows:
        key = int(row["external_id"])
        chain = chains.get(key)
        row["changes"] = list(chain.changes) if chain else []
        row["baseline"] = bool(chain and chain.baseline)
        row["rollback_by_definition"] = bool(chain and chain.rollback)
        failure = failures.get(key)
        row["failure_reasons"] = list(failure.reasons) if failure else []
        recovery = recoveries.get(key)
        row["recovered_at"] = render.ts(recovery.recovered_at) if recovery else None
        row["untested_skipped"] = list(untested.get(key, ()))
    return {
        "seed": org.seed,
        "size": org.size,
        "now": render.ts(org.now),
        "start": render.ts(org.start),
        "teams": [
            {"name": t.name, "profile": t.profile, "timezone": t.timezone, "services": t.services}
            for t in org.teams
        ],
        "counts": counts(org),
        "jenkins_counts": jenkins_counts(org),
        "deployments": rows,
        "lead_times": [
            {
                "service": t.service,
                "sha": t.sha,
                "deployment": t.deployment_id,
                "hours": t.hours,
                "merge_commit": t.is_merge,
            }
            for t in ref.lead_times(org)
        ],
        "merge_requests": [
            {
                "service": m.service,
                "iid": m.iid,
                "deployment": m.deployment_id,
                "coding": m.coding,
                "pickup": m.pickup,
                "review": m.review,
                "deploy": m.deploy,
                "cycle": m.cycle,
            }
            for m in ref.merge_requests(org)
        ],
    }


def branch_signals(
    org: Organisation, since: datetime, until: datetime
) -> dict[str, dict[str, Any]]:
    """Per service, its branch strategy as generated (`Service.flow`) and, by the definitions of
    docs/POLICIES.md "Branch strategy", the signals over the merge requests merged in [since,
    until): feature merges (from branches no merge request of the period targets, other than the
    default one), their median branch life in hours (first commit authored to merge), feature
    merges into the default branch per working day (UTC), active branches (not long-lived, a commit
    in the last 14 days, not merged or closed) and the feature work's authors, and the environment
    branches (fed by the default branch, directly or through one another)."""
    from sandbox import reference as ref

    weekdays = sum(
        1 for n in range((until - since).days) if (since + timedelta(days=n)).weekday() < 5
    )
    out: dict[str, dict[str, Any]] = {}
    for s in org.services:
        merged = [
            m for m in s.merge_requests if m.merged_at is not None and since <= m.merged_at < until
        ]
        long_lived = {s.default_branch} | {m.target_branch for m in merged}
        features = [m for m in merged if m.source_branch not in long_lived]
        lives = [
            ref.hours(min(s.commits[sha].authored_at for sha in m.commits), m.merged_at)
            for m in features
            if m.merged_at is not None
        ]
        finished = {
            m.source_branch
            for m in s.merge_requests
            if (m.merged_at and m.merged_at < until) or (m.closed_at and m.closed_at < until)
        }
        recent = until - timedelta(days=14)
        active = [
            b.name
            for b in s.branches.values()
            if b.name not in long_lived
            and b.name not in finished
            and recent <= s.commits[b.head].committed_at < until
        ]
        environment: list[str] = []
        while True:
            feeding = {s.default_branch, *environment}
            fed = Counter(
                m.target_branch
                for m in merged
                if m.source_branch in feeding and m.target_branch not in feeding
            )
            new = sorted(t for t, n in fed.items() if n >= 2)
            if not new:
                break
            environment.extend(new)
        out[s.name] = {
            "flow": s.flow,
            "feature_merges": len(features),
            "median_branch_life_hours": ref.percentile(lives, 0.5),
            "merges_per_day": sum(m.target_branch == s.default_branch for m in features) / weekdays,
            "active_branches": len(active),
            "authors": len({m.author.username for m in features}),
            "environment_branches": environment,
        }
    return out


def long_lived_branches(
    org: Organisation, until: datetime, max_age: timedelta = timedelta(days=7)
) -> dict[tuple[str, str], datetime]:
    """(service, branch) -> since when, for the long-lived branches of docs/POLICIES.md as the
    sandbox serves them at `org.now`, judged at `until`: a merge request open then and created
    before `until - max_age` (since: its creation); and a branch no merge request comes from,
    neither the default nor protected, whose own commits (reachable from its head, not from the
    default branch's) were first authored before it (since: that commit)."""
    at, out = org.now, {}
    for s in org.services:
        visible = [m for m in s.merge_requests if m.created_at <= at]
        for m in visible:
            if render.mr_state(m, at)[0] == "opened" and m.created_at < until - max_age:
                out[(s.name, m.source_branch)] = m.created_at
        on_default = _reachable(s, render.branch_head(s.branches[s.default_branch], at))
        with_mr = {m.source_branch for m in visible}
        for b in s.branches.values():
            head = render.branch_head(b, at)
            if head is None or b.protected or b.name == s.default_branch or b.name in with_mr:
                continue
            own = _reachable(s, head) - on_default
            first = min((s.commits[sha].authored_at for sha in own), default=None)
            if first is not None and first < until - max_age:
                out[(s.name, b.name)] = first
    return out


def _reachable(s: Service, head: str | None) -> set[str]:
    """The commits `head` reaches, itself included (none for None)."""
    seen: set[str] = set()
    stack = [head] if head else []
    while stack:
        sha = stack.pop()
        if sha not in seen and sha in s.commits:
            seen.add(sha)
            stack.extend(s.commits[sha].parents)
    return seen
