"""Derived tables and metrics on hand-built warehouses: the named edge cases of DESIGN.md section 4,
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from analytics import views
from analytics.scope import Scope
from analytics.stats import percentile
from tests.analytics_world import T0, World, at
from warehouse.schema import ChangeFailure, Deployment, DeploymentChain, DeploymentChange


@pytest.fixture
def world(engine: Engine) -> World:
    return World(engine)


def changes_of(world: World, external_id: str) -> list[str]:
    with world.engine.connect() as conn:
        return sorted(
            conn.execute(
                select(DeploymentChange.sha)
                .join(Deployment, Deployment.id == DeploymentChange.deployment_id)
                .where(Deployment.external_id == external_id)
            ).scalars()
        )


def chain(world: World) -> list[tuple[str, bool, bool, int]]:
    with world.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    Deployment.external_id,
                    DeploymentChain.baseline,
                    DeploymentChain.rollback,
                    DeploymentChain.changes,
                )
                .join(Deployment, Deployment.id == DeploymentChain.deployment_id)
                .order_by(DeploymentChain.finished_at, Deployment.id)
            )
        ]


def test_first_deployment_is_the_baseline(world: World) -> None:
    world.line("a", "b", "c")
    first = world.deploy("b", at(10))
    second = world.deploy("c", at(20))
    world.derive()
    assert chain(world) == [(first, True, False, 0), (second, False, False, 1)]
    assert changes_of(world, second) == ["c"]
    m = world.metrics()
    assert m["lead_time"]["changes"] == 1
    assert m["lead_time"]["median_hours"] == pytest.approx(
        18.0
    )  # c authored at +2h, deployed at +20h


def test_rollback_has_no_changes_and_fails_the_previous_deployment(world: World) -> None:
    world.line("a", "b", "c")
    world.deploy("a", at(1))
    bad = world.deploy("c", at(5))
    back = world.deploy("b", at(6))  # b is an ancestor of c: a rollback
    world.derive()
    assert [row[2] for row in chain(world)] == [False, False, True]
    assert changes_of(world, back) == []
    assert changes_of(world, bad) == ["b", "c"]
    m = world.metrics()
    assert m["change_failure_rate"]["failed"] == 1
    assert m["change_failure_rate"]["reasons"] == {"incident": 0, "rollback": 1, "hotfix": 0}
    assert m["recovery_time"]["failures"] == 1
    assert m["recovery_time"]["median_hours"] == pytest.approx(1.0)
    assert m["rework_rate"] == {"rework": 1, "deployments": 3, "rate": pytest.approx(1 / 3)}


def test_rollback_by_digest_that_ran_before(world: World) -> None:
    world.line("a", "b")
    world.commit("x", "b", authored=at(3))  # rebuilt: another commit but the old image
    world.deploy("a", at(1), digest="sha256:old")
    world.deploy("b", at(2), digest="sha256:new")
    world.deploy("x", at(3), digest="sha256:old")
    world.derive()
    assert [row[2] for row in chain(world)] == [False, False, True]


def test_a_commit_is_counted_once_after_a_rollback(world: World) -> None:
    world.line("a", "b", "c", "d")
    world.deploy("a", at(10))
    world.deploy("c", at(11))
    world.deploy("a", at(12))  # rollback
    again = world.deploy("d", at(13))
    world.derive()
    assert changes_of(world, again) == ["b", "c", "d"]  # carried again ...
    assert world.metrics()["lead_time"]["changes"] == 3  # ... but b and c count once: b, c, d


def test_redeploying_the_same_commit_is_neither_change_nor_rollback(world: World) -> None:
    world.line("a", "b")
    world.deploy("a", at(1))
    world.deploy("b", at(2))
    world.deploy("b", at(3))
    world.derive()
    assert [row[1:] for row in chain(world)] == [
        (True, False, 0),
        (False, False, 1),
        (False, False, 0),
    ]


def test_squash_commit_starts_at_the_first_commit_of_its_merge_request(world: World) -> None:
    world.line("base")
    world.commit("f1", "base", authored=at(1))
    world.commit("f2", "f1", authored=at(5))
    world.commit("sq", "base", authored=at(30))  # the squash commit's date is the merge time
    world.merge_request(
        1, ["f1", "f2"], created=at(6), first_review=at(8), merged=at(30), squash_sha="sq"
    )
    world.deploy("base", at(0.5))
    world.deploy("sq", at(40))
    world.derive()
    m = world.metrics()
    assert m["lead_time"]["median_hours"] == pytest.approx(39.0)  # from f1 (+1h), not from +30h
    assert m["lead_time"]["stages"] == {
        "coding": 5.0,
        "pickup": 2.0,
        "review": 22.0,
        "deploy": 10.0,
        "cycle": 39.0,
    }


def test_merge_commits_are_excluded_from_lead_time(world: World) -> None:
    world.line("a")
    world.commit("f", "a", authored=at(1))
    world.commit("m", "a", "f", authored=at(3))
    world.deploy("a", at(0.5))
    deployed = world.deploy("m", at(5))
    world.derive()
    assert changes_of(world, deployed) == ["f", "m"]
    assert world.metrics()["lead_time"]["changes"] == 1


def test_deploy_before_merge_is_a_negative_span_dropped_and_counted(world: World) -> None:
    world.line("a")
    world.commit("f", "a", authored=at(1))
    world.commit("m", "a", "f", authored=at(2))
    world.merge_request(1, ["f"], created=at(2), first_review=at(3), merged=at(9), merge_sha="m")
    world.deploy("a", at(0.5))
    world.deploy("m", at(4))  # deployed from the branch before the MR merged
    world.derive()
    m = world.metrics()["lead_time"]
    assert m["negative_spans_dropped"]["deploy"] == 1
    assert m["stages"]["deploy"] is None
    assert m["stages"]["cycle"] == pytest.approx(3.0)


def test_no_deployments_in_the_period(world: World) -> None:
    world.line("a", "b")
    world.deploy("a", at(1))
    world.deploy("b", at(2))
    world.derive()
    m = world.metrics(since=at(100), until=at(200))
    assert m["deployment_frequency"] == {
        "deployments": 0,
        "deployment_days": 0,
        "median_days_per_week": 0.0,
        "level": None,
    }
    assert m["lead_time"]["median_hours"] is None and m["lead_time"]["level"] is None
    assert m["change_failure_rate"]["rate"] is None


def test_incident_in_the_window_vs_after_the_next_deployment(world: World) -> None:
    world.line("a", "b", "c")
    world.deploy("a", at(0))
    first = world.deploy("b", at(10))
    world.deploy("c", at(20))
    world.incident("in-window", opened=at(12), resolved=at(14))  # belongs to b
    world.incident("after-next", opened=at(30))  # after c: belongs to c, within 7 days
    world.derive()
    with world.engine.connect() as conn:
        failed = conn.execute(select(ChangeFailure.incident, ChangeFailure.recovered_at)).all()
    assert len(failed) == 2
    m = world.metrics()
    assert m["change_failure_rate"]["failed"] == 2
    assert m["recovery_time"] == {
        "failures": 1,
        "unrecovered": 1,
        "median_hours": pytest.approx(4.0),
        "p90_hours": pytest.approx(4.0),
        "level": "high",
        "incidents": 2,
        "incidents_open": 1,
        "incidents_resolved_before_opened": 0,
        "incident_restore_median_hours": pytest.approx(2.0),
    }
    assert first


def test_incident_resolved_before_opened_is_left_out_of_time_to_restore_and_counted(
    world: World,
) -> None:
    """Clock skew or a back-filled ticket: resolved before it was opened. It still makes its
    deployment a failed change, but its time to restore would be negative: left out and counted,
    and its resolution (here before the deployment itself) does not recover the failed change."""
    world.line("a", "b", "c", "d")
    world.deploy("a", at(0))
    world.deploy("b", at(10))
    world.deploy("c", at(20))
    world.deploy("d", at(30))
    world.incident("skewed", opened=at(12), resolved=at(9))  # attributed to b; resolved "first"
    world.incident("restored", opened=at(22), resolved=at(25))  # c: restored 3 h after it opened
    world.incident("with-skewed", opened=at(23), resolved=at(22.5))  # c: ignored for recovery
    world.derive()
    with world.engine.connect() as conn:
        recovered = dict(
            conn.execute(
                select(Deployment.external_id, ChangeFailure.recovered_at).join(
                    ChangeFailure, ChangeFailure.deployment_id == Deployment.id
                )
            ).all()
        )
    # b: by the next good deployment... c failed too, so by d; c: its usable incident, at 25 h
    assert recovered == {"d2": at(30), "d3": at(25)}
    recovery = world.metrics()["recovery_time"]
    assert recovery["median_hours"] == pytest.approx(percentile([20.0, 5.0], 0.5))
    assert (recovery["incidents"], recovery["incidents_open"]) == (3, 0)
    assert recovery["incidents_resolved_before_opened"] == 2
    assert recovery["incident_restore_median_hours"] == pytest.approx(3.0)
    with world.engine.connect() as conn:  # the incidents list (dashboard, report) flags them
        listed = views.incidents(conn, Scope(at(-24), at(24 * 27)))
    assert {r["opened_at"]: (r["restore_hours"], r["resolved_before_opened"]) for r in listed} == {
        at(12): (None, True),
        at(22): (pytest.approx(3.0), False),
        at(23): (None, True),
    }


def test_incident_after_the_window_fails_nothing(world: World) -> None:
    world.line("a", "b")
    world.deploy("a", at(0))
    world.deploy("b", at(1))
    world.incident("late", opened=at(1 + 24 * 8))
    world.derive()
    assert world.metrics(until=at(24 * 20))["change_failure_rate"]["failed"] == 0


def test_explicit_incident_link_wins_over_the_window(world: World) -> None:
    world.line("a", "b", "c")
    world.deploy("a", at(0))
    world.deploy("b", at(10))
    latest = world.deploy("c", at(20))
    target = world.deploy("b", at(5), env="staging")  # linked to a non-production deployment
    world.incident(
        "linked-to-b-prod", opened=at(25), linked_to="d2"
    )  # window says c; the link says b
    world.incident("linked-elsewhere", opened=at(21), linked_to=target)  # taken away from c
    world.derive()
    with world.engine.connect() as conn:
        failed = (
            conn.execute(
                select(Deployment.external_id).join(
                    ChangeFailure, ChangeFailure.deployment_id == Deployment.id
                )
            )
            .scalars()
            .all()
        )
    assert failed == ["d2"]
    assert latest == "d3"


@pytest.mark.parametrize(("hours_later", "failed"), [(23, 1), (25, 0)])
def test_hotfix_within_and_outside_the_window(
    world: World, hours_later: float, failed: int
) -> None:
    world.line("a", "b")
    world.commit("h", "b", authored=at(2))
    world.deploy("a", at(0))
    world.deploy("b", at(1))
    world.deploy("h", at(1 + hours_later), ref="hotfix/login")
    world.derive()
    m = world.metrics()
    assert m["change_failure_rate"]["failed"] == failed
    assert m["change_failure_rate"]["reasons"]["hotfix"] == failed
    assert m["rework_rate"]["rework"] >= 1  # a deployment from a hotfix ref is rework either way


def test_two_deployments_in_the_same_minute(world: World) -> None:
    world.line("a", "b", "c")
    world.deploy("a", at(0))
    first = world.deploy("b", at(1))
    second = world.deploy("c", at(1))  # same finish: ordered by id
    world.derive()
    assert changes_of(world, first) == ["b"] and changes_of(world, second) == ["c"]
    assert world.metrics()["deployment_frequency"]["deployments"] == 3


def test_a_week_with_no_deployment_counts_as_zero(world: World) -> None:
    world.line("a", "b", "c", "d")
    for day, sha in ((0, "a"), (1, "b"), (2, "c")):  # three days in the first week
        world.deploy(sha, at(24 * day))
    world.deploy("d", at(24 * 14))  # one day two weeks later; the week between has none
    world.derive()
    monday = T0 - timedelta(hours=9)
    m = world.metrics(since=monday, until=monday + timedelta(days=21))
    assert m["deployment_frequency"]["deployment_days"] == 4
    assert m["deployment_frequency"]["median_days_per_week"] == 1.0  # weeks: 3, 0, 1
    rows = world.metrics(since=monday, until=monday + timedelta(days=21), by="week")["rows"]
    assert [r["deployment_frequency"]["deployment_days"] for r in rows] == [3, 0, 1]
    # a period reaching into a fourth week counts that week too: 3, 0, 1, 0
    assert (
        world.metrics(since=monday, until=monday + timedelta(days=22))["deployment_frequency"][
            "median_days_per_week"
        ]
        == 0.5
    )


def test_build_health(world: World) -> None:
    world.pipeline("p1", "success", at(1), 300)
    world.pipeline("p2", "failed", at(2), 500)
    world.pipeline("p3", "success", at(4), 700)
    world.pipeline("p4", "canceled", at(5), 100)
    world.pipeline("b1", "failed", at(3), 900, ref="feature/x")
    build = world.metrics(since=at(0), until=at(6))["build"]
    assert (build["pipelines"], build["failed"], build["canceled"]) == (5, 2, 1)
    assert build["failure_rate"] == pytest.approx(2 / 4)
    assert build["median_duration_s"] == 500
    # default branch: green 1..2, red 2..4, green 4..6 -> red 2 of 5 hours
    assert build["default_branch_red_share"] == pytest.approx(2 / 5)


def test_a_merge_requests_first_commit_follows_commits_arriving_late(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`merge_request.first_commit_at`, stored by derive, moves when an earlier commit arrives
    late by either row (the MR commit naming it, or the commit's own row after its MR commit),
    and so does the squash commit's lead time; after each step every table equals a full
    derive's."""
    from analytics.derive import derive
    from tests.sandbox_helpers import by_natural_keys, differences
    from warehouse.schema import Commit, MergeRequest, MrCommit

    monkeypatch.setattr("analytics.derive.CLOCK_SKEW", timedelta(0))
    world.line("base")
    world.commit("f0", "base", authored=at(1))  # known, but not yet one of the MR's commits
    world.commit("f2", "base", authored=at(5))
    world.commit("sq", "base", authored=at(30))
    world.merge_request(1, ["f2"], created=at(6), merged=at(30), squash_sha="sq")
    world.deploy("base", at(0.5))
    world.deploy("sq", at(40))

    def first() -> tuple[object, object]:
        with world.engine.connect() as conn:
            stored = conn.execute(select(MergeRequest.first_commit_at)).scalar_one()
            started = conn.execute(
                select(DeploymentChange.started_at).where(DeploymentChange.sha == "sq")
            ).scalar_one()
        return stored, started

    def equals_full() -> None:
        incremental = by_natural_keys(world.engine)
        derive(world.engine, full=True)
        full = by_natural_keys(world.engine)
        assert incremental == full, [
            differences(t, incremental[t], rows) for t, rows in full.items()
        ]

    world.derive()
    assert first() == (at(5), at(5))
    world.add(MrCommit, [{"repo_id": world.repo, "iid": 1, "sha": "f1"}])  # its commit unknown
    assert world.derive().first_commits == 0
    assert first() == (at(5), at(5))
    world.add(Commit, [{"repo_id": world.repo, "sha": "f1", "authored_at": at(2)}])
    assert world.derive().first_commits == 1  # by the commit's row
    assert first() == (at(2), at(2))
    equals_full()
    world.add(MrCommit, [{"repo_id": world.repo, "iid": 1, "sha": "f0"}])
    assert world.derive().first_commits == 1  # by the MR commit's row
    assert first() == (at(1), at(1))
    equals_full()


