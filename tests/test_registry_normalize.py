"""Registry normalisers: Harbor artifacts shaped on Harbor's API definition (swagger `Artifact`,
`Tag`, `Reference`, `Platform`, `AuditLog`), OCI manifests and indexes, label trust, and the
GitLab-registry samples Harbor's GitLab adapter is tested with (tests/fixtures/gitlab/harbor)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors import registry_normalize as norm
from collectors.payload import RejectedPayload

NOW = datetime(2025, 6, 2, 12, tzinfo=UTC)
REPO = "harbor.example.com/acme/payments/api"
D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64
AMD = "sha256:" + "c" * 64
ARM = "sha256:" + "d" * 64
SHA = "0123456789abcdef0123456789abcdef01234567"
# goharbor/harbor src/pkg/reg/adapter/gitlab/testdata (Apache-2.0; tests/fixtures/SOURCES.md)
FIXTURES = Path(__file__).parent / "fixtures" / "gitlab" / "harbor"


def labels(source: str, revision: str = SHA) -> dict[str, str]:
    return {
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.created": "2025-05-30T06:53:38Z",
    }


def artifact(**overrides: object) -> dict[str, object]:
    """A single-platform image artifact as `GET .../artifacts?with_tag=true` lists it."""
    body: dict[str, object] = {
        "id": 141,
        "type": "IMAGE",
        "media_type": "application/vnd.oci.image.config.v1+json",
        "manifest_media_type": "application/vnd.oci.image.manifest.v1+json",
        "project_id": 1,
        "repository_id": 3,
        "digest": D1,
        "size": 48000719,
        "push_time": "2025-05-30T06:53:38.979Z",
        "pull_time": "2025-05-31T08:00:00.000Z",
        "extra_attrs": {
            "architecture": "amd64",
            "os": "linux",
            "author": "",
            "created": "2025-05-30T06:53:38.979Z",
            "config": {"Labels": labels("https://gitlab.example.com/acme/payments/api.git")},
        },
        "annotations": None,
        "references": None,
        "tags": [
            {
                "id": 7,
                "repository_id": 3,
                "artifact_id": 141,
                "name": "f56153ab",
                "push_time": "2025-05-30T06:53:38.979Z",
                "pull_time": "2025-05-30T06:53:38.979Z",
                "immutable": False,
                "signed": False,
            },
            {
                "id": 8,
                "repository_id": 3,
                "artifact_id": 141,
                "name": "latest",
                "push_time": "2025-05-31T09:00:00.000Z",
                "pull_time": None,
                "immutable": False,
                "signed": False,
            },
        ],
        "addition_links": {"build_history": {"absolute": False, "href": "/api/v2.0/..."}},
        "labels": None,
        "accessories": None,
    }
    body.update(overrides)
    return body


def index_artifact() -> dict[str, object]:
    return artifact(
        media_type="application/vnd.oci.image.index.v1+json",
        manifest_media_type="application/vnd.oci.image.index.v1+json",
        extra_attrs={},
        references=[
            {
                "parent_id": 141,
                "child_id": 142,
                "child_digest": AMD,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": None,
                "urls": None,
            },
            {
                "parent_id": 141,
                "child_id": 143,
                "child_digest": ARM,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                "annotations": None,
                "urls": None,
            },
        ],
    )


def test_harbor_image_with_own_labels_has_a_label_revision_and_tag_rows() -> None:
    images, tags = norm.normalize_harbor_artifact(artifact(), REPO, NOW)
    assert images == [
        {
            "digest": D1,
            "repository": REPO,
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "pushed_at": datetime(2025, 5, 30, 6, 53, 38, 979000, tzinfo=UTC),
            "source_repository": "https://gitlab.example.com/acme/payments/api.git",
            "revision": SHA,
            "revision_origin": "label",
        }
    ]
    assert [(t["tag"], t["digest"], t["seen_at"]) for t in tags] == [
        ("f56153ab", D1, datetime(2025, 5, 30, 6, 53, 38, 979000, tzinfo=UTC)),
        ("latest", D1, datetime(2025, 5, 31, 9, tzinfo=UTC)),
    ]
    assert all(t["repository"] == REPO and t["last_seen_at"] == NOW for t in tags)


def test_inherited_base_image_label_sets_no_revision() -> None:
    inherited = artifact(
        extra_attrs={"config": {"Labels": labels("https://gitlab.example.com/platform/base")}}
    )
    (image,), _ = norm.normalize_harbor_artifact(inherited, REPO, NOW)
    assert "revision" not in image and "revision_origin" not in image
    assert image["source_repository"] == "https://gitlab.example.com/platform/base"


def test_label_trusted_through_the_services_code_repository() -> None:
    """An image repository named unlike its code repository: the service's repo path counts."""
    other = artifact(extra_attrs={"config": {"Labels": labels("git@gitlab.example.com:pay/api")}})
    (image,), _ = norm.normalize_harbor_artifact(other, REPO, NOW)
    assert "revision" not in image
    (image,), _ = norm.normalize_harbor_artifact(other, REPO, NOW, sources={"pay/api"})
    assert image["revision"] == SHA


