"""The reference implementation of the metrics (sandbox/reference.py): named edge cases on small
hand-built organisations, and agreement with the generator's intent on generated ones."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest

import sandbox.generate as generate_module
from sandbox import reference as ref
from sandbox import truth
from sandbox.approvals import withdrawals, withdrawn_kind
from sandbox.generate import generate
from sandbox.incidents import SKEWED
from sandbox.jenkins_org import building, iter_jobs, shown_result
from sandbox.model import (
    Commit,
    Deployment,
    Developer,
    Environment,
    Incident,
    Job,
    MergeRequest,
    Note,
    Organisation,
    Pipeline,
    Service,
)
from sandbox.retries import retried_pipelines
from sandbox.truth import summary

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday
NOW = datetime(2025, 6, 2, tzinfo=UTC)
ANA = Developer(1, "ana", "Ana", "ana@acme.test", "payments")
BEN = Developer(2, "ben", "Ben", "ben@acme.test", "payments")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


class Shop:
    """One hand-built service; times are hours after T0."""

    def __init__(self) -> None:
        self.service = Service("shop", "payments", 1, "acme/payments/shop")
        self.ids = 0
        for canonical in ("test", "staging", "production"):
            self.service.environments[canonical] = Environment(
                self.next_id(), canonical, canonical, canonical, T0
            )

    def next_id(self) -> int:
        self.ids += 1
        return self.ids

    def commit(self, sha: str, *parents: str, hours: float = 0.0, author: Developer = ANA) -> str:
        self.service.commits[sha] = Commit(
            sha, parents, author, at(hours), at(hours), sha, 1, 1, "main"
        )
        return sha

    def chain(self, *shas: str, parent: str | None = None) -> None:
        """Commits one after the other, an hour apart (hour = position)."""
        for i, sha in enumerate(shas):
            self.commit(sha, *((parent,) if parent else ()), hours=-100 + i)
            parent = sha

    def deploy(
        self,
        sha: str,
        hours: float,
        env: str = "production",
        *,
        ref: str = "main",
        digest: str | None = None,
        status: str = "success",
    ) -> Deployment:
        pipeline = Pipeline(self.next_id(), 1, ref, sha, "web", ANA, at(hours - 0.1))
        job = Job(
            self.next_id(), "deploy", "deploy", status, at(hours - 0.1), at(hours - 0.1), at(hours)
        )
        d = Deployment(
            self.next_id(),
            len(self.service.deployments) + 1,
            self.service.environments[env],
            sha,
            ref,
            status,
            at(hours - 0.1),
            job,
            pipeline,
            ANA,
            digest or f"sha256:{sha}",
        )
        self.service.deployments.append(d)
        return d

    def incident(self, opened: float, closed: float | None = None) -> Incident:
        incident = Incident(
            self.next_id(),
            len(self.service.incidents) + 1,
            "errors",
            BEN,
            at(opened),
            at(closed) if closed is not None else None,
            "high",
            None,
        )
        self.service.incidents.append(incident)
        return incident

    def org(self) -> Organisation:
        return Organisation(1, "hand", NOW, T0, "acme", [], [self.service], [ANA, BEN])


def changes(shop: Shop) -> dict[int, ref.DeploymentTruth]:
    return ref.deployment_changes(shop.org())


# -- 1. deployment changes --------------------------------------------------------------------


def test_first_deployment_to_an_environment_is_the_baseline() -> None:
    shop = Shop()
    shop.chain("a", "b", "c")
    first = shop.deploy("b", 1)
    second = shop.deploy("c", 2)
    staging = shop.deploy("c", 3, "staging")
    truth = changes(shop)
    assert truth[first.id].baseline and truth[first.id].changes == ()
    assert not truth[second.id].baseline and truth[second.id].changes == ("c",)
    assert truth[second.id].previous_id == first.id
    assert truth[staging.id].baseline  # per environment


def test_changes_are_the_commits_reachable_from_d_and_not_from_p() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.commit("f1", "a")
    shop.commit("f2", "f1")
    shop.commit("m", "b", "f2")  # merge of a feature branch
    shop.deploy("a", 1)
    d = shop.deploy("m", 2)
    assert changes(shop)[d.id].changes == ("b", "f1", "f2", "m")


def test_deployments_are_ordered_by_finish_not_by_creation() -> None:
    shop = Shop()
    shop.chain("a", "b", "c")
    late = shop.deploy("c", 5)
    early = shop.deploy("b", 1)
    truth = changes(shop)
    assert truth[early.id].baseline
    assert truth[late.id].previous_id == early.id and truth[late.id].changes == ("c",)


def test_failed_deployments_are_not_deployments_of_the_commit() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 1)
    failed = shop.deploy("b", 2, status="failed")
    retry = shop.deploy("b", 3)
    truth = changes(shop)
    assert failed.id not in truth
    assert truth[retry.id].changes == ("b",)


def test_rollback_by_ancestry() -> None:
    shop = Shop()
    shop.chain("a", "b", "c")
    shop.deploy("a", 1)
    shop.deploy("c", 2)
    back = shop.deploy("b", 3)
    truth = changes(shop)[back.id]
    assert truth.rollback and truth.changes == ()


def test_rollback_by_digest_of_a_commit_that_is_no_ancestor() -> None:
    shop = Shop()
    shop.chain("a", "b", "c")
    shop.commit("h", "a")  # a hotfix branched from a; main went on to b, c
    shop.deploy("a", 1)
    shop.deploy("h", 2, ref="hotfix/1")
    shop.deploy("c", 3)
    back = shop.deploy("h", 4, ref="hotfix/1")
    truth = changes(shop)[back.id]
    assert truth.rollback and truth.changes == ()


def test_a_new_digest_of_a_commit_that_is_no_ancestor_is_not_a_rollback() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.commit("h", "a")
    shop.deploy("a", 1)
    shop.deploy("b", 2)
    d = shop.deploy("h", 3, ref="hotfix/1")
    truth = changes(shop)[d.id]
    assert not truth.rollback and truth.changes == ("h",)


def test_redeploying_the_same_commit_is_neither_change_nor_rollback() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 1, digest="sha256:old")
    shop.deploy("b", 2)
    shop.deploy("b", 3, digest="sha256:rebuilt")
    again = shop.deploy("b", 4)  # its digest ran before P: still the same commit as P
    truth = changes(shop)
    assert truth[again.id].changes == () and not truth[again.id].rollback
    assert not truth[again.id].baseline


# -- 2. lead time -----------------------------------------------------------------------------


def test_lead_time_is_from_authored_to_the_first_production_deployment() -> None:
    shop = Shop()
    shop.commit("a")
    shop.commit("b", "a", hours=2)
    shop.deploy("a", 1)
    shop.deploy("b", 3, "staging")
    d = shop.deploy("b", 8)
    [row] = ref.lead_times(shop.org())
    assert (row.sha, row.deployment_id, row.start, row.finished) == ("b", d.id, at(2), at(8))
    assert row.hours == 6 and not row.is_merge


def test_lead_time_of_a_squash_commit_starts_at_the_mrs_first_commit() -> None:
    shop = Shop()
    shop.commit("a")
    shop.commit("f1", "a", hours=1)
    shop.commit("f2", "f1", hours=3)
    shop.commit("s", "a", hours=10)  # the squash commit: dated at the merge
    mr = MergeRequest(1, 7, "Feature", ANA, "feature/x", "main", at(4), at(1), ["f1", "f2"])
    mr.state, mr.merged_at, mr.squash, mr.squash_commit_sha = "merged", at(10), True, "s"
    shop.service.merge_requests.append(mr)
    shop.deploy("a", 0.5)
    shop.deploy("s", 12)
    [row] = ref.lead_times(shop.org())
    assert row.sha == "s" and row.squash_of == 7
    assert row.start == at(1) and row.hours == 11


def test_merge_commits_are_changes_but_flagged_out_of_the_statistics() -> None:
    shop = Shop()
    shop.commit("a")
    shop.commit("f", "a", hours=1)
    shop.commit("m", "a", "f", hours=5)
    shop.deploy("a", 0.5)
    d = shop.deploy("m", 6)
    assert changes(shop)[d.id].changes == ("f", "m")
    rows = {row.sha: row for row in ref.lead_times(shop.org())}
    assert rows["m"].is_merge and not rows["f"].is_merge
    assert ref.figures(shop.org()).lead_time_changes == 1


def test_a_commit_redeployed_after_a_rollback_is_counted_once() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 1)
    first = shop.deploy("b", 2)
    shop.deploy("a", 3)  # rollback
    again = shop.deploy("b", 4, digest="sha256:b-rebuilt")
    assert changes(shop)[again.id].changes == ("b",)  # a change of the deployment...
    [row] = ref.lead_times(shop.org())  # ...but its lead time counts once, at the first
    assert (row.sha, row.deployment_id) == ("b", first.id)


def test_a_newer_commit_after_a_rollback_carries_the_rolled_back_ones_again() -> None:
    shop = Shop()
    shop.chain("a", "b", "c")
    shop.deploy("a", 1)
    first = shop.deploy("b", 2)
    shop.deploy("a", 3)
    later = shop.deploy("c", 4)
    assert changes(shop)[later.id].changes == ("b", "c")
    rows = {row.sha: row.deployment_id for row in ref.lead_times(shop.org())}
    assert rows == {"b": first.id, "c": later.id}


def test_redeploying_an_image_that_ran_before_p_is_a_rollback_even_forward() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 1)
    shop.deploy("b", 2)
    shop.deploy("a", 3)
    forward = shop.deploy("b", 4)  # the same image as at hour 2: "its digest ran before P"
    truth = changes(shop)[forward.id]
    assert truth.rollback and truth.changes == ()


def test_commits_carried_by_the_baseline_have_no_lead_time() -> None:
    shop = Shop()
    shop.chain("a", "b", "c")
    shop.deploy("b", 1)  # baseline carries a and b
    shop.deploy("a", 2)  # rollback
    d = shop.deploy("c", 3)
    assert changes(shop)[d.id].changes == ("b", "c")
    assert [row.sha for row in ref.lead_times(shop.org())] == ["c"]


def test_staging_deployments_have_no_lead_time() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 1, "staging")
    shop.deploy("b", 2, "staging")
    assert ref.lead_times(shop.org()) == []


def test_a_deep_history_does_not_recurse() -> None:
    shop = Shop()
    shop.chain(*(f"c{i}" for i in range(5000)))
    shop.deploy("c0", 1)
    d = shop.deploy("c4999", 2)
    assert len(changes(shop)[d.id].changes) == 4999


# -- 3. merge-request breakdown ---------------------------------------------------------------


def merged_mr(shop: Shop, merged: float, notes: list[Note], created: float = 4.0) -> MergeRequest:
    shop.commit("a")
    shop.commit("f1", "a", hours=1)
    shop.commit("f2", "f1", hours=2)
    shop.commit("m", "a", "f2", hours=merged)
    mr = MergeRequest(1, 3, "Feature", ANA, "feature/x", "main", at(created), at(1), ["f1", "f2"])
    mr.state, mr.merged_at, mr.merge_commit_sha, mr.notes = "merged", at(merged), "m", notes
    shop.service.merge_requests.append(mr)
    return mr


def test_merge_request_stages() -> None:
    shop = Shop()
    notes = [
        Note(1, BEN, at(3), "copied from the issue, before the MR existed"),
        Note(2, ANA, at(5), "the author's own note"),
        Note(3, BEN, at(6), "a question"),
        Note(4, BEN, at(9), "approved this merge request", system=True),
    ]
    merged_mr(shop, 10, notes)
    shop.deploy("a", 0.5)
    d = shop.deploy("m", 14)
    [mr] = ref.merge_requests(shop.org())
    assert mr.first_review_at == at(6)
    assert (mr.coding, mr.pickup, mr.review, mr.deploy, mr.cycle) == (3, 2, 4, 4, 13)
    assert mr.deployment_id == d.id and not mr.baseline and mr.age_hours is None


def test_an_approval_is_a_first_review() -> None:
    shop = Shop()
    merged_mr(shop, 10, [Note(4, BEN, at(9), "approved this merge request", system=True)])
    [mr] = ref.merge_requests(shop.org())
    assert mr.first_review_at == at(9) and mr.pickup == 5 and mr.review == 1


def test_negative_spans_are_dropped_and_named() -> None:
    shop = Shop()
    merged_mr(shop, 10, [], created=1.5)
    shop.service.commits["f1"].authored_at = at(2)  # every commit authored after the opening
    shop.deploy("m", 9)  # deployed before merged (clock skew between systems)
    [mr] = ref.merge_requests(shop.org())
    assert mr.coding is None and mr.deploy is None
    assert set(mr.negative) == {"coding", "deploy"}
    assert mr.cycle == 7 and mr.pickup is None and mr.review is None


def test_merged_requests_not_yet_in_production_have_an_age() -> None:
    shop = Shop()
    merged_mr(shop, 10, [])
    shop.deploy("a", 0.5)
    shop.deploy("m", 12, "staging")
    [mr] = ref.merge_requests(shop.org())
    assert mr.deployment_id is None and mr.deploy is None and mr.cycle is None
    assert mr.age_hours == pytest.approx((NOW - at(10)).total_seconds() / 3600)


def test_open_and_closed_requests_have_no_breakdown() -> None:
    shop = Shop()
    merged_mr(shop, 10, []).state = "closed"
    assert ref.merge_requests(shop.org()) == []


# -- 4. change failures -----------------------------------------------------------------------


def three_deployments(shop: Shop) -> tuple[Deployment, Deployment, Deployment]:
    shop.chain("a", "b", "c")
    return shop.deploy("a", 0), shop.deploy("b", 10), shop.deploy("c", 100)


def failures(shop: Shop) -> dict[int, ref.ChangeFailure]:
    return ref.change_failures(shop.org())


def test_incident_in_the_window_before_the_next_deployment() -> None:
    shop = Shop()
    _, d, n = three_deployments(shop)
    incident = shop.incident(12, 14)
    result = failures(shop)
    assert result[d.id].reasons == ("incident",) and result[d.id].incidents == (incident.id,)
    assert not result[n.id].failed


def test_incident_opened_at_the_finish_belongs_to_the_deployment() -> None:
    shop = Shop()
    _, d, _ = three_deployments(shop)
    shop.incident(10)
    assert failures(shop)[d.id].reasons == ("incident",)


def test_incident_after_the_next_deployment_belongs_to_the_next() -> None:
    shop = Shop()
    _, d, n = three_deployments(shop)
    shop.incident(101)
    result = failures(shop)
    assert not result[d.id].failed and result[n.id].reasons == ("incident",)


def test_incident_after_the_window_belongs_to_nobody() -> None:
    shop = Shop()
    _, _, last = three_deployments(shop)
    late = shop.incident(100 + 7 * 24)  # exactly at the end of the window: outside
    assert not failures(shop)[last.id].failed
    [row] = ref.incidents(shop.org())
    assert row.id == late.id and row.attributed_to is None


def test_a_wider_failure_window_takes_it_in() -> None:
    shop = Shop()
    _, _, last = three_deployments(shop)
    shop.incident(100 + 7 * 24)
    result = ref.change_failures(shop.org(), failure_window=timedelta(days=8))
    assert result[last.id].reasons == ("incident",)


def test_explicit_incident_links_are_reported_not_used() -> None:
    shop = Shop()
    first, d, _ = three_deployments(shop)
    incident = shop.incident(12)
    incident.deployment_id = first.id  # the generator's intent, which GitLab cannot carry
    assert failures(shop)[d.id].reasons == ("incident",)
    [disagreement] = [x for x in ref.intent_disagreements(shop.org()) if x.what == "incident"]
    assert disagreement.what == "incident"
    assert (disagreement.intended, disagreement.found) == (str(first.id), str(d.id))


def test_next_deployment_a_rollback_within_the_window() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 0)
    d = shop.deploy("b", 10)
    shop.deploy("a", 11)
    assert failures(shop)[d.id].reasons == ("rollback",)


def test_a_rollback_after_the_window_does_not_fail_the_deployment() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 0)
    d = shop.deploy("b", 10)
    shop.deploy("a", 10 + 7 * 24 + 1)
    assert not failures(shop)[d.id].failed


def test_hotfix_within_24_hours() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.commit("h", "b")
    shop.deploy("a", 0)
    d = shop.deploy("b", 10)
    shop.deploy("h", 33.9, ref="hotfix/42-timeout")
    assert failures(shop)[d.id].reasons == ("hotfix",)


def test_hotfix_after_24_hours_does_not_fail_the_deployment() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.commit("h", "b")
    shop.deploy("a", 0)
    d = shop.deploy("b", 10)
    shop.deploy("h", 34, ref="hotfix/42-timeout")
    assert not failures(shop)[d.id].failed


def test_hotfix_refs_and_window_are_parameters() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.commit("h", "b")
    shop.deploy("a", 0)
    d = shop.deploy("b", 10)
    shop.deploy("h", 40, ref="fix/42")
    result = ref.change_failures(
        shop.org(), hotfix_window=timedelta(hours=48), hotfix_refs=("fix/*",)
    )
    assert result[d.id].reasons == ("hotfix",)


def test_every_reason_that_applies() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 0, ref="hotfix/1")
    d = shop.deploy("b", 10)
    shop.incident(10.5, 12)
    shop.deploy("a", 11, ref="hotfix/1")  # a rollback to a deployment made from a hotfix ref
    assert failures(shop)[d.id].reasons == ("hotfix", "incident", "rollback")


# -- 5. recovery ------------------------------------------------------------------------------


def test_recovery_by_incident_resolution() -> None:
    shop = Shop()
    _, d, n = three_deployments(shop)
    shop.incident(11, 15)
    recovery = ref.recoveries(shop.org())[d.id]
    assert (recovery.recovered_at, recovery.by, recovery.hours) == (at(15), "incident", 5)
    assert recovery.recovering_deployment_id == n.id


def test_recovery_by_the_next_good_deployment() -> None:
    shop = Shop()
    _, d, n = three_deployments(shop)
    shop.incident(11, 200)
    recovery = ref.recoveries(shop.org())[d.id]
    assert (recovery.recovered_at, recovery.by, recovery.recovering_deployment_id) == (
        at(100),
        "deployment",
        n.id,
    )


def test_recovery_skips_later_failed_changes() -> None:
    shop = Shop()
    shop.chain("a", "b", "c", "d")
    shop.deploy("a", 0)
    d = shop.deploy("b", 10)
    shop.incident(11)  # never resolved
    also_failed = shop.deploy("c", 20)
    shop.incident(21)
    good = shop.deploy("d", 30)
    recovered = ref.recoveries(shop.org())
    assert recovered[d.id].recovered_at == at(30)
    assert recovered[d.id].recovering_deployment_id == good.id
    assert recovered[also_failed.id].recovered_at == at(30)


def test_recovery_waits_for_every_attributed_incident() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 0)
    d = shop.deploy("b", 10)
    shop.incident(11, 20)
    shop.incident(12, 13)
    assert ref.recoveries(shop.org())[d.id].recovered_at == at(20)


def test_unrecovered() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 0)
    d = shop.deploy("b", 10)
    incident = shop.incident(11)
    recovery = ref.recoveries(shop.org())[d.id]
    assert recovery.recovered_at is None and recovery.by is None and recovery.hours is None
    assert ref.figures(shop.org()).unrecovered == 1
    [row] = ref.incidents(shop.org())
    assert row.id == incident.id and row.hours_to_restore is None


def test_incident_time_to_restore() -> None:
    shop = Shop()
    three_deployments(shop)
    shop.incident(11, 14.5)
    [row] = ref.incidents(shop.org())
    assert row.hours_to_restore == 3.5


def test_an_incident_resolved_before_opened_is_flagged_and_recovers_nothing() -> None:
    """Clock skew or a back-filled ticket: no time to restore, and its resolution (here before the
    failed deployment itself) is ignored for recovery; the other incidents' still count."""
    shop = Shop()
    _, d, n = three_deployments(shop)
    skewed = shop.incident(11, 9)
    [row] = ref.incidents(shop.org())
    assert (row.id, row.hours_to_restore, row.resolved_before_opened) == (skewed.id, None, True)
    assert failures(shop)[d.id].reasons == ("incident",)
    recovery = ref.recoveries(shop.org())[d.id]
    assert (recovery.recovered_at, recovery.by, recovery.recovering_deployment_id) == (
        at(100),
        "deployment",
        n.id,
    )
    shop.incident(12, 15)
    assert ref.recoveries(shop.org())[d.id].recovered_at == at(15)


