"""Status normalisation and environment canonicalisation, table-tested."""

from __future__ import annotations

import pytest

from warehouse.vocabulary import (
    STATUSES,
    EnvironmentMapper,
    UnknownStatusError,
    gitlab_status,
    jenkins_status,
    tier_of,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # GitLab deployment statuses
        ("created", "pending"),
        ("running", "running"),
        ("success", "success"),
        ("failed", "failed"),
        ("canceled", "canceled"),
        ("skipped", "skipped"),
        ("blocked", "manual"),
        # GitLab pipeline and job statuses
        ("waiting_for_resource", "pending"),
        ("preparing", "pending"),
        ("pending", "pending"),
        ("scheduled", "pending"),
        ("waiting_for_callback", "pending"),
        ("manual", "manual"),
        ("canceling", "canceled"),
        ("SUCCESS", "success"),
    ],
)
def test_gitlab_status(raw: str, expected: str) -> None:
    assert gitlab_status(raw) == expected
    assert expected in STATUSES


@pytest.mark.parametrize(
    ("result", "building", "expected"),
    [
        ("SUCCESS", False, "success"),
        ("FAILURE", False, "failed"),
        ("ABORTED", False, "canceled"),
        ("UNSTABLE", False, "failed"),  # tests failed; the raw UNSTABLE is kept beside it
        ("NOT_BUILT", False, "skipped"),
        (None, True, "running"),  # a running build has no result yet
        ("FAILURE", True, "running"),  # an interim result: running until building is false
        (None, False, "pending"),  # queued
    ],
)
def test_jenkins_status(result: str | None, building: bool, expected: str) -> None:
    assert jenkins_status(result, building) == expected


def test_unknown_statuses_are_named() -> None:
    with pytest.raises(UnknownStatusError, match="'exploded'"):
        gitlab_status("exploded")
    with pytest.raises(UnknownStatusError, match="'MAYBE'"):
        jenkins_status("MAYBE")


@pytest.mark.parametrize(
    ("raw", "tier", "name", "expected_tier", "rule"),
    [
        # Ctrip-style names through the default aliases
        ("FAT", None, "test", "testing", "alias"),
        ("fat2", None, "test", "testing", "alias"),
        ("UAT", None, "staging", "staging", "alias"),
        ("PRO", None, "production", "production", "alias"),
        ("production", None, "production", "production", "alias"),
        ("live", None, "production", "production", "alias"),
        ("qa", None, "test", "testing", "alias"),
        ("pre-release", None, "staging", "staging", "alias"),
        ("staging", None, "staging", "staging", "alias"),
        # aliases win over GitLab's tier
        ("UAT", "production", "staging", "staging", "alias"),
        # GitLab's tier when no alias matches
        ("eu-west", "production", "production", "production", "tier"),
        ("sandbox", "staging", "staging", "staging", "tier"),
        # GitLab's name guess last
        ("prod-eu", None, "production-eu", "production", "region"),
        ("PRO_US", "production", "production-us", "production", "region"),
        ("production.eu-west", None, "production-eu-west", "production", "region"),
        ("prd-eu", None, "production", "production", "guess"),
        ("review/feature-1", None, "development", "development", "guess"),
        ("dev", None, "development", "development", "guess"),
        ("integration", None, "test", "testing", "guess"),
        ("demo", None, "staging", "staging", "guess"),
        # nothing known: the raw name, tier other
        ("Sandbox", None, "sandbox", "other", "raw"),
    ],
)
def test_environment_canonicalisation(
    raw: str, tier: str | None, name: str, expected_tier: str, rule: str
) -> None:
    env = EnvironmentMapper().canonical(raw, tier)
    assert (env.name, env.tier, env.rule) == (name, expected_tier, rule)


def test_production_regions_are_environments_of_their_own() -> None:
    """Several production environments (regions) each keep a chain of their own, placed where
    production is on the promotion path; an empty pattern folds them into `production` again."""
    region = EnvironmentMapper().canonical("prod-cn", "production")
    assert (region.name, region.tier, region.path_name) == (
        "production-cn",
        "production",
        "production",
    )
    assert EnvironmentMapper(regions="").canonical("prod-cn", "production").name == "production"
    mapper = EnvironmentMapper(regions=r"^(?P<region>[a-z]{2})-live$")
    assert mapper.canonical("cn-live").name == "production-cn"


def test_config_aliases_replace_the_defaults() -> None:
    mapper = EnvironmentMapper({"production": ["(?i)^prd-"], "perf": ["^perf$"]})
    assert mapper.canonical("prd-cn").name == "production"
    assert mapper.canonical("perf").name == "perf"
    assert mapper.canonical("perf").tier == "other"
    assert (
        mapper.canonical("FAT").rule == "raw"
    )  # the default alias is gone with a config of its own


@pytest.mark.parametrize(
    ("name", "tier"),
    [
        ("development", "development"),
        ("acceptance", "testing"),
        ("stg", "staging"),
        ("model", "staging"),
        ("prd", "production"),
        ("elsewhere", "other"),
    ],
)
def test_gitlab_name_guess(name: str, tier: str) -> None:
    assert tier_of(name) == tier