@pytest.mark.parametrize(
    ("source", "trusted"),
    [
        ("https://gitlab.example.com/acme/payments", True),  # the project the repository is under
        ("https://gitlab.example.com/acme", False),  # a group is no code repository
        ("https://gitlab.example.com/acme/pay", False),  # a look-alike, not an enclosing path
    ],
)
def test_label_naming_the_project_a_sub_repository_is_under(source: str, trusted: bool) -> None:
    """GitLab names a project's images under its path: `acme/payments/worker` is acme/payments'."""
    own = artifact(extra_attrs={"config": {"Labels": labels(source)}})
    (image,), _ = norm.normalize_harbor_artifact(
        own, "harbor.example.com/acme/payments/worker", NOW
    )
    assert (image.get("revision") == SHA) is trusted


def test_label_revision_that_is_not_a_commit_is_ignored() -> None:
    odd = artifact(
        extra_attrs={
            "config": {"Labels": labels("https://gitlab.example.com/acme/payments/api", "main")}
        }
    )
    (image,), _ = norm.normalize_harbor_artifact(odd, REPO, NOW)
    assert "revision" not in image


def test_index_and_platform_manifests_are_one_image() -> None:
    child = artifact(digest=AMD, tags=None)
    images, tags = norm.normalize_harbor_artifact(index_artifact(), REPO, NOW, child=child)
    by_digest = {i["digest"]: i for i in images}
    assert by_digest[D1]["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert by_digest[D1]["revision"] == SHA and "index_digest" not in by_digest[D1]
    assert (by_digest[AMD]["index_digest"], by_digest[AMD]["platform"]) == (D1, "linux/amd64")
    assert by_digest[ARM]["platform"] == "linux/arm64/v8"
    assert by_digest[ARM]["revision"] == SHA
    assert by_digest[ARM]["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert {t["digest"] for t in tags} == {D1}  # tags point at the index


def test_index_without_its_child_leaves_label_columns_out() -> None:
    images, _ = norm.normalize_harbor_artifact(index_artifact(), REPO, NOW)
    assert all("revision" not in i and "source_repository" not in i for i in images)
    assert len(images) == 3


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"digest": None}, "harbor artifact: missing digest"),
        ({"digest": "latest"}, "harbor artifact: digest is not an algorithm:hex digest"),
        ({"push_time": "yesterday"}, "harbor artifact: bad timestamp in push_time"),
        ({"tags": [{"name": "x"}]}, "harbor artifact: missing tags[0].push_time"),
        ({"references": "none"}, "harbor artifact: references is not a list"),
        ({"extra_attrs": {"config": {"Labels": []}}}, "extra_attrs.config.Labels is not an object"),
    ],
)
def test_malformed_artifacts_are_rejected_naming_the_field(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(RejectedPayload, match=re.escape(reason)):
        norm.normalize_harbor_artifact(artifact(**change), REPO, NOW)


def test_audit_log_entries() -> None:
    entry = {
        "id": 9,
        "username": "robot$ci",
        "resource": "acme/payments/api:latest",
        "resource_type": "artifact",
        "operation": "create",
        "op_time": "2025-05-31T09:00:00Z",
    }
    assert norm.parse_audit_entry(entry) == (
        "acme/payments/api",
        "latest",
        datetime(2025, 5, 31, 9, tzinfo=UTC),
    )
    assert norm.parse_audit_entry({**entry, "operation": "pull"}) is None
    assert norm.parse_audit_entry({**entry, "resource": f"acme/payments/api@{D1}"}) is None
    with pytest.raises(RejectedPayload, match="harbor audit log: bad timestamp in op_time"):
        norm.parse_audit_entry({**entry, "op_time": "soon"})


def test_tag_history_from_the_audit_log_matches_pushes_to_artifacts_by_time() -> None:
    t1, t2 = datetime(2025, 5, 30, 6, tzinfo=UTC), datetime(2025, 5, 31, 9, tzinfo=UTC)
    artifacts = {D1: t1, D2: t2 + timedelta(milliseconds=400)}
    pushes = [("latest", t1), ("latest", t2), ("other", t2 + timedelta(minutes=5))]
    rows = norm.history_rows(pushes, artifacts, {("latest", D2): t2}, REPO, NOW)
    assert {(r["tag"], r["digest"], r["seen_at"]) for r in rows} == {
        ("latest", D1, t1),  # the old position of a moved tag
        ("latest", D2, t2),  # the current one, with the push time the listing shows
    }
    tie = {D1: t1 - timedelta(seconds=1), D2: t1 + timedelta(seconds=1)}
    assert norm.history_rows([("latest", t1)], tie, {}, REPO, NOW) == []


def test_oci_index_and_manifest() -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": AMD,
                "size": 1200,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": ARM,
                "size": 1201,
                "platform": {"architecture": "arm64", "os": "linux"},
            },
        ],
    }
    config = {"architecture": "amd64", "os": "linux", "config": {"Labels": labels(
        "https://gitlab.example.com/acme/payments/api")}}  # fmt: skip
    assert norm.index_child(index) == AMD
    rows = norm.normalize_oci_image(REPO, D1, None, index, config=config)
    assert [(r["digest"], r.get("index_digest"), r.get("platform")) for r in rows] == [
        (D1, None, None),
        (AMD, D1, "linux/amd64"),
        (ARM, D1, "linux/arm64"),
    ]
    assert all(r["revision"] == SHA for r in rows)
    manifest = {"schemaVersion": 2, "config": {"digest": "sha256:" + "e" * 64}, "layers": []}
    assert norm.config_digest(manifest) == "sha256:" + "e" * 64
    (row,) = norm.normalize_oci_image(
        REPO, D2, "application/vnd.oci.image.manifest.v1+json", manifest
    )
    assert row == {
        "digest": D2,
        "repository": REPO,
        "media_type": "application/vnd.oci.image.manifest.v1+json",
    }
    with pytest.raises(RejectedPayload, match="oci manifest: manifest has neither"):
        norm.normalize_oci_image(REPO, D2, None, {"schemaVersion": 2})
    with pytest.raises(RejectedPayload, match="Docker-Content-Digest is not a digest"):
        norm.normalize_oci_image(REPO, "", None, manifest)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://gitlab.example.com/Acme/API.git", "acme/api"),
        ("git@gitlab.example.com:acme/api.git", "acme/api"),
        ("ssh://git@gitlab.example.com:2222/acme/api", "acme/api"),
        ("acme/api/", "acme/api"),
        ("", None),
    ],
)
def test_source_paths(url: str, path: str | None) -> None:
    assert norm.source_path(url) == path


