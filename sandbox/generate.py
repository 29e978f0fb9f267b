"""Generate a delivery organisation from a seed and a size (DESIGN.md section 7).

`generate(seed, size)` is deterministic for a given `now` (default: today, midnight UTC), so tests
and benchmarks see the same organisation, and the demo always looks current.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sandbox.approvals import add_withdrawn_approvals
from sandbox.clock import WorkClock
from sandbox.delivery import DeliveryBuilder, DeliveryProfile
from sandbox.duplicates import add_duplicate_merge_requests
from sandbox.flows import (
    GIT_FLOW,
    GITLAB_FLOW,
    EnvironmentBranchDelivery,
    GitFlowHistory,
    chosen_flows,
)
from sandbox.history import CodeProfile, HistoryBuilder
from sandbox.image_repos import split_repositories
from sandbox.incidents import skew_incidents
from sandbox.jenkins_org import add_interim_results, build_jenkins
from sandbox.migrations import add_migrations
from sandbox.model import Developer, Organisation, Service, Team
from sandbox.pipelines import BuildProfile, Ids, PipelineFactory
from sandbox.regions import add_region
from sandbox.retries import add_retried_jobs
from sandbox.trackers import add_trackers
from sandbox.unmerged import add_unmerged_branches

ROOT_GROUP = "acme"


@dataclass(frozen=True)
class Size:
    teams: int
    services_per_team: tuple[int, int]
    developers_per_team: tuple[int, int]
    days: int


SIZES = {
    "tiny": Size(teams=1, services_per_team=(1, 1), developers_per_team=(4, 4), days=14),
    "small": Size(teams=2, services_per_team=(2, 2), developers_per_team=(4, 5), days=42),
    "demo": Size(teams=5, services_per_team=(2, 4), developers_per_team=(4, 8), days=120),
    "large": Size(teams=40, services_per_team=(6, 9), developers_per_team=(4, 10), days=365),
}

# Team profiles spread over the DORA levels, in the order teams receive them.
PROFILES = ("elite", "medium", "high", "low", "high", "elite", "medium", "high")
TEAM_NAMES = [
    "payments",
    "checkout",
    "identity",
    "search",
    "catalog",
    "logistics",
    "billing",
    "growth",
    "platform",
    "data",
    "mobile",
    "pricing",
    "risk",
    "support",
    "messaging",
    "reporting",
    "ledger",
    "onboarding",
    "partners",
    "media",
]
SERVICE_WORDS = [
    "api",
    "web",
    "worker",
    "gateway",
    "sync",
    "scheduler",
    "ingest",
    "notifier",
    "admin",
    "ledger",
]
FIRST = [
    "ana",
    "ben",
    "chen",
    "dara",
    "eli",
    "fatima",
    "gus",
    "hana",
    "ivan",
    "jun",
    "kemal",
    "lena",
    "mei",
    "nils",
    "omar",
    "pia",
    "quinn",
    "rui",
    "sara",
    "tao",
]
LAST = [
    "li",
    "smith",
    "garcia",
    "müller",
    "kim",
    "rossi",
    "nowak",
    "sato",
    "okafor",
    "silva",
    "dubois",
    "wang",
    "jensen",
]
# Services built by Jenkins (their code stays in GitLab), one per chosen team, after all others;
# none in `tiny`, whose single project GitLab-only tests rely on.
JENKINS_SERVICES = {"tiny": 0, "small": 2, "demo": 2, "large": 20}
JENKINS_WORD = "backend"
DEPLOY_ALIAS = "be"  # one Jenkins-built service is deployed as `<team>-be` (Service.deploy_name)
ZONES = ("Europe/Berlin", "Asia/Shanghai", "America/New_York", "UTC", "Asia/Kolkata")
ENV_STYLES = ("plain", "ctrip", "short")


def code_profile(profile: str, rng: random.Random) -> CodeProfile:
    rate = {"elite": 3.0, "high": 1.6, "medium": 1.0, "low": 0.6}[profile]
    return CodeProfile(
        mr_rate=rate,
        coding_h=rng.uniform(4, 24),
        pickup_h=rng.uniform(2, 6),
        review_h=rng.uniform(4, 12),
        squash_share=rng.choice((0.0, 0.3, 1.0)),
        direct_push_rate=0.03,
        long_lived=1,
        stale=1,
    )


def delivery_profile(profile: str, rng: random.Random, size: str) -> DeliveryProfile:
    staging, production, failure = {
        "elite": (2.0, 3.0, 0.06),
        "high": (4.0, 9.0, 0.12),
        "medium": (9.0, 45.0, 0.2),
        "low": (18.0, 180.0, 0.3),
    }[profile]
    seeded = (
        3.0 if size in ("tiny", "small") else 1.0
    )  # a small org still shows every kind of problem
    return DeliveryProfile(
        staging_every_h=staging,
        production_every_h=production,
        change_failure=min(0.5, failure * (1.5 if size in ("tiny", "small") else 1.0)),
        restore_h=rng.uniform(1, 6),
        untested_share=0.03 * seeded,
        rebuilt_share=0.02 * seeded,
    )


def build_profile(rng: random.Random) -> BuildProfile:
    return BuildProfile(
        branch_failure=rng.uniform(0.10, 0.25),
        main_failure=rng.uniform(0.05, 0.10),
        duration_median_s=rng.uniform(8, 15) * 60,
        flaky_suite=rng.choice((None, "integration")),
    )


def default_now() -> datetime:
    """Today at midnight UTC: the default end of a generated history."""
    today = datetime.now(UTC).date()
    return datetime(today.year, today.month, today.day, tzinfo=UTC)


def _teams(rng: random.Random, size: Size, ids: Ids) -> tuple[list[Team], list[Developer]]:
    teams, developers = [], []
    for i in range(size.teams):
        name = TEAM_NAMES[i % len(TEAM_NAMES)] + (
            f"{i // len(TEAM_NAMES) + 1}" if i >= len(TEAM_NAMES) else ""
        )
        team = Team(
            name,
            PROFILES[i % len(PROFILES)],
            ZONES[i % len(ZONES)],
            ENV_STYLES[i % len(ENV_STYLES)],
        )
        for _ in range(rng.randint(*size.developers_per_team)):
            uid = ids.next("user")
            first, last = rng.choice(FIRST), rng.choice(LAST)
            username = f"{first}.{last}{uid}".replace("ü", "u")
            developer = Developer(
                uid, username, f"{first.title()} {last.title()}", f"{username}@acme.test", name
            )
            team.developers.append(developer)
            developers.append(developer)
        teams.append(team)
    return teams, developers


def generate(
    seed: int = 1,
    size: str = "small",
    now: datetime | None = None,
    jenkins: int | None = None,
    migrations: bool = True,
    deleted_branches: float = 0.8,
) -> Organisation:
    """A delivery organisation: teams, services and their whole history up to `now`; `jenkins`
    Jenkins-built services (default: by size, `JENKINS_SERVICES`); one service on git-flow and one
    on GitLab flow (`sandbox.flows`; none in `tiny`); database migrations in about a third of the
    services unless `migrations` is false (`sandbox.migrations`, a post-pass that leaves
    everything else as it is); a second production region for one service (`sandbox.regions`,
    also a post-pass); unmerged branches without a merge request in a few services
    (`sandbox.unmerged`, likewise); `deleted_branches`: the share of merged feature branches
    GitLab deleted on merge (`delete_merged_branches`); an old branch pipeline's test job retried
    days later in each GitLab-built service (`sandbox.retries`), approvals withdrawn before
    the merge in a few merge requests (`sandbox.approvals`) and a closed duplicate (from a copy of
    the branch) of a few merged ones (`sandbox.duplicates`), post-passes too."""
    if size not in SIZES:
        raise ValueError(f"unknown sandbox size {size!r}; use one of {', '.join(SIZES)}")
    spec = SIZES[size]
    now = now or default_now()
    start = now - timedelta(days=spec.days)
    rng = random.Random(f"{seed}/org/{size}")
    ids = Ids()
    teams, developers = _teams(rng, spec, ids)
    holiday = (start + timedelta(days=int(spec.days * 0.55))).date()
    holiday -= timedelta(days=holiday.weekday())
    org = Organisation(seed, size, now, start, ROOT_GROUP, teams, [], developers)
    for team in teams:
        for j in range(rng.randint(*spec.services_per_team)):
            name = f"{team.name}-{SERVICE_WORDS[j % len(SERVICE_WORDS)]}"
            service = Service(
                name, team.name, ids.next("project"), f"{ROOT_GROUP}/{team.name}/{name}"
            )
            team.services.append(name)
            org.services.append(service)
            _build_service(service, team, seed, ids, start, now, holiday, size)
    _add_jenkins_services(
        org, seed, ids, holiday, JENKINS_SERVICES[size] if jenkins is None else jenkins
    )
    _rebuild_flows(org, seed, ids, holiday)
    delete_merged_branches(org, deleted_branches)  # before the retries, which need the branch
    add_region(org, ids)  # its ids come after every other object's but the retries' and migrations'
    add_retried_jobs(org, ids)  # job ids after every other job's but the migrations'
    add_withdrawn_approvals(org, ids)  # note ids after every other note's
    if migrations:  # last: its ids come after every other object's
        add_migrations(org, ids)
    add_interim_results(org)  # post-passes that make no ids and leave every other stream as it is
    skew_incidents(org)
    add_unmerged_branches(org, seed)
    org.trackers = add_trackers(org)  # it reads the final deployments and incidents
    add_duplicate_merge_requests(org, ids)  # after the trackers' titles; its ids after all others
    return org


def delete_merged_branches(org: Organisation, share: float) -> None:
    """GitLab's "delete source branch" on merge (its default): about `share` of the merged feature
    branches are gone from the branch listing once merged. A squash merge's commits then live on
    only in its merge request's commits (sandbox.gitlab_payloads.unlisted_commits). Chosen by a
    hash of the branch, so no random stream or id changes."""
    for s in org.services:
        for mr in s.merge_requests:
            branch = s.branches.get(mr.source_branch)
            if mr.merged_at is None or branch is None or not branch.name.startswith("feature/"):
                continue
            draw = zlib.crc32(f"{s.name}/{branch.name}".encode()) / 0xFFFFFFFF
            branch.deleted_at = mr.merged_at if draw < share else None


def _add_jenkins_services(
    org: Organisation, seed: int, ids: Ids, holiday: object, wanted: int
) -> None:
    """Jenkins-built services, generated after every GitLab-built one (with their own random
    streams, so the GitLab-built services' histories do not change), and the Jenkins jobs."""
    step = max(1, len(org.teams) // max(1, wanted))
    chosen = org.teams[::step][:wanted]
    for team in chosen:
        name = f"{team.name}-{JENKINS_WORD}"
        path = f"{ROOT_GROUP}/{team.name}/{name}"
        service = Service(name, team.name, ids.next("project"), path, builder="jenkins")
        if len(chosen) > 1 and team is chosen[0]:  # deploy jobs naming a service GitLab lacks
            service.deploy_name = f"{team.name}-{DEPLOY_ALIAS}"
        team.services.append(name)
        org.services.append(service)
        _build_service(
            service,
            team,
            seed,
            ids,
            org.start,
            org.now,
            holiday,
            org.size,
            f"{seed}/jenkins/{name}",
        )
    org.jenkins = build_jenkins(org)
    for service in org.services:
        if service.deploy_name:
            _split_incidents(service)


def _split_incidents(service: Service) -> None:
    """The generator's intent for a service deployed under another name: its incidents are filed
    under its project's service, which has no deployments, so none marks a failed change."""
    for incident in service.incidents:
        incident.deployment_id = None
    for d in service.deployments:
        d.failed_change = tuple(r for r in d.failed_change if r != "incident")


def _rebuild_flows(org: Organisation, seed: int, ids: Ids, holiday: object) -> None:
    """Rebuild the services `sandbox.flows` chose with their branch strategy, after every other
    service, so the others keep their ids (the trunk-based build's ids are left unused, as
    deleted objects leave them in GitLab)."""
    teams = {t.name: t for t in org.teams}
    for name, flow in chosen_flows(org).items():
        old = org.service(name)
        service = Service(old.name, old.team, old.project_id, old.path, flow=flow)
        org.services[org.services.index(old)] = service
        _build_service(service, teams[old.team], seed, ids, org.start, org.now, holiday, org.size)


def _build_service(
    service: Service,
    team: Team,
    seed: int,
    ids: Ids,
    start: datetime,
    now: datetime,
    holiday: object,
    size: str,
    rng_key: str | None = None,
) -> None:
    rng = random.Random(rng_key or f"{seed}/{service.name}")
    clock = WorkClock(team.timezone, holiday)  # type: ignore[arg-type]
    pipelines = PipelineFactory(rng, ids, build_profile(rng))
    code = code_profile(team.profile, rng)
    if service.flow == GITLAB_FLOW:
        code.direct_push_rate = 0.0  # main is protected: everything arrives by merge request
    service.merge_method = (
        "squash" if code.squash_share == 1.0 else "merge" if not code.squash_share else "mixed"
    )
    history_builder = GitFlowHistory if service.flow == GIT_FLOW else HistoryBuilder
    history = history_builder(service, team, clock, rng, ids, code, pipelines, start, now).build()
    delivery_builder = EnvironmentBranchDelivery if service.flow == GITLAB_FLOW else DeliveryBuilder
    delivery = delivery_builder(
        service,
        team,
        clock,
        rng,
        ids,
        delivery_profile(team.profile, rng, size),
        pipelines,
        start,
        now,
    )
    delivery.build(history)
    service.pipelines.sort(key=lambda p: p.id)
    split_repositories(service)
