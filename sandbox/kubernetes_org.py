"""The generated organisation's Kubernetes cluster ("sandbox"): its rollout history, and its state as
of any instant (`KubernetesCluster.advance(at)`), shared by the simulator and the ground truth.

Layout: one namespace per team and canonical environment (`payments-production`), one apps/v1
Deployment per service in each, named after the service. Every recorded deployment of kind "app"
(GitLab- and Jenkins-built services alike) rolls out when its deploy job runs: the ReplicaSet is
created a few seconds after the job started; a successful one becomes available when the job
finishes (the job waits with `kubectl rollout status`), a failed one never does and the Deployment
reports `Progressing=False, ProgressDeadlineExceeded` when the job fails (progress deadline 60 s).

How Kubernetes treats the history (what makes the sandbox realistic):
- the pod template is the image (`<repository>@<digest>`) plus, after a failed rollout was retried
  with the same image, the `kubectl.kubernetes.io/restartedAt` annotation `kubectl rollout
  restart` adds (an identical template would make no new revision); later `kubectl set image`
  keeps that annotation;
- a rollout to a template an existing ReplicaSet has (a rollback) reuses that ReplicaSet: its
  `deployment.kubernetes.io/revision` becomes the next number and the old ones move to
  `deployment.kubernetes.io/revision-history`; a redeploy of the running template makes no rollout;
- `revisionHistoryLimit: 10` deletes the oldest ReplicaSets beyond ten old ones;
- pods exist for the current ReplicaSet (and, while it is not available, the previous one); a
  reused ReplicaSet's pods are created when it is scaled up again, which is the only trace of when
  a reused revision began.
- Hand changes (`kubectl set image` to a digest no recorded deployment put there) come from their
  own random stream, so the generated GitLab/Jenkins history is the same with or without them.

Ground truth for tests: `unrecorded_changes()`, `observed(at)` (the rows a sync at `at` must
write) and `deployment_rollouts(at)` (which recorded deployments observation can resolve).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sandbox.image_repos import deployable, repository_of
from sandbox.model import Deployment, Image, Organisation, Service

CLUSTER = "sandbox"
ENVIRONMENTS = ("test", "staging", "production")
HISTORY_LIMIT = 10
PROGRESS_DEADLINE_S = 60
POD_DELAY = timedelta(seconds=1)  # from a ReplicaSet's scale-up to its pods' creation
HAND_CHANGE_SHARE = 0.08  # of the (service, environment) workloads
_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SafeEncodeString alphabet


def second(value: datetime) -> datetime:
    """`value` truncated to whole seconds, as Kubernetes reports times."""
    return value.replace(microsecond=0)


def _hash(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def safe_encode(text: str, length: int) -> str:
    """A Kubernetes-style name suffix (pod-template-hash, pod names)."""
    digest = bytes.fromhex(_hash(text))
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:length])


def namespace_of(team: str, environment: str) -> str:
    return f"{team}-{environment}"


def runtime_of(team: str) -> str:
    """The container runtime of the team's nodes: containerd or docker (dockershim/cri-dockerd)."""
    return "docker" if int(_hash("runtime", team)[:8], 16) % 3 == 0 else "containerd"


def replicas_of(environment: str) -> int:
    return 3 if environment == "production" else 2


@dataclass(frozen=True)
class Template:
    """What makes two pod templates equal: the image and the restartedAt annotation."""

    image: str
    digest: str
    restarted_at: datetime | None = None

    @property
    def hash(self) -> str:
        stamp = self.restarted_at.isoformat() if self.restarted_at else ""
        return safe_encode(f"{self.image}|{stamp}", 10)


@dataclass
class Event:
    """One rollout request: a recorded deployment or a hand change."""

    start: datetime
    image: str
    digest: str
    available_at: datetime | None  # when it becomes available (None: it fails)
    failed_at: datetime | None
    deployment: Deployment | None  # None for a hand change


@dataclass
class ReplicaSetState:
    name: str
    template: Template
    created_at: datetime
    revisions: list[tuple[int, Event]] = field(default_factory=list)  # oldest first
    scaled_up_at: datetime = field(init=False)  # its latest rollout's start (pods created then)

    def __post_init__(self) -> None:
        self.scaled_up_at = self.created_at

    @property
    def revision(self) -> int:
        return self.revisions[-1][0]


@dataclass
class WorkloadState:
    """A Deployment as of an instant: its ReplicaSets (pruned), the current one and its outcome."""

    service: Service
    environment: str
    namespace: str
    created_at: datetime
    replica_sets: list[ReplicaSetState]
    current: ReplicaSetState
    previous: ReplicaSetState | None  # still serving while the current one is not available
    status: str  # success | failed | running
    changed_at: datetime  # when the current outcome was reached (or the rollout began)
    generation: int

    @property
    def name(self) -> str:
        return self.service.deployed_as

    @property
    def event(self) -> Event:
        return self.current.revisions[-1][1]


@dataclass(frozen=True)
class UnrecordedChange:
    service: str
    environment: str
    digest: str
    at: datetime


