"""The registry collector against the sandbox's Harbor and OCI simulators over real HTTP: images,
platform digests, label trust and tag history equal the ground truth (Service.images and
tag_history, sandbox/oci.py); re-syncs change nothing; moves, pagination, 429s, faults,
malformed artifacts and unreachable or refusing registries."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from collectors.frame import SyncOptions
from collectors.registry import RegistryCollector
from collectors.run import run_sync
from config.settings import Settings
from sandbox import registry_payloads as truth
from sandbox.generate import generate
from sandbox.model import Organisation
from sandbox.oci import BASE_IMAGE_SOURCE, inherits_labels, is_multiarch
from sandbox.serve import Sandbox
from sandbox.server import FaultRule, RateLimit
from tests.sandbox_helpers import (
    DATE_RETRY_AFTER,
    TOKEN_ENV,
    answer_429_with_a_date,
    assert_waited_retry_after,
    record_waits,
    snapshot,
)
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import Image, ImageTag, RawPayload, SyncState

NOW = datetime(2025, 6, 2, tzinfo=UTC)
USER_ENV, PASSWORD_ENV = "CDM_TEST_REGISTRY_USER", "CDM_TEST_REGISTRY_PASSWORD"
SECRET = "registry-secret-7f3a"
FIELDS = ("repository", "media_type", "pushed_at", "revision", "revision_origin",
          "source_repository", "index_digest", "platform")  # fmt: skip


@pytest.fixture(scope="module")
def org() -> Organisation:
    return generate(1, "small", NOW)


@pytest.fixture
def sandbox(org: Organisation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv(USER_ENV, "robot$cdmetrics")
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    with Sandbox.start(org=org, token=SECRET, jenkins=False, keep_log=True) as running:
        yield running


def settings(sandbox: Sandbox, kind: str, **source: Any) -> Settings:
    url = sandbox.harbor_url if kind == "harbor" else sandbox.oci_url
    entry = {"name": f"{kind}-registry", "kind": kind, "url": url, "host": truth.HOST,
             "projects": ["acme"], "user_env": USER_ENV, "token_env": PASSWORD_ENV, **source}  # fmt: skip
    return Settings(sources={"registry": [entry]}, sync={"requests_per_second": 0})


def sync(sandbox: Sandbox, engine: Engine, kind: str, **source: Any):  # type: ignore[no-untyped-def]
    s = settings(sandbox, kind, **source)
    return RegistryCollector(s.sources.registry[0], SyncOptions(s, engine)).sync()


def images(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r.digest: {f: getattr(r, f) for f in FIELDS} for r in conn.execute(select(Image))}


def tags(engine: Engine) -> set[tuple[str, str, str, datetime]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(ImageTag.repository, ImageTag.tag, ImageTag.digest, ImageTag.seen_at)
        )
        return {tuple(r) for r in rows}  # type: ignore[misc]


def test_harbor_sync_equals_ground_truth_and_resync_changes_nothing(
    sandbox: Sandbox, engine: Engine
) -> None:
    summary = sync(sandbox, engine, "harbor")
    assert summary.ok, summary.errors
    assert summary.rejected == 0
    assert images(engine) == truth.expected_images(sandbox.org)
    # the audit log gives the whole tag history, moves before the first sync included
    assert tags(engine) == truth.expected_tags(sandbox.org)
    before = snapshot(engine, ("image", "image_tag"))
    again = sync(sandbox, engine, "harbor")
    assert again.ok and again.rows == 0
    assert again.requests <= 3  # projects' audit log and repositories; no artifact listing
    assert snapshot(engine, ("image", "image_tag")) == before


def test_oci_sync_equals_ground_truth_and_resync_changes_nothing(
    sandbox: Sandbox, engine: Engine
) -> None:
    summary = sync(sandbox, engine, "oci")
    assert summary.ok, summary.errors
    expected = {
        d: {**row, "pushed_at": None} for d, row in truth.expected_images(sandbox.org).items()
    }
    assert images(engine) == expected  # the distribution API tells no push time
    found = tags(engine)
    assert {t[:3] for t in found} == truth.current(sandbox.org)
    assert {t[3] for t in found} == {min(t[3] for t in found)}  # first seen: this sync
    before = snapshot(engine, ("image", "image_tag"))
    again = sync(sandbox, engine, "oci")
    assert again.ok and again.rows == 0
    assert snapshot(engine, ("image", "image_tag")) == before
    current = truth.current(sandbox.org)
    # a tag naming a commit (`<sha8>`) is never read again; others may move (`latest`, `<sha8>-prod`)
    mutable = sum(1 for _, tag, _ in current if not re.fullmatch(r"[0-9a-f]{8}", tag))
    per_repo = Counter(r for r, _, _ in current)
    pages = sum(-(-n // 100) for n in per_repo.values())  # tag lists, 100 a page
    # base and catalog (each a 401, a token and the retry), per repository a 401 and a token for
    # its scope, its tag list's pages and a HEAD of each mutable tag, nothing else
    assert again.requests <= 6 + pages + 3 * len(per_repo) + mutable


@pytest.mark.parametrize("kind", ["harbor", "oci"])
def test_tag_moves_after_advance(sandbox: Sandbox, engine: Engine, kind: str) -> None:
    earlier = NOW - timedelta(days=10)
    sandbox.advance(earlier)
    assert sync(sandbox, engine, kind).ok
    first = tags(engine)
    sandbox.advance(NOW)
    later = sync(sandbox, engine, kind)
    assert later.ok and later.rows > 0
    found = tags(engine)
    assert first <= found  # history is kept
    if kind == "harbor":
        assert found == truth.expected_tags(sandbox.org)
        assert images(engine) == truth.expected_images(sandbox.org)
    else:
        assert {t[:3] for t in found} == truth.current(sandbox.org, earlier) | truth.current(
            sandbox.org
        )
    moved = {
        (repo, tag)
        for repo, tag, digest in truth.current(sandbox.org)
        if (repo, tag) in {(r, t) for r, t, d in truth.current(sandbox.org, earlier) if d != digest}
    }
    assert moved, "the small organisation moves `latest` within ten days"
    for repo, tag in moved:
        history = sorted((seen, digest) for r, t, digest, seen in found if (r, t) == (repo, tag))
        assert history[-1][1] == next(
            d for r, t, d in truth.current(sandbox.org) if (r, t) == (repo, tag)
        )


def test_labels_inherited_from_a_base_image_are_not_trusted(
    sandbox: Sandbox, engine: Engine
) -> None:
    assert sync(sandbox, engine, "harbor").ok
    inheriting = [s for s in sandbox.org.services if inherits_labels(s)]
    assert inheriting, "the small organisation has a service without labels of its own"
    found = images(engine)
    for s in inheriting:
        for image in s.images:
            row = found[image.digest]
            assert row["source_repository"] == BASE_IMAGE_SOURCE
            assert row["revision"] is None and row["revision_origin"] is None
    own = next(s for s in sandbox.org.services if not inherits_labels(s))
    assert found[own.images[0].digest]["revision"] == own.images[0].revision


@pytest.mark.parametrize("kind", ["harbor", "oci"])
def test_index_and_platform_digests_are_one_image(
    sandbox: Sandbox, engine: Engine, kind: str
) -> None:
    assert sync(sandbox, engine, kind).ok
    multi = next(s for s in sandbox.org.services if is_multiarch(s))
    image = multi.images[-1]
    with engine.connect() as conn:
        rows = conn.execute(
            select(Image.digest, Image.index_digest, Image.platform, Image.revision).where(
                (Image.digest == image.digest) | (Image.index_digest == image.digest)
            )
        ).all()
    assert {r.platform for r in rows} == {None, "linux/amd64", "linux/arm64"}
    assert {r.index_digest for r in rows if r.platform} == {image.digest}
    assert len({r.revision for r in rows}) == 1


@pytest.mark.parametrize("kind", ["harbor", "oci"])
def test_small_pages_give_the_same_warehouse(sandbox: Sandbox, engine: Engine, kind: str) -> None:
    summary = sync(sandbox, engine, kind, per_page=3)
    assert summary.ok, summary.errors
    if kind == "harbor":
        assert tags(engine) == truth.expected_tags(sandbox.org)
        assert images(engine) == truth.expected_images(sandbox.org)
        logs = [t for _, _, t, _ in sandbox.harbor_app.stats.log or []]  # type: ignore[union-attr]
        assert any("page=2" in t for t in logs if "/artifacts" in t)
    else:
        assert {t[:3] for t in tags(engine)} == truth.current(sandbox.org)
        logs = [t for _, _, t, _ in sandbox.oci_app.stats.log or []]  # type: ignore[union-attr]
        assert any("last=" in t for t in logs if "/tags/list" in t)
        assert any("last=" in t for t in logs if "_catalog" in t)


def test_a_short_harbor_page_fails_its_repository_and_a_resume_recovers(
    sandbox: Sandbox, engine: Engine
) -> None:
    assert sandbox.harbor_app is not None
    rule = FaultRule(path="/artifacts$", kind="short", after=1, times=1)
    sandbox.harbor_app.faults.add(rule)
    broken = sync(sandbox, engine, "harbor", per_page=3)
    assert rule.fired == 1 and not broken.ok
    [error] = broken.errors
    assert "short page: " in error and " items its headers promise (page " in error
    assert f"{sandbox.harbor_url}/api/v2.0/projects/acme/repositories/" in error
    sandbox.harbor_app.faults.clear()
    assert sync(sandbox, engine, "harbor", per_page=3).ok
    assert tags(engine) == truth.expected_tags(sandbox.org)
    assert images(engine) == truth.expected_images(sandbox.org)


def test_a_database_error_fails_its_repositories_and_a_resume_recovers(
    sandbox: Sandbox, engine: Engine
) -> None:
    from tests.test_stream_errors import REJECTED, rejecting_inserts

    with rejecting_inserts(engine, "image"):
        broken = sync(sandbox, engine, "oci")
    assert not broken.ok and broken.errors
    for error in broken.errors:
        assert error.startswith("oci-registry: repository acme/")
        assert ": tags: database error: " in error and REJECTED in error
    assert sync(sandbox, engine, "oci").ok
    assert {t[:3] for t in tags(engine)} == truth.current(sandbox.org)
    assert set(images(engine)) == set(truth.expected_images(sandbox.org))


@pytest.mark.parametrize("kind", ["harbor", "oci"])
def test_rate_limits_and_faults_are_retried(sandbox: Sandbox, engine: Engine, kind: str) -> None:
    app = sandbox.harbor_app if kind == "harbor" else sandbox.oci_app
    assert app is not None
    app.rate_limit = RateLimit(10, burst=3) if kind == "harbor" else RateLimit(300, burst=10)
    app.faults.add(FaultRule(path="/artifacts|/manifests/", kind="503", every=5, times=3))
    app.faults.add(FaultRule(path="/artifacts|/manifests/", kind="drop", every=7, times=2))
    summary = sync(sandbox, engine, kind)
    assert summary.ok, summary.errors
    # a 429 answers before a fault is looked at, so how many faults fire depends on the timing
    assert app.stats.rate_limited > 0 and 1 <= app.faults.fired["503"] <= 3
    assert 1 <= app.faults.fired["drop"] <= 2
    assert {t[:3] for t in tags(engine)} == truth.current(sandbox.org) or kind == "harbor"
    assert set(images(engine)) == set(truth.expected_images(sandbox.org))


@pytest.mark.parametrize("kind", ["harbor", "oci"])
@pytest.mark.parametrize(("ahead", "cap"), DATE_RETRY_AFTER)
def test_retry_after_as_an_http_date_is_obeyed_and_capped(
    sandbox: Sandbox, tmp_path: Path, kind: str, ahead: float, cap: float
) -> None:
    app = sandbox.harbor_app if kind == "harbor" else sandbox.oci_app
    assert app is not None
    rule = answer_429_with_a_date(app, "/artifacts|/manifests/", ahead)
    s = settings(sandbox, kind)
    s.sync.max_retry_after_s = cap
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade(engine)
    collector = RegistryCollector(s.sources.registry[0], SyncOptions(s, engine))
    waits = record_waits(collector)
    summary = collector.sync()
    assert summary.ok, summary.errors
    assert rule.fired == 3
    assert_waited_retry_after(waits, ahead, cap)
    assert set(images(engine)) == set(truth.expected_images(sandbox.org))


def test_malformed_artifact_is_kept_and_counted(sandbox: Sandbox, engine: Engine) -> None:
    victim = sandbox.org.services[0].images[0]
    assert sandbox.harbor is not None
    sandbox.harbor.corrupt(victim.digest, "push_time", "yesterday")
    summary = sync(sandbox, engine, "harbor")
    assert summary.ok and summary.rejected == 1
    with engine.connect() as conn:
        (raw,) = conn.execute(select(RawPayload).where(RawPayload.rejected.is_(True))).all()
    assert raw.external_id.endswith("@" + victim.digest)
    assert "bad timestamp in push_time" in raw.error
    assert len(images(engine)) == len(truth.expected_images(sandbox.org)) - 1


def test_unreachable_and_refusing_registries_are_named_while_gitlab_completes(
    monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    monkeypatch.setenv(USER_ENV, "robot$cdmetrics")
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
    monkeypatch.setenv("CDM_TEST_OUTSIDER", "outsider")
    with Sandbox.start("tiny", seed=3, token=SECRET, jenkins=False) as sb:
        assert sb.harbor is not None and sb.oci is not None
        sb.harbor.outsiders["outsider"] = SECRET
        base = {"host": truth.HOST, "projects": ["acme"], "token_env": PASSWORD_ENV}
        registries = [
            {**base, "name": "harbor-401", "kind": "harbor", "url": sb.harbor_url,
             "user_env": USER_ENV},
            {**base, "name": "harbor-403", "kind": "harbor", "url": sb.harbor_url,
             "user_env": "CDM_TEST_OUTSIDER", "token_env": TOKEN_ENV},
            {**base, "name": "oci-down", "kind": "oci", "url": "http://127.0.0.1:9",
             "user_env": USER_ENV},
        ]  # fmt: skip
        gitlab = {"name": "gitlab", "url": sb.gitlab_url, "token_env": TOKEN_ENV,
                  "groups": [sb.org.root_group]}  # fmt: skip
        s = Settings(
            sources={"gitlab": [gitlab], "registry": registries},
            sync={"requests_per_second": 0, "timeout_s": 5, "history_days": sb.history_days()},
        )
        summaries = {x.name: x for x in run_sync(s, engine)}
    assert summaries["gitlab"].ok and summaries["gitlab"].rows > 0
    errors = {
        name: " ".join(summaries[name].errors) for name in ("harbor-401", "harbor-403", "oci-down")
    }
    assert "harbor-401: cannot read the harbor registry" in errors["harbor-401"]
    assert "HTTP 401" in errors["harbor-401"] and f"${PASSWORD_ENV}" in errors["harbor-401"]
    assert "HTTP 403" in errors["harbor-403"]
    assert "oci-down: cannot read the oci registry at http://127.0.0.1:9" in errors["oci-down"]
    assert "ConnectError" in errors["oci-down"]
    with engine.connect() as conn:
        states = " ".join(str(e) for e in conn.execute(select(SyncState.error)).scalars())
    assert SECRET not in " ".join(errors.values()) + states


@pytest.mark.parametrize("kind", ["harbor", "oci"])
def test_an_html_page_fails_one_repository_and_the_others_sync(
    sandbox: Sandbox, engine: Engine, kind: str
) -> None:
    victim = sandbox.org.services[0].path
    app = sandbox.harbor if kind == "harbor" else sandbox.oci
    assert app is not None
    # a proxy's login page with 200 for the victim's artifact listing / tag list
    last = re.escape(victim.rsplit("/", 1)[1])
    app.html_paths.append(
        f"(/|%2F){last}/artifacts$" if kind == "harbor" else f"/{victim}/tags/list$"
    )
    summary = sync(sandbox, engine, kind)
    assert not summary.ok and len(summary.errors) == 1, summary.errors
    (error,) = summary.errors
    assert f"repository {victim}" in error and "not JSON (text/html)" in error
    assert f"{kind}-registry:" in error and SECRET not in error
    synced = {r for r, _, _, _ in tags(engine)}
    expected = {r for r, _, _ in truth.current(sandbox.org)} - {f"{truth.HOST}/{victim}"}
    assert synced == expected and expected
    with engine.connect() as conn:
        failed = conn.execute(select(SyncState.partition).where(SyncState.status == "failed"))
        assert list(failed.scalars()) == [victim]


def test_oci_without_digest_header_uses_the_manifest_hash(sandbox: Sandbox, engine: Engine) -> None:
    assert sandbox.oci is not None
    sandbox.oci.digest_header = False
    summary = sync(sandbox, engine, "oci")
    assert summary.ok, summary.errors
    view = sandbox.oci.view
    expected = set()
    for s in view.services():
        for tag, (digest, *_) in view.tags(s).items():
            body, _ = truth.manifest(view.blob(digest))  # type: ignore[arg-type]
            content = "sha256:" + hashlib.sha256(json.dumps(body).encode()).hexdigest()
            expected.add((f"{truth.HOST}/{s.path}", tag, content))
    assert {t[:3] for t in tags(engine)} == expected
    # a re-sync: a HEAD without the header is repeated as GET, and nothing changes
    again = sync(sandbox, engine, "oci")
    assert again.ok and again.rows == 0, again.errors
    assert {t[:3] for t in tags(engine)} == expected


def test_oci_tokens_are_scoped_per_repository(sandbox: Sandbox, engine: Engine) -> None:
    a, b = (s.path for s in sandbox.org.services[:2])
    auth = ("robot$cdmetrics", SECRET)
    with httpx.Client(base_url=sandbox.oci_url) as client:
        token = client.get("/token", params={"scope": f"repository:{a}:pull"}, auth=auth).json()[
            "token"
        ]
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get(f"/v2/{a}/tags/list", headers=bearer).status_code == 200
        refused = client.get(f"/v2/{b}/tags/list", headers=bearer)
        assert refused.status_code == 401
        assert f'scope="repository:{b}:pull"' in refused.headers["WWW-Authenticate"]
    # the collector asks a token per repository and syncs every one
    summary = sync(sandbox, engine, "oci")
    assert summary.ok, summary.errors
    assert {t[:3] for t in tags(engine)} == truth.current(sandbox.org)