# -- 6. rework, 7. deployment failure rate, 8. frequency --------------------------------------


def test_rework() -> None:
    shop = Shop()
    shop.chain("a", "b", "c")
    shop.commit("h", "b")
    plain = shop.deploy("a", 0)
    failed = shop.deploy("b", 10)
    hotfix = shop.deploy("h", 12, ref="hotfix/9")  # fails b; fails itself, rolled back
    rollback = shop.deploy("a", 20)  # recovers b and h
    after = shop.deploy("c", 30)
    result = ref.rework(shop.org())
    assert result[plain.id] == () and result[failed.id] == () and result[after.id] == ()
    assert result[hotfix.id] == ("hotfix", "recovering")
    assert result[rollback.id] == ("rollback", "recovering")
    assert ref.recoveries(shop.org())[failed.id].recovering_deployment_id == rollback.id


def test_the_deployment_that_recovers_is_rework() -> None:
    shop = Shop()
    _, d, n = three_deployments(shop)
    shop.incident(11, 200)
    later = shop.deploy("c", 150)  # a redeploy, after the recovery
    result = ref.rework(shop.org())
    assert result[n.id] == ("recovering",) and result[d.id] == () and result[later.id] == ()


def test_deployments_while_a_failed_change_is_unrecovered_are_rework() -> None:
    shop = Shop()
    shop.chain("a", "b", "c")
    shop.deploy("a", 0)
    shop.deploy("b", 10)
    shop.incident(11)
    later = shop.deploy("c", 20)
    shop.incident(21)
    assert ref.rework(shop.org())[later.id] == ("recovering",)