def test_incremental_derive_equals_full(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # data written this instant is "late" by the clock-skew margin: only what arrives late counts
    monkeypatch.setattr("analytics.derive.CLOCK_SKEW", timedelta(0))
    world.line("a", "b", "c", "d", "e")
    world.deploy("a", at(0))
    world.deploy("b", at(1))
    world.derive()
    world.deploy("d", at(3))
    world.deploy("c", at(2))  # arrives late, finished earlier
    world.deploy("e", at(4), env="staging")
    summary = world.derive()
    assert summary.deployments == 3  # c, d re-derived in production, e new in staging
    incremental = chain(world)
    world.derive()  # nothing new
    from analytics.derive import derive

    derive(world.engine, full=True)
    assert chain(world) == incremental


def test_a_deployment_corrected_after_it_was_chained_is_derived_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment written again after derive chained it (its status, finish, environment or
    service corrected: a release system re-sending an event, a source fixing a record) is
    re-derived where it was and where it is now: after each correction the derived tables and
    rollups equal a full derive's."""
    from analytics.derive import derive
    from tests.sandbox_helpers import by_natural_keys, differences

    monkeypatch.setattr("analytics.derive.CLOCK_SKEW", timedelta(0))
    other = World(world.engine, service="cart")
    world.line("a", "b", "c", "d", "e")
    for i, sha in enumerate("abcde"):
        world.deploy(sha, at(10 * i))
    world.deploy("e", at(45), env="staging")
    world.incident("i1", at(21), at(23))
    world.derive()

    def corrected(external: str, **values: object) -> None:
        """The row written again whole, as a source re-sending it would."""
        with world.engine.connect() as conn:
            row = (
                conn.execute(select(Deployment).where(Deployment.external_id == external))
                .mappings()
                .one()
            )
        keep = {k: v for k, v in row.items() if k not in ("id", "changed_at")}
        world.add(Deployment, [{**keep, **values}])

    steps: list[tuple[str, dict[str, object]]] = [
        ("the last one failed after all", {"d5": {"status": "failed"}}),
        ("one in the middle failed after all", {"d2": {"status": "failed"}}),
        ("a finish corrected past the next one", {"d3": {"finished_at": at(35)}}),
        ("moved to staging", {"d4": {"environment_id": world.env["staging"]}}),
        ("moved to another service", {"d1": {"service_id": other.service}}),
        ("succeeded after all", {"d5": {"status": "success"}, "d2": {"status": "success"}}),
    ]
    for name, changes in steps:
        for external, values in changes.items():
            corrected(external, **values)
        summary = world.derive()
        assert summary.chains, name
        incremental = by_natural_keys(world.engine)
        derive(world.engine, full=True)
        full = by_natural_keys(world.engine)
        differing = [
            differences(t, incremental[t], rows)
            for t, rows in full.items()
            if incremental[t] != rows
        ]
        assert not differing, name + "\n" + "\n".join(differing)


def failures(engine: Engine) -> list[tuple[object, ...]]:
    """change_failure by deployment: (service, deployment, reasons, recovery)."""
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    Deployment.service_id,
                    Deployment.external_id,
                    ChangeFailure.incident,
                    ChangeFailure.rollback,
                    ChangeFailure.hotfix,
                    ChangeFailure.recovered_at,
                )
                .join(Deployment, Deployment.id == ChangeFailure.deployment_id)
                .order_by(Deployment.external_id)
            )
        ]