@dataclass
class Workload:
    """The whole rollout history of one service in one environment (through org.now)."""

    service: Service
    environment: str
    events: list[Event]

    @property
    def namespace(self) -> str:
        return namespace_of(self.service.team, self.environment)


def _rollout_events(service: Service, environment: str) -> list[Event]:
    out = []
    for d in service.deployments:
        if d.kind != "app" or d.environment.canonical != environment:
            continue
        job = d.job
        if job.started_at is None or job.finished_at is None:
            continue
        started, finished = second(job.started_at), second(job.finished_at)
        offset = 3 + int(_hash("apply", d.id)[:4], 16) % 12
        start = min(started + timedelta(seconds=offset), finished)
        digest = d.digest or _tag_digest(service, d.sha)
        image = f"{repository_of(service, digest)}@{digest}"
        ok = d.status == "success"
        out.append(
            Event(start, image, digest, finished if ok else None, None if ok else finished, d)
        )
    return sorted(out, key=lambda e: (e.start, e.deployment.id if e.deployment else 0))


def _tag_digest(service: Service, sha: str) -> str:
    image = next((i for i in deployable(service) if i.revision == sha), None)
    return image.digest if image else "sha256:" + _hash("untagged", service.name, sha)


class KubernetesCluster:
    """The organisation's cluster; `advance(at)` chooses the instant the state is rendered at."""

    def __init__(self, org: Organisation, at: datetime | None = None, name: str = CLUSTER) -> None:
        self.org, self.name = org, name
        self.at = at or org.now
        self.workloads: dict[tuple[str, str], Workload] = {}  # (namespace, name)
        self.changes: list[UnrecordedChange] = []
        for s in org.services:
            for env in ENVIRONMENTS:
                events = _rollout_events(s, env)
                if events:
                    w = Workload(s, env, events)
                    self.workloads[(w.namespace, s.deployed_as)] = w
        self._hand_changes()
        self._states: dict[datetime, dict[tuple[str, str], WorkloadState]] = {}

    def advance(self, at: datetime) -> None:
        """Render the cluster as it is at `at` (later or earlier)."""
        self.at = at

    # -- hand changes ----------------------------------------------------------------------------

    def _hand_changes(self) -> None:
        rng = random.Random(f"{self.org.seed}-kubernetes")
        keys = sorted(self.workloads)
        count = max(2, round(len(keys) * HAND_CHANGE_SHARE))
        for key in rng.sample(keys, min(count, len(keys))):
            w = self.workloads[key]
            slots = [
                (e.available_at, nxt.start if nxt else self.org.now)
                for e, nxt in zip(w.events, [*w.events[1:], None], strict=True)
                if e.available_at is not None
            ]
            slots = [(a, b) for a, b in slots[-4:] if (b - a).total_seconds() >= 1800]
            if not slots:
                continue
            begin, end = rng.choice(slots)
            gap = (end - begin).total_seconds()
            at = second(begin + timedelta(seconds=rng.uniform(600, gap / 2)))
            digest = self._unrecorded_digest(w, at, rng)
            image = f"{repository_of(w.service, digest)}@{digest}"
            event = Event(at, image, digest, at + timedelta(seconds=40), None, None)
            w.events = sorted([*w.events, event], key=lambda e: e.start)
            self.changes.append(UnrecordedChange(w.service.deployed_as, w.environment, digest, at))
        self.changes.sort(key=lambda c: (c.at, c.service))

    @staticmethod
    def _unrecorded_digest(w: Workload, at: datetime, rng: random.Random) -> str:
        """The newest build pushed before `at` never deployed to this environment, else a build
        nobody recorded at all (someone pushed and deployed it by hand)."""
        deployed = {e.digest for e in w.events}
        fresh = [i for i in deployable(w.service) if i.pushed_at < at and i.digest not in deployed]
        if fresh:
            return max(fresh, key=lambda i: i.pushed_at).digest
        return "sha256:" + _hash("by-hand", w.service.name, w.environment, at.isoformat())

    # -- state at an instant -----------------------------------------------------------------

    def states(self, at: datetime | None = None) -> dict[tuple[str, str], WorkloadState]:
        """Every workload that exists at `at` (default: the current instant)."""
        at = at or self.at
        if at not in self._states:
            if len(self._states) > 8:
                self._states.clear()
            found = {}
            for key, w in self.workloads.items():
                state = replay(w, at)
                if state is not None:
                    found[key] = state
            self._states[at] = found
        return self._states[at]

    def namespaces(self, at: datetime | None = None) -> dict[str, datetime]:
        """namespace -> creation time, for the namespaces that exist at `at`."""
        out: dict[str, datetime] = {}
        for (ns, _), state in self.states(at).items():
            out[ns] = min(out.get(ns, state.created_at), state.created_at)
        return dict(sorted(out.items()))

    # -- ground truth --------------------------------------------------------------------------

    def unrecorded_changes(self, at: datetime | None = None) -> list[UnrecordedChange]:
        """The hand changes made by `at` (default: the whole history)."""
        return [c for c in self.changes if at is None or c.at <= at]

    def observed(self, at: datetime | None = None) -> list[dict[str, Any]]:
        """The rollout revisions a sync at `at` can see with a knowable start, as the collector
        writes them: a ReplicaSet's first revision began at its creation; its latest one, when it
        is the Deployment's current ReplicaSet, when its pods were created; other revisions of a
        reused ReplicaSet have no knowable start and are left out. `status` and `finished_at`
        are observed for the current revision; an older one is inferred a success."""
        rows = []
        for (ns, name), st in sorted(self.states(at).items()):
            for rs in st.replica_sets:
                for revision, event, began in knowable(rs, rs is st.current):
                    current = rs is st.current and revision == rs.revision
                    rows.append(
                        {
                            "namespace": ns,
                            "workload": name,
                            "service": st.service.deployed_as,
                            "environment": st.environment,
                            "revision": revision,
                            "replica_set": rs.name,
                            "digest": rs.template.digest,
                            "observed_at": began,
                            "status": st.status if current else "success",
                            "finished_at": st.changed_at
                            if current and st.status == "success"
                            else None,
                            "deployment_id": event.deployment.id if event.deployment else None,
                        }
                    )
        return rows

    def deployment_rollouts(
        self, at: datetime | None = None
    ) -> dict[int, tuple[int, datetime] | None]:
        """Every recorded deployment that started by `at` -> the (revision, start) of the rollout
        Kubernetes still shows for it with a knowable start, or None (no rollout of its own: a
        redeploy of the running template; pruned; or a reused ReplicaSet's older revision)."""
        at = at or self.at
        out: dict[int, tuple[int, datetime] | None] = {}
        for w in self.workloads.values():
            for e in w.events:
                if e.deployment is not None and e.start <= at:
                    out[e.deployment.id] = None
        for row in self.observed(at):
            if row["deployment_id"] is not None:
                out[int(row["deployment_id"])] = (int(row["revision"]), row["observed_at"])
        return out