def test_deployment_failure_rate_per_environment_without_canceled_attempts() -> None:
    shop = Shop()
    shop.chain("a", "b")
    shop.deploy("a", 0, "test")
    shop.deploy("b", 1, "test", status="failed")
    shop.deploy("b", 2, "test")
    shop.deploy("b", 3)
    shop.deploy("b", 4, "staging", status="canceled")
    assert ref.deployment_failure_rates(shop.org()) == {"production": (0, 1), "test": (1, 3)}


def test_production_deployments_in_finish_order() -> None:
    shop = Shop()
    shop.chain("a", "b")
    late = shop.deploy("b", 5)
    early = shop.deploy("a", 1)
    shop.deploy("a", 0, "staging")
    assert [t.id for t in ref.production_deployments(shop.org())] == [early.id, late.id]


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert ref.percentile([4, 1, 3, 2], 0.5) == 2.5
    assert ref.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == pytest.approx(9.1)
    assert ref.percentile([], 0.5) is None


# -- the generated organisations --------------------------------------------------------------


@cache
def generated(size: str) -> Organisation:
    return generate(1, size, now=NOW)


def intended_failures(org: Organisation) -> dict[int, tuple[str, ...]]:
    return {
        d.id: d.failed_change
        for s in org.services
        for d in s.deployments
        if d.environment.tier == "production" and d.status == "success" and d.failed_change
    }


