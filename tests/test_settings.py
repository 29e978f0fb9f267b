"""Settings: the example config, environment overrides, and errors that name the key and file."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest

from analytics.policies import POLICIES
from config.settings import ConfigError, PoliciesSettings, check_secrets, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cdmetrics.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_is_valid(tmp_path: Path) -> None:
    example = resources.files("cdmetrics").joinpath("example.toml").read_text(encoding="utf-8")
    settings = load_settings(write(tmp_path, example))
    assert settings.environments.promotion_path == ["test", "staging", "production"]
    assert settings.metrics.failure_window == timedelta(days=7)
    assert settings.metrics.hotfix_window == timedelta(hours=24)
    assert settings.policies.long_lived_branch.max_age_days == 7  # typed: [policies.<id>]


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.warehouse.url == "sqlite:///cdmetrics.db"
    assert settings.sync.timezone == "UTC"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[warehouse]\nurl = "sqlite:///a.db"\n[sync]\nhistory_days = 10\n')
    monkeypatch.setenv("CDMETRICS_WAREHOUSE__URL", "sqlite:///b.db")
    settings = load_settings(path)
    assert settings.warehouse.url == "sqlite:///b.db"
    assert settings.sync.history_days == 10
    assert load_settings(path, warehouse_url="sqlite:///c.db").warehouse.url == "sqlite:///c.db"


def test_sources_parse(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[sources.gitlab]]
name = "gitlab"
url = "https://gitlab.example.com"
groups = ["payments"]
[[sources.jenkins]]
name = "jenkins"
url = "https://jenkins.example.com"
[[sources.registry]]
kind = "oci"
url = "https://registry.example.com"
[[sources.kubernetes]]
name = "prod"
namespaces = { "payments-prod" = "production" }
""",
    )
    settings = load_settings(path)
    assert [s.name for s in settings.all_sources()] == ["gitlab", "jenkins", "registry", "prod"]
    assert settings.sources.gitlab[0].token_env == "GITLAB_TOKEN"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[sync]\ntimezon = 'UTC'\n", "sync.timezon", "Extra inputs"),
        ("colour = 'red'\n", "colour", "Extra inputs"),
        ("[sync]\nhistory_days = 'a year'\n", "sync.history_days", "valid integer"),
        ("[warehouse]\nraw_retention_days = 0\n", "warehouse.raw_retention_days", "greater than"),
        ("[sync]\ntimezone = 'Mars/Olympus'\n", "sync.timezone", "unknown time zone"),
        ("[metrics]\nfailure_window = 'a week'\n", "metrics.failure_window", "duration"),
        ("[metrics]\nschema_jobs = '(unclosed'\n", "metrics.schema_jobs", "regular expression"),
        (
            "[[sources.gitlab]]\nname = 'g'\nurl = 'http://x'\ntokn_env = 'T'\n",
            "sources.gitlab[0].tokn_env",
            "Extra inputs",
        ),
        ("[[sources.gitlab]]\nname = 'g'\n", "sources.gitlab[0].url", "Field required"),
        (
            "[[sources.gitlab]]\nname = 'g'\nurl = 'http://x'\ntoken_env = 'glpat-123abc'\n",
            "sources.gitlab[0].token_env",
            "pattern",
        ),
        (
            "[[sources.registry]]\nkind = 'quay'\nurl = 'http://x'\n",
            "sources.registry[0].kind",
            "harbor",
        ),
    ],
)
def test_bad_config_names_key_and_file(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert f"{path}: key `{key}`" in message
    assert problem in message


def test_bad_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDMETRICS_SYNC__HISTORY_DAYS", "lots")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, ""))
    assert "environment variable CDMETRICS_SYNC__HISTORY_DAYS: key `sync.history_days`" in str(
        info.value
    )


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "[sync\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid TOML"):
        load_settings(path)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "nope.toml")