def knowable(rs: ReplicaSetState, current: bool) -> list[tuple[int, Event, datetime]]:
    """(revision, event, start) of the revisions of `rs` whose start the API shows."""
    out = [(rs.revisions[0][0], rs.revisions[0][1], rs.created_at)]
    if current and len(rs.revisions) > 1:
        out.append((rs.revision, rs.revisions[-1][1], rs.scaled_up_at + POD_DELAY))
    return out


def replay(w: Workload, at: datetime) -> WorkloadState | None:
    """Apply `w`'s rollouts that started by `at`, as the Deployment controller would."""
    sets: list[ReplicaSetState] = []
    current: ReplicaSetState | None = None
    previous: ReplicaSetState | None = None
    last_revision, generation = 0, 0
    created: datetime | None = None
    for e in w.events:
        if e.start > at:
            break
        created = created or e.start
        restarted = current.template.restarted_at if current else None
        if current is not None and e.image == current.template.image:
            if _outcome(current, e.start)[0] != "failed":
                continue  # the running (or rolling out) template again: no rollout
            restarted = e.start  # a retry after a failure: `kubectl rollout restart`
        template = Template(e.image, e.digest, restarted)
        generation += 1
        last_revision += 1
        found = next((rs for rs in sets if rs.template == template), None)
        if found is None:
            found = ReplicaSetState(f"{w.service.deployed_as}-{template.hash}", template, e.start)
            sets.append(found)
        found.revisions.append((last_revision, e))
        found.scaled_up_at = e.start
        if found is not current:
            previous = current
        current = found
        olds = sorted((rs for rs in sets if rs is not current), key=lambda rs: rs.revision)
        for rs in olds[: max(0, len(olds) - HISTORY_LIMIT)]:
            sets.remove(rs)
    if current is None or created is None:
        return None
    status, changed = _outcome(current, at)
    serving = previous if status != "success" and previous in sets else None
    return WorkloadState(
        w.service, w.environment, w.namespace, created,
        sorted(sets, key=lambda rs: rs.revision), current, serving, status, changed, generation,
    )  # fmt: skip


def _outcome(rs: ReplicaSetState, at: datetime) -> tuple[str, datetime]:
    """(success | failed | running, since when) of the latest rollout of `rs` at `at`."""
    e = rs.revisions[-1][1]
    if e.available_at is not None and e.available_at <= at:
        return "success", e.available_at
    if e.failed_at is not None and e.failed_at <= at:
        return "failed", e.failed_at
    return "running", e.start


def image_of(service: Service, digest: str) -> Image:
    """The generated image of `digest` (a stand-in for a digest only a hand change used)."""
    for image in service.images:
        if image.digest == digest:
            return image
    return Image(digest, repository_of(service, digest), "", datetime.min, 0, "")


__all__ = [
    "CLUSTER",
    "KubernetesCluster",
    "ReplicaSetState",
    "Template",
    "UnrecordedChange",
    "WorkloadState",
    "image_of",
    "namespace_of",
    "runtime_of",
    "second",
]
