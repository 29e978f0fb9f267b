"""Images end to end: GitLab, Jenkins, the Harbor registry and the Kubernetes cluster of one
generated organisation, synced over HTTP by `cdmetrics sync`'s runner into SQLite and into
PostgreSQL, then derived. Every
deployment's digest and resolution method, and the image policies, are compared with what the
generator knows (its ground truth) and what each source shows."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import Engine, insert, select, update

from analytics.derive import derive
from analytics.images import resolve_images
from analytics.policies import scan
from collectors.frame import SyncOptions
from collectors.kubernetes import KubernetesCollector
from collectors.run import run_sync
from config.settings import PoliciesSettings, Settings
from sandbox import reference as ref
from sandbox.flows import ENVIRONMENT_BRANCHES, GITLAB_FLOW
from sandbox.generate import generate
from sandbox.image_repos import layout, repositories
from sandbox.jenkins_org import iter_jobs
from sandbox.kubernetes_org import KubernetesCluster, namespace_of
from sandbox.model import Deployment as TrueDeployment
from sandbox.model import Organisation, Service
from sandbox.oci import inherits_labels
from sandbox.registry_payloads import HOST as REGISTRY_HOST
from sandbox.serve import Sandbox
from tests.conftest import migrated_warehouse
from tests.policy_reference import reference_rebuilt, reference_untested
from warehouse.schema import (
    Deployment,
    DeriveState,
    Environment,
    Image,
    ImageRepository,
    ImageTag,
    Source,
)
from warehouse.schema import Service as ServiceRow

NOW = datetime(2025, 6, 2, tzinfo=UTC)
PATH = ["test", "staging", "production"]
TAG_REVISION = re.compile(r"^(?:v|sha-)?(?:[0-9a-f]{7,12}|[0-9a-f]{40})$")
CLUSTER_SYNCS = timedelta(days=2)
LAGGING = timedelta(days=18)  # when the registry's sync runs behind the others' (below)
QUIET = Console(quiet=True)
OBSERVED = ("staging", "production")  # test's namespaces are not observed: tags and revisions
ENV = {"CDMT_GITLAB": "t", "CDMT_JENKINS_USER": "u", "CDMT_TOKEN": "t", "CDMT_REGISTRY_USER": "r"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def warehouse_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated warehouse for the module: an SQLite file or a PostgreSQL schema of its own."""
    with migrated_warehouse(request.param, tmp_path_factory.mktemp("images")) as engine:
        yield engine


@pytest.fixture(scope="module")
def caught_up(warehouse_engine: Engine) -> dict[str, Any]:
    """What `synced` saw when the registry caught up (`registry_late`): every deployment's
    (digest, resolution) before, after the incremental derive, and after a full one."""
    return {}