def found_failures(org: Organisation) -> dict[int, tuple[str, ...]]:
    return {k: f.reasons for k, f in ref.change_failures(org).items() if f.failed}


def test_small_matches_the_generators_intent_exactly() -> None:
    org = generated("small")
    assert found_failures(org) == intended_failures(org)
    assert ref.intent_disagreements(org) == []
    assert ref.figures(org).failed_changes > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("size", ["small", "demo"])
def test_generated_failed_changes_match_the_generators_intent_exactly(size: str, seed: int) -> None:
    org = generate(seed, size, NOW)
    assert found_failures(org) == intended_failures(org)
    assert ref.intent_disagreements(org) == []


def app_history(org: Organisation) -> list[object]:
    """Everything but the schema migrations: commits, pipelines and their other jobs, app
    deployments, images, incidents and Jenkins builds, ids and times included."""
    out: list[object] = []
    for s in org.services:
        out.append(list(s.commits.values()))
        out.append([m for m in s.merge_requests])
        out.append(
            [(p.id, p.iid, p.sha, [j for j in p.jobs if j.stage != "migrate"]) for p in s.pipelines]
        )
        out.append(
            [
                (
                    d.id,
                    d.iid,
                    d.environment,
                    d.sha,
                    d.ref,
                    d.status,
                    d.created_at,
                    d.job,
                    d.digest,
                    d.pipeline.id,
                    d.user.id,
                    d.rollback,
                    d.hotfix,
                    d.untested,
                    d.failed_change,
                )
                for d in s.deployments
                if d.kind == "app"
            ]
        )
        out.append((s.images, s.tag_history, s.incidents))
    builds = [
        (
            job.full_name,
            b.number,
            b.queued_at,
            b.stages,
            b.result,
            b.sha,
            b.ref,
            b.parameters,
            b.checkouts,
            b.changes,
            b.upstream,
            b.deployment.id if b.deployment else None,
        )
        for job in iter_jobs(org.jenkins)
        if "db-migrations" not in job.path
        for b in job.builds
    ]
    return [*out, builds]