def test_gitlab_registry_samples_from_harbors_adapter() -> None:
    """The GitLab registry responses Harbor's GitLab adapter reads: repository locations give the
    host and path a registry collector stores, a project's path is the source a label must name,
    and a tag listing (names only, no digest) is no artifact: rejected, naming the field."""
    projects = json.loads((FIXTURES / "projects/all.json").read_text())
    paths = {p["id"]: p["path_with_namespace"] for p in projects}
    for file in sorted((FIXTURES / "repositories").glob("*.json")):
        for repo in json.loads(file.read_text()):
            location = repo["location"]
            assert norm.repository_path(location) == repo["path"]
            if repo["project_id"] in paths:
                own = {
                    "config": {"Labels": labels(f"https://gitlab.com/{paths[repo['project_id']]}")}
                }
                (image,), _ = norm.normalize_harbor_artifact(
                    artifact(extra_attrs=own), location, NOW
                )
                assert image["revision"] == SHA
    tag_files = sorted((FIXTURES / "tags").glob("*.json"))
    assert tag_files
    for file in tag_files:
        for tag in json.loads(file.read_text()):
            with pytest.raises(RejectedPayload, match="harbor artifact: missing digest"):
                norm.normalize_harbor_artifact(tag, tag["location"].rsplit(":", 1)[0], NOW)


def test_raw_payloads_keep_labels_but_no_environment_or_build_arguments() -> None:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2025-05-01T07:17:23Z",
        "config": {
            "Env": ["DB_PASSWORD=hunter2"],
            "Cmd": ["serve", "--token=hunter2"],
            "Labels": labels("https://gitlab.example.com/acme/payments/api"),
        },
        "history": [{"created_by": "ARG NPM_TOKEN=hunter2"}],
        "container_config": {"Env": ["X=hunter2"]},
    }
    kept = norm.scrubbed_config(config)
    assert "hunter2" not in str(kept)
    manifest = {"schemaVersion": 2, "config": {"digest": "sha256:" + "e" * 64}, "layers": []}
    assert norm.normalize_oci_image(REPO, D1, None, manifest, config=kept) == (
        norm.normalize_oci_image(REPO, D1, None, manifest, config=config)
    )  # re-deriving from what is kept gives the same rows
    harbor = {**artifact(), "extra_attrs": config}
    assert "hunter2" not in str(norm.scrubbed_artifact(harbor))
    assert norm.normalize_harbor_artifact(norm.scrubbed_artifact(harbor), REPO, NOW) == (
        norm.normalize_harbor_artifact(harbor, REPO, NOW)
    )