@pytest.fixture(scope="module")
def synced(
    tmp_path_factory: pytest.TempPathFactory, warehouse_engine: Engine, caught_up: dict[str, Any]
) -> Iterator[tuple[Organisation, Engine, KubernetesCluster]]:
    org = generate(1, "small", NOW)
    tmp = tmp_path_factory.mktemp("images")
    engine = warehouse_engine
    with (
        pytest.MonkeyPatch.context() as mp,
        Sandbox.start(org=org, token="t", jenkins_user="u", kubernetes=True) as sb,
    ):
        for name, value in ENV.items():
            mp.setenv(name, value)
        mp.setenv("CDMT_REGISTRY_USER", sb.registry_user)
        kubeconfig = sb.write_kubeconfig(tmp / "kubeconfig")
        namespaces = {namespace_of(t.name, e): e for t in org.teams for e in OBSERVED}
        sources: dict[str, Any] = {
            "gitlab": [{"name": "gitlab", "url": sb.gitlab_url, "token_env": "CDMT_GITLAB",
                        "groups": [org.root_group]}],
            "jenkins": [{"name": "jenkins", "url": sb.jenkins_url, "user_env": "CDMT_JENKINS_USER",
                         "token_env": "CDMT_TOKEN"}],
            "registry": [{"name": "harbor", "kind": "harbor", "url": sb.harbor_url,
                          "host": REGISTRY_HOST, "projects": [org.root_group],
                          "user_env": "CDMT_REGISTRY_USER", "token_env": "CDMT_TOKEN"}],
            "kubernetes": [{"name": "k8s", "cluster": "sandbox", "kubeconfig": str(kubeconfig),
                            "context": "sandbox", "namespaces": namespaces}],
        }  # fmt: skip
        settings = Settings(
            sources=sources, sync={"requests_per_second": 0, "history_days": sb.history_days()}
        )
        at = org.start + CLUSTER_SYNCS
        sb.advance(at)
        assert all(s.ok for s in run_sync(settings, engine, console=QUIET))
        # derived as the sources stand two days in: the last derive is then incremental, and
        # the deployments left pending here resolve from the images and tags synced later
        derive(engine)
        while at < org.now:  # the cluster keeps ten old ReplicaSets: it is observed as it goes
            at += CLUSTER_SYNCS
            sb.advance(min(at, org.now))
            if at == org.start + LAGGING - CLUSTER_SYNCS:  # the registry's last sync in step
                assert all(s.ok for s in run_sync(settings, engine, console=QUIET))
            elif at == org.start + LAGGING:
                registry_late(settings, engine, caught_up)
            else:
                summary = KubernetesCollector(
                    settings.sources.kubernetes[0], SyncOptions(settings, engine)
                ).sync()
                assert summary.ok, summary.errors
        sb.advance(org.now)
        summaries = run_sync(settings, engine, console=QUIET)
        assert sorted(s.name for s in summaries) == ["gitlab", "harbor", "jenkins", "k8s"]
        assert all(s.ok and s.rejected == 0 for s in summaries), [s.errors for s in summaries]
        assert sb.kubernetes is not None
        cluster = sb.kubernetes.cluster
    derive(engine)
    yield org, engine, cluster


def registry_late(settings: Settings, engine: Engine, caught_up: dict[str, Any]) -> None:
    """The registry syncs a cluster sync behind the others (a registry collector on a slower
    schedule, or one down for a sync): the images and tags pushed since its last sync arrive
    after the deployments of their commits and references were derived, in repositories linked
    already. Records what the derive after it caught up resolved, incremental and full."""
    others = ["gitlab", "jenkins", "k8s"]
    assert all(s.ok for s in run_sync(settings, engine, others, console=QUIET))
    derive(engine)
    linked, before = links(engine), resolutions(engine)
    assert all(s.ok for s in run_sync(settings, engine, ["harbor"], console=QUIET))
    derive(engine)
    caught_up.update(
        before=before, incremental=resolutions(engine), relinked=links(engine) != linked
    )
    derive(engine, full=True)
    caught_up["full"] = resolutions(engine)


def jenkins_images(org: Organisation) -> dict[int, str]:
    """Deployment id -> the IMAGE parameter its Jenkins deploy build was given."""
    return {
        b.deployment.id: b.parameters["IMAGE"]
        for job in iter_jobs(org.jenkins)
        for b in job.builds
        if b.deployment is not None and "IMAGE" in b.parameters
    }


def history(service: Service, repository: str) -> list[tuple[str, str, datetime]]:
    """The generator's tag history of one of the service's repositories (pulled-by name)."""
    return next(r.tag_history for r in repositories(service) if r.location == repository)


def tag_at(service: Service, image: str, at: datetime) -> str | None:
    """The digest image reference `repo:tag` pointed to at `at` (the generator's tag history)."""
    repository, tag = image.rsplit(":", 1)
    pointed = [(t, d) for name, d, t in history(service, repository) if name == tag and t <= at]
    return max(pointed)[1] if pointed else None