def test_unset_secret_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        "[[sources.gitlab]]\nname = 'g'\nurl = 'http://x'\ntoken_env = 'CDM_TEST_TOKEN'\n"
        "[[sources.gitlab]]\nname = 'public'\nurl = 'http://y'\ntoken_env = ''\n",
    )
    monkeypatch.delenv("CDM_TEST_TOKEN", raising=False)
    settings = load_settings(path)
    with pytest.raises(ConfigError) as info:
        check_secrets(settings)
    assert f"{path}: key `sources.gitlab[0].token_env`: environment variable CDM_TEST_TOKEN" in str(
        info.value
    )
    assert "gitlab[1]" not in str(info.value)  # "" means anonymous
    monkeypatch.setenv("CDM_TEST_TOKEN", "secret-value")
    check_secrets(settings)
    assert "secret-value" not in settings.model_dump_json()  # only the variable's name is held


@pytest.mark.parametrize(
    ("text", "key", "first"),
    [
        (
            "[[sources.gitlab]]\nname = 'gl'\nurl = 'http://x'\n"
            "[[sources.gitlab]]\nname = 'gl'\nurl = 'http://y'\n",
            "sources.gitlab[1].name",
            "sources.gitlab[0].name",
        ),
        (
            "[[sources.gitlab]]\nname = 'ci'\nurl = 'http://x'\n"
            "[[sources.jenkins]]\nname = 'ci'\nurl = 'http://y'\n",
            "sources.jenkins[0].name",
            "sources.gitlab[0].name",
        ),
        (  # the registry's default name, twice
            "[[sources.registry]]\nurl = 'http://x'\n[[sources.registry]]\nurl = 'http://y'\n",
            "sources.registry[1].name",
            "sources.registry[0].name",
        ),
    ],
)
def test_duplicate_source_names_are_an_error(
    tmp_path: Path, text: str, key: str, first: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert f"{path}: key `{key}`: source name" in str(info.value)
    assert f"`{first}`" in str(info.value)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (  # a string where a list is meant would have allowed every ref
            "[policies.non-release-ref]\nallowed_refs = 'release/*'\n",
            "policies.non-release-ref.allowed_refs",
            "valid list",
        ),
        (
            "[policies.untested-image]\nmin_soak_minute = 30\n",
            "policies.untested-image.min_soak_minute",
            "Extra inputs",
        ),
        ("[policies.untestd-image]\nseverity = 'warn'\n", "policies.untestd-image", "Extra inputs"),
        (
            "[policies.untested-image]\nmin_soak_minutes = '1h'\n",
            "policies.untested-image.min_soak_minutes",
            "valid number",
        ),
        (
            "[policies.untested-image]\nrequire = 'adjacent'\n",
            "policies.untested-image.require",
            "'all' or 'previous'",
        ),
        (
            "[policies.stale-branch]\nseverity = 'fatal'\n",
            "policies.stale-branch.severity",
            "'warn'",
        ),
        (
            "[policies.merge-without-approval]\nrequired_approvals = -1\n",
            "policies.merge-without-approval.required_approvals",
            "greater than or equal to 0",
        ),
        (  # an empty path would let an image seen nowhere into production
            "[environments]\npromotion_path = []\n",
            "environments.promotion_path",
            "at least one environment",
        ),
        (
            "[environments]\npromotion_path = ['test', 'production', 'test']\n",
            "environments.promotion_path",
            "appears twice",
        ),
    ],
)
def test_bad_policy_parameters_fail_at_start_naming_key_and_file(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert f"{path}: key `{key}`" in message
    assert problem in message


@pytest.mark.parametrize("policy_id", sorted(POLICIES))
def test_a_misspelt_key_of_any_policy_fails_at_start_naming_it(
    tmp_path: Path, policy_id: str
) -> None:
    """Every policy's table rejects a key its parameters do not have (here `severty`, and a key of
    another policy's parameters where this one has no such key), as every other section does."""
    for key in ("severty", "max_age_days" if policy_id != "long-lived-branch" else "stale_days"):
        path = write(tmp_path, f"[policies.{policy_id}]\n{key} = 3\n")
        with pytest.raises(ConfigError) as info:
            load_settings(path)
        assert f"{path}: key `policies.{policy_id}.{key}`: Extra inputs" in str(info.value)


def test_the_policy_tables_are_the_policies_and_their_parameters() -> None:
    """`[policies.<id>]` exists for every policy and no other, typed by the policy's `Params`."""
    fields = {f.alias: f.annotation for f in PoliciesSettings.model_fields.values()}
    assert fields == {policy_id: p.params for policy_id, p in POLICIES.items()}


def test_policy_parameters_are_typed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[policies.untested-image]
min_soak_minutes = 30
require = "previous"
[policies.non-release-ref]
allowed_refs = ["release/*"]
severity = "warn"
""",
    )
    policies = load_settings(path).policies
    assert policies.untested_image.min_soak_minutes == 30
    assert policies.untested_image.require == "previous"
    assert policies.of("non-release-ref").severity == "warn"
    assert policies.non_release_ref.allowed_refs == ["release/*"]
    assert load_settings(write(tmp_path, "")).policies.untested_image.require == "all"


def test_targets_are_typed_with_units_and_a_team_overrides_the_organisation(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        write(
            tmp_path,
            "[[teams]]\nname = 'payments'\n"
            "[targets]\nlead_time_median = '< 2d'\nchange_failure_rate = '<10%'\n"
            "deployments = '>= 5'\n"
            "[targets.teams.payments]\nlead_time_median = '<= 48h'\nrecovery_median = '< 90m'\n",
        )
    )
    org = settings.targets.for_teams(())
    assert {k: (t.comparison, t.value) for k, t in org.items()} == {
        "lead_time_median": ("<", 48.0),
        "change_failure_rate": ("<", 0.1),
        "deployments": (">=", 5.0),
    }
    team = settings.targets.for_teams(("payments",))
    assert team["lead_time_median"].text == "<= 48h" and team["recovery_median"].value == 1.5
    assert team["change_failure_rate"] == org["change_failure_rate"]  # inherited
    assert settings.targets.for_teams(("payments", "other")) == org  # several teams: the org's
    target = team["lead_time_median"]
    assert target.met(48.0) is True and target.met(48.1) is False and target.met(None) is None


def test_every_target_metric_is_a_report_headline_of_the_same_unit() -> None:
    from config.settings import MetricTargets
    from reports.model import HEADLINE

    units = {key: unit for key, _, _, unit, _, _ in HEADLINE}
    assert MetricTargets.units() and MetricTargets.units().items() <= units.items()


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[targets]\nlead_time_median = '2d'\n", "targets.lead_time_median", "not a target"),
        ("[targets]\nlead_time_median = '< 2 days'\n", "targets.lead_time_median", "duration"),
        ("[targets]\nchange_failure_rate = '< 0.1'\n", "targets.change_failure_rate", "percentage"),
        ("[targets]\nlead_time = '< 2d'\n", "targets.lead_time", "Extra inputs"),
        ("[targets.teams.ghost]\nrework_rate = '< 5%'\n", "targets.teams.ghost", "[[teams]]"),
    ],
)
def test_bad_targets_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "[[teams]]\nname = 'payments'\n" + text))
    assert f"key `{key}`" in str(caught.value) and problem in str(caught.value)
    assert "cdmetrics.toml" in str(caught.value)


def test_team_of_is_the_first_team_in_config_order_whose_name_or_pattern_matches(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        write(
            tmp_path,
            '[[teams]]\nname = "payments"\nservices = ["pay-*", "ledger"]\n'
            '[[teams]]\nname = "platform"\nservices = ["pay-gateway", "*-proxy"]\n',
        )
    )
    assert settings.team_of("pay-gateway") == "payments"  # the first team listing it wins
    assert settings.team_of("ledger") == "payments"
    assert settings.team_of("edge-proxy") == "platform"
    assert settings.team_of("ledger-v2") is None
