"""Typed settings: `cdmetrics.toml` plus `CDMETRICS_*` environment variables (which win).

A leaf module every layer may read. Secrets are never values here, only the *names* of environment
variables holding them (`token_env = "GITLAB_TOKEN"`); `check_secrets` verifies they are set before a
command that needs them starts. Every error names the key and where it came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG = Path("cdmetrics.toml")
ENV_PREFIX = "CDMETRICS_"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ConfigError(Exception):
    """The configuration is unusable; the message names the key and the file or variable."""


def parse_duration(value: Any) -> Any:
    """`"7d"`, `"24h"`, `"30m"`, `"90s"`, `"2w"` -> timedelta; other values go to pydantic."""
    if isinstance(value, str) and not value.startswith("P"):  # ISO 8601 goes to pydantic
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration; write e.g. 7d, 24h, 30m, 90s or 2w")
        return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return pattern


Regex = Annotated[str, BeforeValidator(_check_regex)]
# The name of an environment variable; "" means no secret (anonymous access).
EnvName = Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")]


class Section(BaseModel):
    """A config table: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class WarehouseSettings(Section):
    url: str = Field("sqlite:///cdmetrics.db", description="SQLAlchemy URL of the warehouse")


class SyncSettings(Section):
    history_days: int = Field(365, gt=0, description="how far back a first sync reaches")
    timezone: str = Field("UTC", description="IANA zone for days and weeks in metrics and reports")
    overlap: Duration = Field(timedelta(minutes=10), description="re-read window before a cursor")
    parallelism: int = Field(4, ge=1, le=64, description="projects synced at once per source")
    requests_per_second: float = Field(20.0, gt=0, description="shared rate limit per source")
    timeout_s: float = Field(30.0, gt=0, description="timeout of every HTTP request")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name like Europe/Berlin"
            ) from None
        return value


class SourceSettings(Section):
    name: str
    url: str | None = None


class GitLabSource(SourceSettings):
    url: str
    token_env: EnvName | None = Field("GITLAB_TOKEN", description="variable holding the token")
    groups: list[str] = Field(default_factory=list)
    projects: list[str] = Field(default_factory=list)
    per_page: int = Field(100, ge=1, le=100)
    ssl_verify: bool = True


class JenkinsSource(SourceSettings):
    url: str
    user_env: EnvName | None = "JENKINS_USER"
    token_env: EnvName | None = "JENKINS_TOKEN"
    deploy_jobs: Regex = "deploy-(?P<service>[^/]+)"
    env_parameter: str = "ENV"
    image_parameter: str = "IMAGE"


class GitSource(SourceSettings):
    path: str | None = None
    service: str | None = None


class RegistrySource(SourceSettings):
    name: str = "registry"
    kind: Literal["harbor", "oci"] = "harbor"
    url: str
    projects: list[str] = Field(default_factory=list)
    user_env: EnvName | None = None
    token_env: EnvName | None = None


class KubernetesSource(SourceSettings):
    context: str | None = None
    kubeconfig: str | None = None
    namespaces: dict[str, str] = Field(default_factory=dict)  # namespace -> environment


class Sources(Section):
    gitlab: list[GitLabSource] = Field(default_factory=list)
    jenkins: list[JenkinsSource] = Field(default_factory=list)
    git: list[GitSource] = Field(default_factory=list)
    registry: list[RegistrySource] = Field(default_factory=list)
    kubernetes: list[KubernetesSource] = Field(default_factory=list)


class EnvironmentSettings(Section):
    promotion_path: list[str] = Field(default_factory=lambda: ["test", "staging", "production"])
    aliases: dict[str, list[Regex]] = Field(
        default_factory=lambda: {
            "test": ["(?i)^(fat|test|qa)"],
            "staging": ["(?i)^(uat|pre|stag)"],
            "production": ["(?i)^(pro|prod|production|live)$"],
        }
    )


class TeamSettings(Section):
    name: str
    services: list[str] = Field(default_factory=list)  # names or glob patterns


class MetricsSettings(Section):
    failure_window: Duration = timedelta(days=7)
    hotfix_window: Duration = timedelta(hours=24)
    hotfix_refs: list[str] = Field(default_factory=lambda: ["hotfix/*"])
    schema_jobs: Regex = "(?i)(migrat|flyway|liquibase|alembic|schema)"
    tag_revision_pattern: Regex = r"^(?:v|sha-)?(?P<sha>[0-9a-f]{7,40})$"


class ServiceSettings(Section):
    read_token_env: EnvName = "CDMETRICS_READ_TOKEN"
    write_token_env: EnvName = "CDMETRICS_WRITE_TOKEN"
    gitlab_webhook_secret_env: EnvName = "GITLAB_WEBHOOK_SECRET"


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`, not directly."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", populate_by_name=True
    )

    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    sources: Sources = Field(default_factory=Sources)
    environments: EnvironmentSettings = Field(default_factory=EnvironmentSettings)
    teams: list[TeamSettings] = Field(default_factory=list)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    policies: dict[str, dict[str, Any]] = Field(default_factory=dict)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    _path: Path = PrivateAttr(DEFAULT_CONFIG)

    @property
    def path(self) -> Path:
        """The file these settings were read from (it may not exist)."""
        return self._path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init arguments; environment variables override it.
        return (env_settings, init_settings)

    def all_sources(self) -> list[SourceSettings]:
        """Every configured source, in config order by kind."""
        s = self.sources
        return [*s.gitlab, *s.jenkins, *s.git, *s.registry, *s.kubernetes]


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _in_toml(data: Any, loc: tuple[int | str, ...]) -> bool:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def _describe(exc: ValidationError, path: Path, data: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p != "function-after")
        key = _location(loc)
        variable = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
        if variable in os.environ:
            where = f"environment variable {variable}"
        elif _in_toml(data, loc) or not any(k.startswith(ENV_PREFIX) for k in os.environ):
            where = str(path)
        else:
            where = f"{path} or a {ENV_PREFIX}* environment variable"
        lines.append(f"{where}: key `{key}`: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(path: Path | None = None, warehouse_url: str | None = None) -> Settings:
    """Read `path` (default ./cdmetrics.toml, which may be absent) plus CDMETRICS_* variables.

    Raises ConfigError naming the file, the key and the problem.
    """
    path = path or Path(os.environ.get(f"{ENV_PREFIX}CONFIG", DEFAULT_CONFIG))
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    elif path != DEFAULT_CONFIG:
        raise ConfigError(f"{path}: no such configuration file (create one with `cdmetrics init`)")
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, data)) from None
    if warehouse_url:
        settings.warehouse.url = warehouse_url
    settings._path = path
    return settings


def check_secrets(settings: Settings, path: Path | None = None) -> None:
    """Raise ConfigError naming every `*_env` key of a source whose variable is unset or empty."""
    where = path or settings.path
    problems = []
    for kind in ("gitlab", "jenkins", "git", "registry", "kubernetes"):
        for i, source in enumerate(getattr(settings.sources, kind)):
            for field, value in source:
                if field.endswith("_env") and value and not os.environ.get(value):
                    problems.append(
                        f"{where}: key `sources.{kind}[{i}].{field}`: environment variable "
                        f'{value} is not set (export it, or set the key to "" for anonymous access)'
                    )
    if problems:
        raise ConfigError("missing secrets:\n  " + "\n  ".join(problems))