@pytest.mark.parametrize("size", ["small", "demo"])
def test_migrations_leave_the_app_history_as_it_was(size: str) -> None:
    org = generated(size)
    without = generate(1, size, NOW, migrations=False)
    assert app_history(org) == app_history(without)
    schema = [d for s in org.services for d in s.deployments if d.kind == "schema"]
    migrating = {d.pipeline.id for d in schema}
    assert schema and all(d.schema_version and d.digest is None for d in schema)
    assert all(  # each runs in its app deployment's pipeline, done before the deploy job starts
        any(
            a.job.started_at is not None
            and d.job.finished_at is not None
            and d.job.finished_at < a.job.started_at
            for a in s.deployments
            if a.kind == "app" and a.pipeline is d.pipeline
        )
        for s in org.services
        for d in s.deployments
        if d.kind == "schema"
    )
    assert len(migrating) == len(schema)  # one migration at most per pipeline
    assert min(d.id for d in schema) > max(  # ids allocated after every other deployment's
        d.id for s in org.services for d in s.deployments if d.kind == "app"
    )


def test_schema_skips_are_seeded_and_the_reference_agrees_with_the_generator() -> None:
    for size in ("small", "demo"):
        org = generated(size)
        skipped = ref.schema_skipped_env(org)
        assert skipped == {d.id for s in org.services for d in s.deployments if d.skipped_env}
        assert skipped
        kinds = {s.name: {d.kind for d in s.deployments} for s in org.services}
        assert any(k == {"app"} for k in kinds.values())  # most services have no migrations
    tiny = generate(1, "tiny", NOW)
    assert {d.kind for s in tiny.services for d in s.deployments} == {"app"}