def test_incremental_change_failures_equal_full(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Derive recomputes change failures only for the services new data touched; after each kind
    of change they equal a full derive's, and a service nothing touched is left alone."""
    from analytics.derive import derive
    from analytics.rules import FailureRules
    from warehouse.schema import Incident

    monkeypatch.setattr("analytics.derive.CLOCK_SKEW", timedelta(0))
    shop, cart = World(engine), World(engine, service="cart")
    cart.deployments = 100  # external ids of its own (one source)
    for w in (shop, cart):
        w.line("a", "b", "c")
        w.deploy("a", at(0))
        w.deploy("b", at(10))
    shop.incident("i1", at(11), at(13))
    shop.derive()

    def moved(incident: str, to: World, opened: float, resolved: float, **links: str) -> None:
        row = {"source_id": shop.source, "external_id": incident, "service_id": to.service}
        shop.add(Incident, [{**row, "opened_at": at(opened), "resolved_at": at(resolved), **links}])

    def merged() -> None:
        cart.merge_request(7, ["b"], created=at(1), merged=at(2), merge_sha="b")

    steps: list[tuple[str, object, int]] = [
        ("a new incident of cart", lambda: cart.incident("i2", at(12), at(14)), 1),
        ("shop's incident resolved later", lambda: shop.incident("i1", at(11), at(30)), 1),
        ("shop's incident moved to cart", lambda: moved("i1", cart, 11, 30), 2),
        ("a hotfix of shop", lambda: shop.deploy("c", at(15), ref="hotfix/x"), 1),
        ("naming cart's MR 7", lambda: moved("i3", shop, 40, 41, linked_merge_request="cart!7"), 1),
        ("cart's MR 7, merged as b", merged, 2),  # shop deployed b too: the link resolves there
    ]  # fmt: skip
    for name, change, recomputed in steps:
        change()  # type: ignore[operator]
        summary = shop.derive()
        incremental = failures(engine)
        assert summary.failure_services == recomputed, name
        derive(engine, FailureRules(), full=True)
        assert failures(engine) == incremental, name
    incident, _, hotfix, _ = next(r[2:] for r in incremental if r[:2] == (shop.service, "d2"))
    assert incident and hotfix  # i3 by its link (i1 moved away), and the hotfix
    other_rules = shop.derive(failure_window=timedelta(hours=1))
    assert other_rules.failure_services == 2


def test_incremental_change_failures_reach_back_as_far_as_a_recovery_can_move(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service touched only by deployments has its change failures recomputed from its last
    production deployment without a failure before the new data's moment less the longest
    window, in every production region, and equals a full derive: a failure in another region
    weeks earlier recovers by a new deployment there; an incident a new deployment of the other
    region takes by the window rule leaves the deployment it belonged to."""
    from analytics.derive import derive
    from analytics.rules import FailureRules
    from warehouse.dimensions import ensure_id
    from warehouse.schema import Environment

    monkeypatch.setattr("analytics.derive.CLOCK_SKEW", timedelta(0))
    shop = World(engine)
    with engine.begin() as conn:
        shop.env["eu"] = ensure_id(
            conn,
            Environment,
            {"name": "eu", "tier": "production", "position": 3, "raw_names": ["eu"]},
        )
    shop.line("a", "b", "c", "d", "e", "f")
    for sha, hours in (("a", 0), ("b", 1), ("c", 2)):
        shop.deploy(sha, at(hours))  # d1-d3
    shop.deploy("a", at(5), "eu")  # d4
    shop.deploy("d", at(24))  # d5: i1, never resolved
    shop.deploy("b", at(30), "eu")  # d6: i2 (d6 is the latest deployment by then), never resolved
    shop.deploy("e", at(300))  # d7: d5 recovers
    for name, hours in (("i1", 25), ("i2", 31), ("i3", 1100)):
        shop.incident(name, at(hours))  # i3: the latest deployment by then, if within 7 days
    shop.derive()
    assert {r[1] for r in failures(engine)} == {"d5", "d6"}

    steps: list[tuple[str, object, int, set[str]]] = [
        # i3 fails d8; production's last good deployment before 1000 h - 7 d is d7, eu's d4
        ("eu deploys weeks later", lambda: shop.deploy("c", at(1000), "eu"), 5, {"d5", "d6", "d8"}),
        # i3 moves from eu's d8 to d9, so d6 (30 h) recovers at d8 (1000 h)
        ("production deploys before i3", lambda: shop.deploy("f", at(1050)), 6, {"d5", "d6", "d9"}),
    ]  # fmt: skip
    for name, change, read, failed in steps:
        change()  # type: ignore[operator]
        summary = shop.derive()
        incremental = failures(engine)
        assert (summary.failure_services, summary.failure_deployments) == (1, read), name
        assert {r[1] for r in incremental} == failed, name
        derive(engine, FailureRules(), full=True)
        assert failures(engine) == incremental, name
    d6 = next(r for r in incremental if r[1] == "d6")
    assert d6[-1] == at(1000)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 0.5, 2.5),
        ([1, 2, 3, 4], 0.9, 3.7),
        ([5], 0.9, 5),
        ([], 0.5, None),
        ([3, 1, 2], 0.5, 2),
    ],
)
def test_percentile_interpolates_like_percentile_cont(
    values: list[float], q: float, expected: float | None
) -> None:
    assert percentile(values, q) == expected


def test_metrics_identical_on_both_backends_for_the_same_world(tmp_path, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    """The same scenario on this backend and on a fresh SQLite gives the same JSON."""
    from tests.analytics_world import World as W
    from warehouse.engine import make_engine
    from warehouse.migrate import upgrade

    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    results = []
    for e in (engine, other):
        w = W(e)
        w.line("a", "b", "c", "d")
        w.deploy("a", at(0))
        w.deploy("c", at(30))
        w.deploy("b", at(31))
        w.deploy("d", at(60))
        w.incident("i", opened=at(32), resolved=at(40))
        w.pipeline("p", "failed", at(3))
        w.derive()
        results.append(w.metrics())
    assert results[0] == results[1]


def test_derive_plans_with_fresh_statistics_on_postgresql(world: World) -> None:
    """Derive analyses what a sync wrote before it plans over it (PostgreSQL); on SQLite there is
    nothing to refresh."""
    from sqlalchemy import func, text

    from analytics.derive import DERIVE_READS
    from warehouse.statistics import analyze

    world.line("a", "b", "c")
    for hours, sha in enumerate("abc"):
        world.deploy(sha, at(hours))
    if world.engine.dialect.name != "postgresql":
        assert analyze(world.engine, DERIVE_READS) == []
        return
    analysed = analyze(world.engine, DERIVE_READS)
    assert {"deployment", "commit", "commit_parent"} <= set(analysed) <= set(DERIVE_READS)
    with world.engine.connect() as conn:
        estimated = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = 'deployment'::regclass")
        ).scalar_one()
        counted = conn.execute(select(func.count()).select_from(Deployment)).scalar_one()
    assert estimated == counted == 3  # a never-analysed table says -1


def test_a_default_branch_is_red_since_the_first_failure_after_its_last_success(
    world: World,
) -> None:
    """The latest finished default-branch pipeline of the period per service, other branches and
    unfinished statuses aside; red since the first failure after the last success; of equal
    finish times the later pipeline; the period's end cuts what counts as latest."""
    world.pipeline("p1", "success", at(1))
    world.pipeline("p2", "failed", at(2))
    world.pipeline("p3", "failed", at(3))
    world.pipeline("f1", "success", at(4), ref="feature")  # another branch
    world.pipeline("p5", "canceled", at(5))  # neither green nor red

    def latest(until: float) -> list[tuple[object, ...]]:
        with world.engine.connect() as conn:
            rows = views.default_branches(conn, Scope(at(0), at(until)))
        return [
            (r["service"], r["branch"], r["status"], r["finished_at"], r["red_since"]) for r in rows
        ]

    assert latest(6) == [("shop", "main", "failed", at(3), at(2))]
    assert latest(2.5) == [("shop", "main", "failed", at(2), at(2))]
    assert latest(1.5) == [("shop", "main", "success", at(1), None)]
    world.pipeline("p4", "success", at(3))  # finished with p3, written after it
    assert latest(6) == [("shop", "main", "success", at(3), None)]


def test_what_runs_where_is_the_last_successful_deployment_before_the_periods_end(
    world: World,
) -> None:
    """Per service and environment, the last chained (successful application) deployment
    finished before `until`: a failed one after it does not run, one after `until` not yet; of
    equal finish times the later."""
    world.line("a", "b", "c", "d")
    world.deploy("a", at(10), "staging")
    world.deploy("a", at(11))
    world.deploy("b", at(12))
    world.deploy("c", at(13), status="failed")
    world.deploy("d", at(20))
    world.derive()

    def running(until: float) -> list[tuple[object, ...]]:
        with world.engine.connect() as conn:
            rows = views.environment_state(conn, Scope(at(0), at(until)))
        return [(r["service"], r["environment"], r["sha"], r["finished_at"]) for r in rows]

    assert running(15) == [("shop", "staging", "a", at(10)), ("shop", "production", "b", at(12))]
    assert running(11.5) == [("shop", "staging", "a", at(10)), ("shop", "production", "a", at(11))]
    assert running(30)[1] == ("shop", "production", "d", at(20))
    world.deploy("c", at(20))  # finished with d, written after it
    world.derive()
    assert running(30)[1] == ("shop", "production", "c", at(20))