def known_revisions(service: Service) -> dict[str, dict[str, set[str]]]:
    """Commit -> repository -> digests of the images the warehouse can know were built from it:
    the label when the service sets its own, else a tag naming the commit."""
    out: dict[str, dict[str, set[str]]] = {}
    for image in service.images:
        if not inherits_labels(service) or TAG_REVISION.match(image.tag):
            found = out.setdefault(image.revision, {})
            found.setdefault(image.repository, set()).add(image.digest)
    return out


def by_revision(found: dict[str, set[str]], named: str | None) -> str | None:
    """The one build of the deployed commit: in the repository the job names, else in the only
    repository holding one (None: ambiguous or none)."""
    repositories = [named] if named in found else list(found)
    if len(repositories) == 1 and len(found[repositories[0]]) == 1:
        return next(iter(found[repositories[0]]))
    return None


def expected(
    org: Organisation, cluster: KubernetesCluster
) -> dict[str, tuple[str | None, str, TrueDeployment]]:
    """Deployment external id -> (digest, method) it must resolve to, with its true record."""
    observed = set()
    at = org.start + CLUSTER_SYNCS
    while True:
        at = min(at, org.now)
        observed |= {i for i, seen in cluster.deployment_rollouts(at).items() if seen}
        if at == org.now:
            break
        at += CLUSTER_SYNCS
    images = jenkins_images(org)
    out = {}
    for s in org.services:
        revisions = known_revisions(s)
        for d in s.deployments:
            if d.kind != "app":
                continue
            image = images.get(d.id)
            if s.builder == "jenkins":
                key = next(
                    f"{job.full_name}#{b.number}"
                    for job in iter_jobs(org.jenkins)
                    for b in job.builds
                    if b.deployment is d
                )
            else:
                key = str(d.id)
            if image and "@sha256:" in image:
                out[key] = ("sha256:" + image.split("@sha256:")[1], "explicit", d)
            elif d.id in observed and d.environment.canonical in OBSERVED:
                out[key] = (d.digest, "observed", d)
            elif image:
                out[key] = (tag_at(s, image, d.created_at), "tag", d)
            elif (digest := by_revision(revisions.get(d.sha, {}), None)) is not None:
                out[key] = (digest, "revision", d)
            else:
                out[key] = (None, "none", d)
    return out


def links(engine: Engine) -> set[tuple[str, str]]:
    """(image repository, service name) of every repository linked to a service."""
    with engine.connect() as conn:
        return {
            (repository, name)
            for repository, name in conn.execute(
                select(ImageRepository.repository, ServiceRow.name).join(
                    ServiceRow, ServiceRow.id == ImageRepository.service_id
                )
            )
        }


def resolutions(engine: Engine) -> dict[str, tuple[str | None, str]]:
    """Deployment external id -> (digest, resolution) of every GitLab and Jenkins deployment."""
    with engine.connect() as conn:
        return {
            ext: (digest, how)
            for ext, digest, how in conn.execute(
                select(Deployment.external_id, Deployment.image_digest, Deployment.image_resolution)
                .join(Source, Source.id == Deployment.source_id)
                .where(Source.kind.in_(("gitlab", "jenkins")), Deployment.kind == "app")
            )
        }