@pytest.mark.parametrize("size", ["small", "demo"])
def test_post_passes_add_interim_results_and_backwards_incidents_and_change_nothing_else(
    size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jenkins builds showing their result while still building, and incidents resolved before
    they were opened (clock skew: minutes; back-filled: hours), in both kinds, with their truth;
    without the post-passes the organisation is the same but for those fields."""
    org = generated(size)
    interim = [(job, b) for job in iter_jobs(org.jenkins) for b in job.builds if b.result_at]
    assert {job.deploy for job, _ in interim} == {True, False}
    for _, b in interim:
        assert b.result in ("FAILURE", "UNSTABLE") and b.result_at
        assert b.started_at <= b.result_at < b.finished_at
        assert shown_result(b, b.result_at - timedelta(milliseconds=1)) is None
        assert shown_result(b, b.result_at) == b.result and building(b, b.result_at)
    flagged = [i for i in ref.incidents(org) if i.resolved_before_opened]
    assert all(i.hours_to_restore is None and i.resolved_at for i in flagged)
    gaps = [i.opened_at - i.resolved_at for i in flagged if i.resolved_at]
    assert min(gaps) < timedelta(minutes=30) and max(gaps) > timedelta(hours=1)
    monkeypatch.setattr(generate_module, "add_interim_results", lambda org: None)
    monkeypatch.setattr(generate_module, "skew_incidents", lambda org: [])
    plain = generate(1, size, NOW)
    resolved = {i.id: i.closed_at for s in org.services for i in s.incidents}
    moved = {i.id for s in plain.services for i in s.incidents if i.closed_at != resolved[i.id]}
    assert len(moved) == SKEWED[size] and moved <= {i.id for i in flagged}
    for s in plain.services:
        for i in s.incidents:
            i.closed_at = resolved[i.id]
    assert app_history(plain) == app_history(org)
    assert not any(b.result_at for job in iter_jobs(plain.jenkins) for b in job.builds)


def without_shapes(org: Organisation, notes: int, jobs: int) -> Organisation:
    """A copy of `org` without the notes and jobs after ids `notes` and `jobs` (what the
    withdrawn approvals and the retries added) and without the retried marks."""
    bare = copy.deepcopy(org)
    for s in bare.services:
        for mr in s.merge_requests:
            mr.notes = [n for n in mr.notes if n.id <= notes]
        for p in s.pipelines:
            p.jobs = [j for j in p.jobs if j.id <= jobs or j.stage == "migrate"]
            for j in p.jobs:
                j.retried_at = None
    return bare


@pytest.mark.parametrize("size", ["small", "demo"])
def test_withdrawn_approvals_and_retried_jobs_add_their_shape_and_move_no_figure(
    size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Approvals withdrawn before the merge (`sandbox.approvals`: re-approved by the same person,
    by another, or never) and a test job retried days after its pipeline finished in each
    GitLab-built service (`sandbox.retries`), with their truth; without the two post-passes the
    organisation is the same but for the notes and jobs they add (and the migrations' job ids,
    taken after the retries'): no review time, approval, status or figure moves."""
    org = generated(size)
    kinds = {withdrawn_kind(mr) for s in org.services for mr in s.merge_requests}
    assert kinds == {None, "same", "another", "none"}
    for s in org.services:
        for mr in s.merge_requests:
            for who, approved, withdrawn in withdrawals(mr):
                assert mr.merged_at is not None and mr.first_review_at is not None
                assert (withdrawn_kind(mr) == "same") == (who in mr.approvers)
                assert (
                    mr.first_review_at < approved < withdrawn < mr.merged_at - timedelta(seconds=30)
                )
    retried = retried_pipelines(org)
    gitlab_built = {s.name for s in org.services if s.builder == "gitlab"}
    assert {s.name for s, _, _ in retried} == gitlab_built  # one each
    for _, p, old in retried:
        [new] = [j for j in p.jobs if j.created_at == old.retried_at]
        assert old.finished_at and old.retried_at and new.finished_at
        assert old.retried_at - old.finished_at >= timedelta(days=3)
        assert (new.name, new.stage, p.status, p.finished_at) == (
            old.name,
            old.stage,
            "success",
            new.finished_at,
        )
        assert old not in p.latest_jobs and new in p.latest_jobs
        assert p.duration == sum(j.duration or 0 for j in p.jobs if j is not old)
    monkeypatch.setattr(generate_module, "add_withdrawn_approvals", lambda org, ids: None)
    monkeypatch.setattr(generate_module, "add_retried_jobs", lambda org, ids: None)
    plain = generate(1, size, NOW)
    notes = max(n.id for s in plain.services for mr in s.merge_requests for n in mr.notes)
    jobs = max(
        j.id for s in plain.services for p in s.pipelines for j in p.jobs if j.stage != "migrate"
    )
    assert app_history(without_shapes(org, notes, jobs)) == app_history(plain)
    assert ref.figures(org) == ref.figures(plain)
    assert ref.merge_requests(org) == ref.merge_requests(plain)
    counts, plain_counts = truth.counts(org), truth.counts(plain)
    assert counts == {**plain_counts, "job": plain_counts["job"] + len(retried)}


def test_untested_images_are_seeded_and_the_truth_names_what_they_skipped() -> None:
    """The generator's untested promotions (test straight to production) skip staging; hotfixes,
    built from their branch for staging, skip test in staging and in production (require = all)."""
    org = generated("small")
    rows = {int(r["external_id"]): r for r in summary(org)["deployments"]}
    untested = ref.untested_images(org)
    assert {i for i, r in rows.items() if r["untested_skipped"]} == set(untested)
    seeded = [
        d for s in org.services for d in s.deployments if d.untested and d.status == "success"
    ]
    assert seeded and all("staging" in untested[d.id] for d in seeded)
    hotfixes = [
        d
        for s in org.services
        for d in s.deployments
        if d.ref.startswith("hotfix/") and d.status == "success" and d.kind == "app"
    ]
    assert hotfixes and all(untested[d.id][0] == "test" for d in hotfixes)
    previous = ref.untested_images(org, require="previous")
    assert set(previous) < set(untested)
    assert all(skipped == untested[i][-1:] for i, skipped in previous.items())


def test_generated_figures_are_sane() -> None:
    org = generated("demo")
    figures = ref.figures(org)
    assert figures.production_deployments > 500
    assert 0.05 < figures.failed_changes / figures.production_deployments < 0.3
    assert figures.recovered + figures.unrecovered == figures.failed_changes
    # only a failed change whose incidents were all resolved before they were opened, with no
    # good deployment after it, stays unrecovered
    backwards = {i.attributed_to for i in ref.incidents(org) if i.resolved_before_opened}
    unrecovered = {k for k, r in ref.recoveries(org).items() if r.recovered_at is None}
    assert unrecovered <= backwards