def test_every_deployment_resolves_as_its_sources_allow(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    org, engine, cluster = synced
    want = expected(org, cluster)
    got = resolutions(engine)
    assert got.keys() == want.keys()
    wrong = {k: (got[k], want[k][:2]) for k in want if got[k] != want[k][:2]}
    assert not wrong
    methods = {how for _, how, _ in want.values()}
    assert {"explicit", "observed", "tag", "revision"} <= methods
    # a digest found is the true one, but where the sources cannot tell: a deployment by a tag
    # that moved between the build it meant and its start, or a rebuilt image of a service whose
    # labels are its base image's (only the first build names the commit)
    off = {
        k
        for k, (digest, how, d) in want.items()
        if how != "none" and d.digest is not None and digest != d.digest
    }
    explained = {
        k
        for k in off
        if want[k][1] == "tag"
        or (want[k][2].rebuilt and inherits_labels(org.service(_service_of(org, want[k][2]))))
    }
    assert off == explained


def test_images_a_registry_syncs_late_resolve_the_deployments_derived_before_them(
    synced: tuple[Organisation, Engine, KubernetesCluster], caught_up: dict[str, Any]
) -> None:
    """The registry synced two days behind the others: once it catches up, an incremental
    derive resolves the deployments its images and tags resolve (in repositories linked
    already: no link changed, which would read every pending deployment) as a full derive
    does, those resolved from a tag's history as known then included."""
    before, incremental, full = caught_up["before"], caught_up["incremental"], caught_up["full"]
    moved = Counter(
        (before[k][1], now[1]) for k, now in incremental.items() if before.get(k, now) != now
    )
    print(f"resolved again once the registry caught up (method before, after): {dict(moved)}")
    assert moved and not caught_up["relinked"]  # the shape happened
    assert {k: v for k, v in incremental.items() if v != full[k]} == {}


def _service_of(org: Organisation, d: TrueDeployment) -> str:
    return next(s.name for s in org.services if d in s.deployments)


def repositories_of(engine: Engine) -> dict[str, str]:
    """Image digest -> the repository the registry holds it in."""
    with engine.connect() as conn:
        return {d: r for d, r in conn.execute(select(Image.digest, Image.repository))}


def test_images_in_a_sub_repository_resolve(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    """Services whose images live under their prefix (`<prefix>/api`, `<prefix>/app`) resolve
    like the others: every deployment as the truth says, to an image of the sub-repository."""
    org, engine, cluster = synced
    want, got, held = expected(org, cluster), resolutions(engine), repositories_of(engine)
    split = {s.name: repositories(s)[0].location for s in org.services if layout(s)}
    mine = {k: v for k, v in want.items() if _service_of(org, v[2]) in split}
    assert {_service_of(org, d) for _, _, d in mine.values()} == set(split)
    assert {k: got[k] for k in mine} == {k: v[:2] for k, v in mine.items()}
    assert {"revision", "explicit", "tag", "observed"} <= {how for _, how, _ in mine.values()}
    for digest, how, d in mine.values():
        if how != "none":
            assert held[str(digest)] == split[_service_of(org, d)]
    linked = dict(links(engine))
    assert {r: linked.get(r) for r in set(held.values())} == {
        r.location: s.name for s in org.services for r in repositories(s) if r.images
    }


def test_two_repositories_from_one_commit_the_jobs_named_repository_wins(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    """A Jenkins-built service pushes app and worker images of every commit, tagged alike (its
    `latest` too); its deploy job's IMAGE names the app repository, so every deployment resolves
    to the app image, by tag or digest, never to the worker's."""
    org, engine, cluster = synced
    two = [s for s in org.services if len(layout(s)) == 2]
    assert two, "the small organisation has a service with two image repositories"
    want, got, held = expected(org, cluster), resolutions(engine), repositories_of(engine)
    images = jenkins_images(org)
    for s in two:
        app, worker = (r.location for r in repositories(s))
        built = {r: {i.revision for i in s.images if i.repository == r} for r in (app, worker)}
        assert built[app] == built[worker]  # one pipeline builds both from the same commit
        mine = {k: v for k, v in want.items() if v[2] in s.deployments}
        assert mine and {k: got[k] for k in mine} == {k: v[:2] for k, v in mine.items()}
        assert all(images[d.id].startswith(app) for _, _, d in mine.values())
        assert {held[str(digest)] for digest, how, _ in mine.values() if how != "none"} == {app}
        assert "tag" in {how for _, how, _ in mine.values()} or "explicit" in {
            how for _, how, _ in mine.values()
        }


def test_ambiguous_without_a_named_repository_unpinned_image_names_the_candidates(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    """The same warehouse, but the two-repository service's test deployments name no image (a
    deploy job without IMAGE; rolled back afterwards): the commit's app and worker builds are both
    candidates, so they stay unresolved and unpinned-image names both repositories."""
    org, engine, _ = synced
    s = next(s for s in org.services if len(layout(s)) == 2)
    app, worker = (r.location for r in repositories(s))
    test = next(e.name for e in s.environments.values() if e.canonical == "test")
    with engine.connect() as conn, conn.begin() as transaction:
        ids = (
            conn.execute(
                select(Deployment.id)
                .join(ServiceRow, ServiceRow.id == Deployment.service_id)
                .join(Environment, Environment.id == Deployment.environment_id)
                .where(
                    ServiceRow.name == s.name, Environment.name == "test", Deployment.kind == "app"
                )
            )
            .scalars()
            .all()
        )
        conn.execute(
            update(Deployment)
            .where(Deployment.id.in_(ids))
            .values(image_ref=None, image_digest=None, image_resolution="none")
        )
        resolve_images(conn)
        found = [
            v
            for v in scan(
                conn, org.start, org.now + timedelta(days=1), PATH, only=["unpinned-image"]
            )
            if v.service == s.name
        ]
        transaction.rollback()
    tested = [d for d in s.deployments if d.environment.name == test and d.status == "success"]
    assert ids and len(found) == len(tested)
    assert all(f"built in {app}, {worker} and it names none of them" in v.message for v in found)


def _last_derive(conn: Any) -> datetime:
    started = conn.execute(select(DeriveState.started_at).where(DeriveState.name == "derive"))
    return started.scalar_one()


def test_a_derive_with_nothing_new_resolves_nothing_again(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    """Image revisions a derive reads from tags are not late data for the next derive: with
    nothing synced since, no deployment is resolved again (the large organisation's first
    incremental derive re-resolved every deployment resolved by tag or revision)."""
    _, engine, _ = synced
    with engine.connect() as conn, conn.begin() as transaction:
        assert conn.execute(select(Image.id).where(Image.revision_origin == "tag")).first()
        again = resolve_images(conn, changed_after=_last_derive(conn))
        transaction.rollback()
    assert (again.revisions, again.deployments) == (0, 0)


def test_a_revision_read_late_from_a_tag_reopens_the_deployments_of_its_commit(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    """An image synced long ago whose tag names a commit the warehouse learns only now gets its
    revision in this derive, which resolves the commit's deployments again: a second build of it in
    the repository makes their revision ambiguous, so they are unresolved."""
    _, engine, _ = synced
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    with engine.connect() as conn, conn.begin() as transaction:
        target, sha, repository = conn.execute(
            select(Deployment.id, Deployment.sha, Image.repository)
            .join(Image, Image.digest == Deployment.image_digest)
            .where(Deployment.image_resolution == "revision")
            .order_by(Deployment.id)
            .limit(1)
        ).one()
        second = "sha256:" + "e" * 64
        conn.execute(
            insert(Image).values(digest=second, repository=repository, changed_at=long_ago)
        )
        conn.execute(
            insert(ImageTag).values(
                repository=repository, tag=sha[:12], digest=second, seen_at=long_ago,
                changed_at=long_ago,
            )
        )  # fmt: skip
        summary = resolve_images(conn, changed_after=_last_derive(conn))
        after = conn.execute(
            select(Deployment.image_digest, Deployment.image_resolution).where(
                Deployment.id == target
            )
        ).one()
        revision = conn.execute(select(Image.revision).where(Image.digest == second)).scalar()
        transaction.rollback()
    assert (revision, summary.revisions) == (sha, 1)
    assert tuple(after) == (None, "none")


def found(engine: Engine, org: Organisation, policy: str) -> list[Any]:
    with engine.connect() as conn:
        return scan(
            conn, org.start - timedelta(days=60), org.now + timedelta(days=1), PATH, only=[policy]
        )


def test_unrecorded_changes_are_the_hand_changes(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    org, engine, cluster = synced
    truth = {
        (c.service, c.environment, c.digest)
        for c in cluster.unrecorded_changes(org.now)
        if c.environment in OBSERVED
    }
    got = {
        (v.service, v.environment, v.message.split(" started running ")[1][:19])
        for v in found(engine, org, "unrecorded-change")
    }
    assert truth and got == {(s, e, d[:19]) for s, e, d in truth}


def subjects(engine: Engine, org: Organisation, policy: str) -> set[str]:
    """The deployments a policy flags, by external id."""
    return {v.subject.split(":", 1)[1] for v in found(engine, org, policy)}


def test_image_policies_flag_what_the_generator_seeded(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    org, engine, cluster = synced
    want = {k: v for k, v in expected(org, cluster).items() if v[2].status == "success"}
    rebuilt = {k for k, (digest, _, d) in want.items() if d.rebuilt and digest == d.digest}
    unpinned = {k for k, (_, how, _) in want.items() if how == "none"}
    assert rebuilt and unpinned
    assert subjects(engine, org, "rebuilt-image") == rebuilt
    assert subjects(engine, org, "unpinned-image") == unpinned
    moved = set()
    images = jenkins_images(org)
    for k, (_, how, d) in want.items():
        if how == "tag":
            repository, tag = images[d.id].rsplit(":", 1)
            service = org.service(_service_of(org, d))
            if len({digest for name, digest, _ in history(service, repository) if name == tag}) > 1:
                moved.add(k)
    assert moved and subjects(engine, org, "moved-tag") == moved
    # successful production deployments, application or schema, from a ref that is neither the
    # service's default branch, a release or hotfix branch nor a version tag
    releases = re.compile(r"^(hotfix/.*|release/.*|v?\d+\.\d+\.\d+)$")
    off_trunk = {
        str(d.id)
        for s in org.services
        for d in s.deployments
        if d.environment.tier == "production"
        and d.status == "success"
        and d.ref != s.default_branch
        and not releases.match(d.ref)
    }
    # which, by the generator's truth, are the GitLab-flow service's deployments from its
    # production environment branch
    environment_branch = {
        str(d.id)
        for s in org.services
        if s.flow == GITLAB_FLOW
        for d in s.deployments
        if d.environment.tier == "production"
        and d.status == "success"
        and d.ref == ENVIRONMENT_BRANCHES["production"]
    }
    assert off_trunk == environment_branch and off_trunk
    assert subjects(engine, org, "non-release-ref") == off_trunk


def test_untested_images_over_the_whole_path_equal_the_reference(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    """untested-image (require = "all") on the images the sources let the warehouse resolve
    equals the reference's definition over the generator's deployments."""
    org, engine, cluster = synced
    want = expected(org, cluster)
    keys = {d.id: k for k, (_, _, d) in want.items()}
    resolved = {d.id: digest for digest, _, d in want.values()}
    truth = ref.untested_images(org, PATH, image=lambda d: resolved.get(d.id) or f"commit:{d.sha}")
    seeded = {
        keys[d.id]
        for s in org.services
        for d in s.deployments
        if d.untested and d.status == "success"
    }
    got = subjects(engine, org, "untested-image")
    assert got == {keys[i] for i in truth}
    assert seeded and seeded <= got


def test_image_policies_equal_the_straightforward_computation(
    synced: tuple[Organisation, Engine, KubernetesCluster],
) -> None:
    """untested-image and rebuilt-image over images with platform manifests and rebuilds equal
    the computation from every upstream run read row by row (tests/policy_reference.py)."""
    org, engine, _ = synced
    since, until = org.start - timedelta(days=60), org.now + timedelta(days=1)
    with engine.connect() as conn:
        for params in ({}, {"untested-image": {"require": "previous", "min_soak_minutes": 30}}):
            settings = PoliciesSettings.model_validate(params)
            got = scan(conn, since, until, PATH, settings, only=["untested-image"])
            assert got == reference_untested(conn, since, until, PATH, settings)
            assert got
        rebuilt = scan(conn, since, until, PATH, only=["rebuilt-image"])
        assert rebuilt == reference_rebuilt(conn, since, until, PATH)
        assert rebuilt
