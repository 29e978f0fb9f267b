"""Typed settings: `cdmetrics.toml` plus `CDMETRICS_*` environment variables (which win).

A leaf module every layer may read. Secrets are never values here, only the *names* of environment
variables holding them (`token_env = "GITLAB_TOKEN"`); `check_secrets` verifies they are set before a
command that needs them starts. Every error names the key and where it came from.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# Defaults of `[warehouse] connect_timeout_s`, `statement_timeout_s`, `lock_timeout_s` (0: none).
CONNECT_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 120.0
LOCK_TIMEOUT_S = 10.0


DEFAULT_CONFIG = Path("cdmetrics.toml")
ENV_PREFIX = "CDMETRICS_"
# defaults the collectors, webhooks and normalisers share (one place: the settings' own defaults)
PROMOTION_PATH: tuple[str, ...] = ("test", "staging", "production")
SCHEMA_JOBS = "(?i)(migrat|flyway|liquibase|alembic|schema)"
TAG_REVISION_PATTERN = r"^(?:v|sha-)?(?P<sha>[0-9a-f]{7,12}|[0-9a-f]{40})$"
DEPLOY_JOBS = "deploy-(?P<service>[^/]+)"
ENV_PARAMETER = "ENV"
IMAGE_PARAMETER = "IMAGE"
LEASE = timedelta(minutes=5)
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


def check_zone(value: str) -> str:
    """`value` when it is an IANA time zone; else ValueError saying what to write."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name like Europe/Berlin"
        ) from None
    return value


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return pattern


Regex = Annotated[str, BeforeValidator(_check_regex)]


def _check_region_pattern(pattern: str) -> str:
    if pattern and "region" not in re.compile(_check_regex(pattern)).groupindex:
        raise ValueError("needs a named group `(?P<region>...)`, or is empty for no regions")
    return pattern


# The name of an environment variable; "" means no secret (anonymous access).
EnvName = Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")]


class Section(BaseModel):
    """A config table: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class WarehouseSettings(Section):
    url: str = "sqlite:///cdmetrics.db"
    """SQLAlchemy URL of the warehouse: `sqlite:///path.db` or `postgresql+psycopg://user@host/db`."""
    connect_timeout_s: float = Field(CONNECT_TIMEOUT_S, ge=0)
    """Seconds to wait for a PostgreSQL connection (libpq counts whole seconds, at least 2); 0: no limit."""
    statement_timeout_s: float = Field(STATEMENT_TIMEOUT_S, ge=0)
    """Seconds one PostgreSQL statement may run before the server cancels it; 0: no limit."""
    lock_timeout_s: float = Field(LOCK_TIMEOUT_S, ge=0)
    """Seconds to wait for a lock (PostgreSQL `lock_timeout`, SQLite busy timeout); 0: no limit."""
    raw_retention_days: int | None = Field(None, ge=1)
    """Days the body of an accepted raw payload (kept compressed, one version per object) is kept
    after it was last written: older bodies are dropped at the end of each sync and by `cdmetrics db
    prune-raw`, their key and hash kept for change detection; rejected payloads are kept whole.
    Unset: kept forever."""

    def timeouts(self) -> dict[str, float]:
        """The keyword arguments of `warehouse.engine.make_engine` / `open_warehouse` for these."""
        return {
            "connect_timeout_s": self.connect_timeout_s,
            "statement_timeout_s": self.statement_timeout_s,
            "lock_timeout_s": self.lock_timeout_s,
        }


class SyncSettings(Section):
    history_days: int = Field(365, gt=0)
    """How far back a first sync reaches: GitLab's commits (`since`), merge requests, pipelines,
    deployments and incidents (`updated_after`) from this many days before the sync; later syncs
    go on from their cursors. Jenkins has no date filter (its retained builds bound it); registries
    and clusters are read as they are now, with their own history (tags, rollouts)."""
    timezone: str = "UTC"
    """IANA time zone of days and ISO weeks in metrics and reports."""
    overlap: Duration = timedelta(minutes=10)
    """How far before its cursor an incremental sync re-reads (upserts absorb the overlap)."""
    parallelism: int = Field(4, ge=1, le=64)
    """Projects (partitions) synced at once per source."""
    requests_per_second: float = Field(20.0, ge=0)
    """Rate limit shared by all requests to one source (0: no limit, e.g. for the sandbox)."""
    timeout_s: float = Field(30.0, gt=0)
    """Timeout of every HTTP request, in seconds."""
    max_retry_after_s: float = Field(60.0, ge=0)
    """Longest wait a server's Retry-After may impose, in seconds (seconds or HTTP-date form); a
    longer one is cut to this, so no worker is parked for an hour."""
    lease: Duration = LEASE
    """How long a worker's claim on a partition (a GitLab project, a Jenkins job, a namespace...)
    lasts; renewed every third of it while the worker lives, so a dead worker's partitions are
    taken over by another once it runs out."""
    min_interval: Duration = timedelta(0)
    """A partition whose last sync finished less than this before this worker started is skipped
    (besides those another worker finished since this one started); with several workers on one
    schedule, set it to a little less than the schedule's period (e.g. 10m for every 15 minutes)."""
    worker_id: str = ""
    """This worker's name in the partition leases (default: host name and process id); each of
    several workers sharing one warehouse needs its own."""

    @field_validator("lease")
    @classmethod
    def _positive_lease(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("a lease must be longer than 0s; write e.g. 5m")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


class SourceSettings(Section):
    name: str
    """Name of the source in the warehouse and on the command line (`cdmetrics sync NAME`)."""
    url: str | None = None
    """Base URL of the source's API."""


class GitLabSource(SourceSettings):
    url: str
    """Base URL of the GitLab instance, e.g. https://gitlab.example.com."""
    token_env: EnvName = "GITLAB_TOKEN"
    """Environment variable holding a read_api token ("" for anonymous access)."""
    groups: list[str] = Field(default_factory=list)
    """Groups whose projects (subgroups included) are synced."""
    projects: list[str] = Field(default_factory=list)
    """Projects synced by path or numeric id, besides the groups'."""
    per_page: int = Field(100, ge=1, le=100)
    """Page size of list requests (GitLab allows at most 100)."""
    ssl_verify: bool = True
    """Verify the server's TLS certificate."""
    graphql: bool = True
    """Read pipelines, merge requests' commits, approvals and notes, and registry tags' digests
    through GitLab's GraphQL API when the instance offers it (GitLab 16.3 or later; REST otherwise,
    detected once per sync); false: REST only."""


class JenkinsSource(SourceSettings):
    url: str
    """Base URL of the Jenkins controller."""
    user_env: EnvName = "JENKINS_USER"
    """Environment variable holding the user name ("" for anonymous access)."""
    token_env: EnvName = "JENKINS_TOKEN"
    """Environment variable holding the user's API token ("" for anonymous access)."""
    deploy_jobs: Regex = DEPLOY_JOBS
    """Regular expression of deploy job names; the `service` group names the service."""
    env_parameter: str = ENV_PARAMETER
    """Build parameter naming the target environment of a deploy job."""
    image_parameter: str = IMAGE_PARAMETER
    """Build parameter naming the deployed image (`repo@sha256:...` or `repo:tag`)."""


class GitSource(SourceSettings):
    path: str | None = None
    """Local path of the repository (a bare mirror is fine); or give `url` to clone into a cache."""
    service: str | None = None
    """Service the repository belongs to."""


class SvnSource(SourceSettings):
    url: str
    """Repository URL: `svn://`, `http://`, `https://` or `file://` (its root, or the folder
    holding the layout)."""
    username_env: EnvName = ""
    """Environment variable holding the user name ("" for anonymous access)."""
    password_env: EnvName = ""
    """Environment variable holding the password (passed to `svn` on stdin, never as an argument)."""
    layout: Literal["standard", "projects"] = "standard"
    """`standard`: `trunk`, `branches/*`, `tags/*` under `url`; `projects`: a multi-project
    root, `/<project>/trunk`, `/<project>/branches/*`, `/<project>/tags/*`."""
    service: str | None = None
    """Service the repository belongs to (layout `standard`)."""
    projects: dict[str, str] = Field(default_factory=dict)
    """Layout `projects`: project folder -> service (a project not listed is still read, without
    a service)."""
    timeout_s: float = Field(600, gt=0)
    """Seconds one `svn` command may run before the sync of the source fails."""

    @field_validator("url")
    @classmethod
    def _svn_url(cls, value: str) -> str:
        if not re.match(r"^(svn|svn\+ssh|https?|file)://", value):
            raise ValueError(
                f"{value!r} is not a Subversion URL; write svn://, svn+ssh://, http(s):// or file://"
            )
        return value.rstrip("/")


class RegistrySource(SourceSettings):
    name: str = "registry"
    """Name of the source in the warehouse."""
    kind: Literal["harbor", "oci"] = "harbor"
    """`harbor` (Harbor v2.0 API) or `oci` (Docker Registry HTTP API v2)."""
    url: str
    """Base URL of the registry."""
    projects: list[str] = Field(default_factory=list)
    """Harbor projects (or OCI repository prefixes) to read."""
    user_env: EnvName = ""
    """Environment variable holding the user (a Harbor robot account); "" for anonymous access."""
    token_env: EnvName = ""
    """Environment variable holding the password or token; "" for anonymous access."""
    host: str | None = None
    """Registry name images are pulled by, `<host>/<repo>` (default: the host and port of url)."""
    per_page: int = Field(100, ge=1, le=1000)
    """Page size of list requests (Harbor allows at most 100)."""


class KubernetesSource(SourceSettings):
    context: str | None = None
    """kubeconfig context; unset inside a cluster (in-cluster service account)."""
    kubeconfig: str | None = None
    """Path of the kubeconfig file (default: the client's usual lookup)."""
    namespaces: dict[str, str] = Field(default_factory=dict)
    """Namespaces to observe, each mapped to the environment it runs (empty: every namespace the
    credentials may list, the environment guessed from the name's last `-` part)."""
    cluster: str | None = None
    """Cluster name written to `observed_workload` (default: the source name)."""
    deployments: Literal["observe", "record"] = "observe"
    """`observe`: rollouts only check what other sources recorded; `record`: each rollout is also a
    deployment (for clusters no other source records deployments of, e.g. GitOps)."""
    page_size: int = Field(500, ge=1, le=5000)
    """Objects per list request (`limit`; the rest follows with `continue`)."""


class SonarQubeSource(SourceSettings):
    url: str
    """Base URL of the SonarQube server, e.g. https://sonarqube.example.com."""
    token_env: EnvName = "SONAR_TOKEN"
    """Environment variable holding a user token with Browse on the projects ("" for anonymous)."""
    version: Literal["10", "9.9"] = "10"
    """Server generation: `10` (10.x and 2025.x: `Authorization: Bearer <token>`) or `9.9` (9.9
    LTS: the token as the basic-auth user name, empty password)."""
    projects: list[str] = Field(default_factory=list)
    """Project keys to read (empty: every project the token may browse)."""
    repositories: dict[str, str] = Field(default_factory=dict)
    """Project key -> repository path (`group/project`); a project not listed is the repository
    whose path equals its key (or its key with `:` read as `/`)."""
    page_size: int = Field(100, ge=1, le=500)
    """Page size of list requests (`ps`; SonarQube allows at most 500)."""


class TrackerServiceRule(Section):
    """One rule of a tracker's service mapping; the first rule (in config order) whose every given
    key matches a row names its service. A row no rule matches is kept with no service and counted
    on the Data sources page, never guessed."""

    service: str
    """The service (as in the warehouse: GitLab's project name, or `[[services]]`) it maps to."""

    @model_validator(mode="after")
    def _matches_something(self) -> TrackerServiceRule:
        keys = [k for k in type(self).model_fields if k not in ("service", "value")]
        if not any(getattr(self, k) is not None for k in keys):
            raise ValueError(f"a rule needs one of {', '.join(keys)} to match rows by")
        if "field" in keys and (getattr(self, "field", None) is None) != (
            getattr(self, "value", None) is None
        ):
            raise ValueError("`field` and `value` go together: the field's id and the value")
        return self


class JiraServiceRule(TrackerServiceRule):
    project: str | None = None
    """Jira project key (`PAY`)."""
    component: str | None = None
    """A component the issue has."""
    label: str | None = None
    """A label the issue has."""
    field: str | None = None
    """A field id (`customfield_10042`) whose value (text, option or one of a list) is `value`."""
    value: str | None = None
    """The value `field` must have."""


class ZentaoServiceRule(TrackerServiceRule):
    product: str | None = None
    """Zentao product, by id or name."""
    module: str | None = None
    """Zentao module, by id or name."""


class JiraSource(SourceSettings):
    url: str
    """Base URL of the Jira site (`https://acme.atlassian.net`, or a Server/Data Center URL)."""
    flavour: Literal["cloud", "server"] = "cloud"
    """`cloud` (REST v3 `search/jql` with `nextPageToken`) or `server` (Server/Data Center: REST v2
    `search` with `startAt`)."""
    user_env: EnvName = "JIRA_USER"
    """Environment variable holding the account's e-mail (Cloud basic auth with an API token);
    "" for a Server/Data Center personal access token (sent as a bearer token)."""
    token_env: EnvName = "JIRA_TOKEN"
    """Environment variable holding the API token (Cloud) or personal access token (Server/DC)."""
    projects: list[str] = Field(default_factory=list)
    """Project keys whose issues are synced (empty: every project the account can browse)."""
    incidents: str = "issuetype = Incident"
    """JQL selecting the issues that are incidents (they fill `incident`; every other issue is a
    work item)."""
    requirement_types: list[str] = Field(default_factory=lambda: ["Story", "Epic", "Requirement"])
    """Issue types that are requirements; `bug_types` are bugs; every other type is a task."""
    bug_types: list[str] = Field(default_factory=lambda: ["Bug", "Defect"])
    """Issue types that are bugs."""
    services: list[JiraServiceRule] = Field(default_factory=list)
    """Service mapping (`[[sources.jira.services]]`): project, component, label or field."""
    timezone: str = "UTC"
    """The account's time zone: JQL dates (`updated >= "2026-12-01 10:00"`) are read in it, to the
    minute."""
    page_size: int = Field(100, ge=1, le=100)
    """Issues per search request (`maxResults`; Jira caps it at 100 with changelogs)."""
    remote_links: bool = True
    """Read each new or changed issue's remote links (`/issue/{key}/remotelink`, one request an
    issue): GitLab MR and commit URLs become the tracker's own work item links, deployment,
    pipeline and MR URLs an incident's explicit links."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


class ZentaoSource(SourceSettings):
    url: str
    """Base URL of the Zentao server (the API is under `/api.php/v1`)."""
    api: Literal["v1", "v2"] = "v1"
    """REST API version: `v1` (16.0 and later) or `v2` (where its shapes differ)."""
    account_env: EnvName = "ZENTAO_ACCOUNT"
    """Environment variable holding the account that logs in (`POST /tokens`)."""
    password_env: EnvName = "ZENTAO_PASSWORD"
    """Environment variable holding the account's password."""
    products: list[str] = Field(default_factory=list)
    """Products (id or name) whose bugs and stories are synced (empty: every product)."""
    incident_types: list[str] = Field(default_factory=list)
    """Bug types (`codeerror`, `config`, `security`, ...) that are incidents."""
    incident_severity: int | None = Field(None, ge=1, le=4)
    """Bugs of this severity or more severe (1 is the most severe) are incidents."""
    incident_modules: list[str] = Field(default_factory=list)
    """Modules (id or name) whose bugs are incidents."""
    services: list[ZentaoServiceRule] = Field(default_factory=list)
    """Service mapping (`[[sources.zentao.services]]`): product and/or module."""
    timezone: str = "Asia/Shanghai"
    """The server's time zone: REST v2 answers local times without a zone, read in it (v1 answers
    UTC)."""
    release_tags: Regex = r"v?\d+(\.\d+)+([-+.][\w.\-]+)?"
    """A release whose name matches this pattern is named by its tag: a bug whose `openedBuild` is
    a build of that release is explicitly linked to the deployment of that tag."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


class PagerDutySource(SourceSettings):
    url: str = "https://api.pagerduty.com"
    """Base URL of the PagerDuty REST API."""
    token_env: EnvName = "PAGERDUTY_TOKEN"
    """Environment variable holding a read-only REST API key."""
    services: dict[str, str] = Field(default_factory=dict)
    """PagerDuty service (id or name) -> our service; every incident of a mapped service is an
    incident (of the other services' incidents, none are read)."""


class Sources(Section):
    gitlab: list[GitLabSource] = Field(default_factory=list)
    """GitLab instances (`[[sources.gitlab]]`)."""
    jenkins: list[JenkinsSource] = Field(default_factory=list)
    """Jenkins controllers (`[[sources.jenkins]]`)."""
    git: list[GitSource] = Field(default_factory=list)
    """Plain git repositories (`[[sources.git]]`)."""
    svn: list[SvnSource] = Field(default_factory=list)
    """Subversion repositories (`[[sources.svn]]`)."""
    registry: list[RegistrySource] = Field(default_factory=list)
    """Container registries (`[[sources.registry]]`)."""
    kubernetes: list[KubernetesSource] = Field(default_factory=list)
    """Kubernetes clusters (`[[sources.kubernetes]]`)."""
    sonarqube: list[SonarQubeSource] = Field(default_factory=list)
    """SonarQube servers (`[[sources.sonarqube]]`): quality gates of analysed commits."""
    jira: list[JiraSource] = Field(default_factory=list)
    """Jira Cloud sites and Server/Data Center instances (`[[sources.jira]]`)."""
    zentao: list[ZentaoSource] = Field(default_factory=list)
    """Zentao (禅道) servers (`[[sources.zentao]]`)."""
    pagerduty: list[PagerDutySource] = Field(default_factory=list)
    """PagerDuty accounts (`[[sources.pagerduty]]`)."""


SOURCE_KINDS = tuple(Sources.model_fields)  # every `[[sources.<kind>]]` table


class EnvironmentSettings(Section):
    promotion_path: list[str] = Field(default_factory=lambda: list(PROMOTION_PATH))
    """Canonical environments an image is promoted through, in order (at least one, no repeats)."""
    aliases: dict[str, list[Regex]] = Field(
        default_factory=lambda: {
            "test": ["(?i)^(fat|test|qa)"],
            "staging": ["(?i)^(uat|pre|stag)"],
            "production": ["(?i)^(pro|prod|production|live)$"],
        }
    )
    """Canonical environment -> regular expressions of raw names that mean it (replaces the default)."""
    regions: Annotated[str, BeforeValidator(_check_region_pattern)] = (
        r"(?i)^(?:pro|prod|production|live)[-_.](?P<region>[a-z0-9]+(?:-[a-z0-9]+)*)$"
    )
    """Raw names of production regions (a pattern with a `region` group; empty: none): `prod-cn`
    becomes the production-tier environment `production-cn`, with its own deployment chain, placed
    where `production` is on the promotion path. Aliases are tried first."""

    @field_validator("promotion_path")
    @classmethod
    def _path(cls, path: list[str]) -> list[str]:
        """The path, unless it is empty or repeats an environment."""
        if not path:  # the gate and untested-image would let anything into production
            raise ValueError("the promotion path needs at least one environment")
        if len(set(path)) != len(path):
            raise ValueError("an environment appears twice in the promotion path")
        return path


Severity = Literal["error", "warn", "info"]


class PolicySettings(Section):
    """Parameters every policy has (`[policies.<id>]`)."""

    severity: Severity | None = None
    """Overrides the policy's default severity (error, warn or info)."""


class UntestedImagePolicy(PolicySettings):
    min_soak_minutes: float = Field(default=0, ge=0)
    """Minutes an image must have run (finished) in an earlier environment before it counts as tested."""
    require: Literal["all", "previous"] = "all"
    """`all`: tested in every environment before the target on the path; `previous`: the one before."""


class NonReleaseRefPolicy(PolicySettings):
    allowed_refs: list[str] = Field(default_factory=lambda: ["release/*", "hotfix/*"])
    """Glob patterns of refs production may also be deployed from (besides the default branch and tags)."""


class MergeWithoutApprovalPolicy(PolicySettings):
    required_approvals: int = Field(default=1, ge=0)
    """Approvals a merge request needs before it is merged."""


class LongLivedBranchPolicy(PolicySettings):
    max_age_days: float = Field(default=7, gt=0)
    """An open merge request (or unmerged branch) older than this many days is long-lived."""


class StaleBranchPolicy(PolicySettings):
    stale_days: float = Field(default=30, gt=0)
    """An unmerged branch with no commit for this many days is stale."""


class QualityGatePolicy(PolicySettings):
    branches: list[str] = Field(default_factory=lambda: ["main", "master", "release/*"])
    """Glob patterns of the branches whose analyses count (a pull request's never do)."""
    max_analysis_age_days: float | None = Field(default=None, gt=0)
    """An analysis older than this many days at the deployment's start does not count (unset: any age)."""
    ignored_conditions: list[str] = Field(default_factory=list)
    """Metric keys (`new_coverage`) whose failing conditions do not deny: a gate that failed only
    on them counts as passed."""


class QualityGateMissingPolicy(QualityGatePolicy):
    enabled: bool = False
    """Whether the policy runs (off by default: turn it on once every service is analysed)."""


def _policy(model: type[PolicySettings], policy_id: str) -> Any:
    return Field(default_factory=model, alias=policy_id)


class PoliciesSettings(Section):
    """Parameters per policy id; an unknown id or key is an error (docs/POLICIES.md)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    untested_image: UntestedImagePolicy = _policy(UntestedImagePolicy, "untested-image")
    """`[policies.untested-image]`."""
    rebuilt_image: PolicySettings = _policy(PolicySettings, "rebuilt-image")
    """`[policies.rebuilt-image]`."""
    unpinned_image: PolicySettings = _policy(PolicySettings, "unpinned-image")
    """`[policies.unpinned-image]`."""
    moved_tag: PolicySettings = _policy(PolicySettings, "moved-tag")
    """`[policies.moved-tag]`."""
    non_release_ref: NonReleaseRefPolicy = _policy(NonReleaseRefPolicy, "non-release-ref")
    """`[policies.non-release-ref]`."""
    schema_skipped_env: PolicySettings = _policy(PolicySettings, "schema-skipped-env")
    """`[policies.schema-skipped-env]`."""
    merge_without_green_pipeline: PolicySettings = _policy(
        PolicySettings, "merge-without-green-pipeline"
    )
    """`[policies.merge-without-green-pipeline]`."""
    merge_without_approval: MergeWithoutApprovalPolicy = _policy(
        MergeWithoutApprovalPolicy, "merge-without-approval"
    )
    """`[policies.merge-without-approval]`."""
    direct_push: PolicySettings = _policy(PolicySettings, "direct-push")
    """`[policies.direct-push]`."""
    long_lived_branch: LongLivedBranchPolicy = _policy(LongLivedBranchPolicy, "long-lived-branch")
    """`[policies.long-lived-branch]`."""
    stale_branch: StaleBranchPolicy = _policy(StaleBranchPolicy, "stale-branch")
    """`[policies.stale-branch]`."""
    unrecorded_change: PolicySettings = _policy(PolicySettings, "unrecorded-change")
    """`[policies.unrecorded-change]`."""
    quality_gate_failed: QualityGatePolicy = _policy(QualityGatePolicy, "quality-gate-failed")
    """`[policies.quality-gate-failed]`."""
    quality_gate_missing: QualityGateMissingPolicy = _policy(
        QualityGateMissingPolicy, "quality-gate-missing"
    )
    """`[policies.quality-gate-missing]`."""

    def of(self, policy_id: str) -> PolicySettings:
        """The parameters of the policy `policy_id` (e.g. `untested-image`)."""
        return getattr(self, policy_id.replace("-", "_"))  # type: ignore[no-any-return]


class TeamSettings(Section):
    name: str
    """Team name."""
    services: list[str] = Field(default_factory=list)
    """Services the team owns: names or glob patterns (`pay-*`)."""


class ServiceEntry(Section):
    name: str
    """Service name (as discovered, e.g. the GitLab project's name, or as a team lists it)."""
    image_repositories: list[str] = Field(default_factory=list)
    """Registry repositories holding the service's images, `<host>/<name>` or glob patterns
    (`harbor.example/shop/*`), besides every repository under its GitLab registry prefix."""


class MetricsSettings(Section):
    failure_window: Duration = timedelta(days=7)
    """An incident or rollback this soon after a production deployment makes it a failed change."""
    hotfix_window: Duration = timedelta(hours=24)
    """A hotfix deployment this soon after a production deployment makes it a failed change."""
    hotfix_refs: list[str] = Field(default_factory=lambda: ["hotfix/*"])
    """Glob patterns of refs whose deployments are hotfixes."""
    schema_jobs: Regex = SCHEMA_JOBS
    """Regular expression of job names that deploy database schema changes."""
    tag_revision_pattern: Regex = TAG_REVISION_PATTERN
    """Tags naming their source commit; the `sha` group is the (short) sha."""


TargetUnit = Literal["count", "hours", "ratio"]
_TARGET = re.compile(r"^\s*(<=|>=|<|>)\s*(.+?)\s*$")
_COMPARE = {
    "<": float.__lt__,
    "<=": float.__le__,
    ">": float.__gt__,
    ">=": float.__ge__,
}


@dataclass(frozen=True)
class Target:
    """A goal for one metric: `comparison` (`<`, `<=`, `>`, `>=`) and `value` in the metric's
    unit (hours, a ratio 0..1, or a count), as `text` was written."""

    comparison: str
    value: float
    text: str

    def met(self, figure: float | None) -> bool | None:
        """Whether `figure` meets the target; None when there is no figure (nothing to judge)."""
        return None if figure is None else _COMPARE[self.comparison](float(figure), self.value)


def _target_parser(unit: TargetUnit) -> Any:
    def parse(text: Any) -> Target:
        m = _TARGET.match(text) if isinstance(text, str) else None
        if not m:
            raise ValueError(
                f"{text!r} is not a target; write a comparison and a value, {_EXAMPLE[unit]}"
            )
        comparison, amount = m.groups()
        try:
            if unit == "hours":
                value = parse_duration(amount).total_seconds() / 3600
            elif unit == "ratio":
                if not amount.endswith("%"):
                    raise ValueError
                value = float(amount[:-1]) / 100
            else:
                value = float(amount)
        except (ValueError, AttributeError):
            raise ValueError(
                f"{amount!r} is not a value for this metric; write {_EXAMPLE[unit]}"
            ) from None
        return Target(comparison, value, f"{comparison} {amount}")

    return BeforeValidator(parse)


_EXAMPLE = {
    "count": 'e.g. ">= 10"',
    "hours": 'a duration, e.g. "< 2d" or "<= 48h"',
    "ratio": 'a percentage, e.g. "< 10%"',
}


@dataclass(frozen=True)
class InUnit:
    """Marks a target field with the unit its values are written in."""

    unit: TargetUnit


HoursTarget = Annotated[Target | None, _target_parser("hours"), InUnit("hours")]
RatioTarget = Annotated[Target | None, _target_parser("ratio"), InUnit("ratio")]
CountTarget = Annotated[Target | None, _target_parser("count"), InUnit("count")]


class MetricTargets(Section):
    """Targets per metric: a comparison and a value with the metric's unit; unset: no target."""

    deployments: CountTarget = None
    """Production deployments in the week, e.g. `">= 5"`."""
    deployment_days: CountTarget = None
    """Days of the week with a production deployment, e.g. `">= 3"`."""
    lead_time_median: HoursTarget = None
    """Median lead time (first commit to production), e.g. `"< 2d"`."""
    lead_time_p90: HoursTarget = None
    """90th percentile of lead time, e.g. `"< 7d"`."""
    change_failure_rate: RatioTarget = None
    """Change failure rate, e.g. `"< 10%"`."""
    recovery_median: HoursTarget = None
    """Median time to restore service, e.g. `"< 1d"`."""
    rework_rate: RatioTarget = None
    """Rework rate, e.g. `"< 5%"`."""
    deployment_failure_rate: RatioTarget = None
    """Deployment failure rate, e.g. `"< 5%"`."""
    pipeline_failure_rate: RatioTarget = None
    """Pipeline failure rate, e.g. `"< 15%"`."""

    @classmethod
    def units(cls) -> dict[str, TargetUnit]:
        """Metric name -> the unit its target is written in (count, hours or ratio)."""
        return {
            name: next(m.unit for m in field.metadata if isinstance(m, InUnit))
            for name, field in cls.model_fields.items()
            if any(isinstance(m, InUnit) for m in field.metadata)
        }

    def targets(self) -> dict[str, Target]:
        """The targets set, by metric name."""
        return {name: target for name, target in self if isinstance(target, Target)}


class TargetsSettings(MetricTargets):
    """`[targets]`: the organisation's targets; `[targets.teams.<team>]` a team's, which replace
    the organisation's metric by metric in a report or view of that one team."""

    teams: dict[str, MetricTargets] = Field(default_factory=dict)
    """Targets per team (`[targets.teams.payments]`); the team must be listed in `[[teams]]`."""

    def for_teams(self, teams: tuple[str, ...] | list[str]) -> dict[str, Target]:
        """The targets of a scope: one team's over the organisation's, else the organisation's."""
        own = self.teams[teams[0]].targets() if len(teams) == 1 and teams[0] in self.teams else {}
        return {**self.targets(), **own}


class ServiceSettings(Section):
    url: str = Field("", pattern=r"^(https?://[^\s/?#]+[^\s?#]*)?$")
    """Where clients reach the running service (`cdmetrics serve`), e.g.
    `https://cdmetrics.example.com` (a proxy's path prefix included): `cdmetrics gate` then asks
    its `POST /api/v1/gate` with the write token instead of reading the warehouse. Empty: the gate
    reads the warehouse."""
    read_token_env: EnvName = "CDMETRICS_READ_TOKEN"
    """Environment variable holding the bearer token for GET /api/v1/*."""
    write_token_env: EnvName = "CDMETRICS_WRITE_TOKEN"
    """Environment variable holding the bearer token for POST /events/* and /api/v1/gate."""
    gitlab_webhook_secret_env: EnvName = "GITLAB_WEBHOOK_SECRET"
    """Environment variable holding GitLab's webhook secret; unset: GitLab webhooks are refused."""
    sonarqube_webhook_secret_env: EnvName = "SONAR_WEBHOOK_SECRET"
    """Environment variable holding the secret SonarQube signs its webhooks with (HMAC-SHA256 in
    `X-Sonar-Webhook-HMAC-SHA256`); unset: SonarQube webhooks are refused."""


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`, not directly."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
    )

    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    """Where the warehouse is."""
    sync: SyncSettings = Field(default_factory=SyncSettings)
    """How collectors sync."""
    sources: Sources = Field(default_factory=Sources)
    """The systems data is collected from."""
    environments: EnvironmentSettings = Field(default_factory=EnvironmentSettings)
    """Canonical environments and the promotion path."""
    teams: list[TeamSettings] = Field(default_factory=list)
    """Teams and the services they own (`[[teams]]`)."""
    services: list[ServiceEntry] = Field(default_factory=list)
    """Per-service settings (`[[services]]`)."""
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    """Parameters of the metric definitions (docs/METRICS.md)."""
    policies: PoliciesSettings = Field(default_factory=PoliciesSettings)
    """Parameters per policy id (`[policies.long-lived-branch]`; docs/POLICIES.md)."""
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    """The HTTP service's tokens, by environment variable."""
    targets: TargetsSettings = Field(default_factory=TargetsSettings)
    """Team targets shown beside the figures (`[targets]`, `[targets.teams.<team>]`)."""
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

    def image_repositories(self) -> dict[str, list[str]]:
        """Service name -> its configured image repositories (names or glob patterns)."""
        return {s.name: s.image_repositories for s in self.services if s.image_repositories}

    def team_of(self, service: str) -> str | None:
        """The team owning `service`: the first `[[teams]]` entry (config order) one of whose
        names or glob patterns matches it; None when no team lists it."""
        return owning_team(self.teams, service)

    def all_sources(self) -> list[SourceSettings]:
        """Every configured source, in config order by kind."""
        return [source for kind in SOURCE_KINDS for source in getattr(self.sources, kind)]


def owning_team(teams: Iterable[TeamSettings], service: str) -> str | None:
    """The first of `teams` whose `services` (names or glob patterns) match `service`."""
    return next((t.name for t in teams if any(fnmatch(service, p) for p in t.services)), None)


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
        elif (
            _in_toml(data, loc)
            or err["type"] == "missing"
            or not any(k.startswith(f"{ENV_PREFIX}{str(loc[0]).upper()}") for k in os.environ)
        ):
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
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
        except OSError as exc:  # a directory, no permission, ...
            raise ConfigError(
                f"{path}: cannot be read as a configuration file: {exc.strerror}"
            ) from None
    elif path != DEFAULT_CONFIG:
        raise ConfigError(f"{path}: no such configuration file (create one with `cdmetrics init`)")
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, data)) from None
    check_source_names(settings, path)
    check_target_teams(settings, path)
    if warehouse_url:
        settings.warehouse.url = warehouse_url
    settings._path = path
    return settings


def check_source_names(settings: Settings, path: Path) -> None:
    """Raise ConfigError naming every source whose name an earlier source (of any kind) has: a
    name is the source's key in the warehouse, so two would be merged into one silently."""
    seen: dict[str, str] = {}
    problems = []
    for kind in SOURCE_KINDS:
        for i, source in enumerate(getattr(settings.sources, kind)):
            key = f"sources.{kind}[{i}].name"
            if source.name in seen:
                problems.append(
                    f"{path}: key `{key}`: source name {source.name!r} is already the name of "
                    f"`{seen[source.name]}`; give every source its own name"
                )
            seen.setdefault(source.name, key)
    if problems:
        raise ConfigError("duplicate source names:\n  " + "\n  ".join(problems))


def check_target_teams(settings: Settings, path: Path) -> None:
    """Raise ConfigError naming every `[targets.teams.<team>]` whose team `[[teams]]` lacks."""
    known = [t.name for t in settings.teams]
    unknown = sorted(set(settings.targets.teams) - set(known))
    if unknown:
        raise ConfigError(
            "\n".join(
                f"{path}: key `targets.teams.{name}`: no team named {name!r} in [[teams]] "
                f"(listed: {', '.join(known) or 'none'}); add it there or fix the name"
                for name in unknown
            )
        )


def check_secrets(settings: Settings, path: Path | None = None) -> None:
    """Raise ConfigError naming every `*_env` key of a source whose variable is unset or empty."""
    where = path or settings.path
    problems = []
    for kind in SOURCE_KINDS:
        for i, source in enumerate(getattr(settings.sources, kind)):
            for field, value in source:
                if field.endswith("_env") and value and not os.environ.get(value):
                    problems.append(
                        f"{where}: key `sources.{kind}[{i}].{field}`: environment variable "
                        f'{value} is not set (export it, or set the key to "" for anonymous access)'
                    )
    if problems:
        raise ConfigError("missing secrets:\n  " + "\n  ".join(problems))


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not get_args(annotation) else None
    text = text or str(annotation)
    text = re.sub(r"typing\.|cdmetrics\.settings\.|<class '([^']+)'>", r"\1", text)
    text = re.sub(r"Annotated\[(\w+), [^\]]*\]+", r"\1", text)
    return {"timedelta": "duration"}.get(text, text)


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if seconds % size == 0:
                return f"`{seconds // size}{unit}`"
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value)}`"


def attribute_docs(model: type) -> dict[str, str]:
    """The docstring under each field of `model` and its bases (the string literal after
    `key: type = default`), read from this module's source when the reference is generated:
    pydantic's `use_attribute_docstrings` would parse the source for every model at import, a
    sixth of the gate's process time (cdmetrics/entry.py)."""
    import ast
    import inspect

    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    by_class: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            docs = by_class.setdefault(node.name, {})
            for field, after in zip(node.body, node.body[1:], strict=False):
                if (
                    isinstance(field, ast.AnnAssign)
                    and isinstance(field.target, ast.Name)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)
                ):
                    docs[field.target.id] = inspect.cleandoc(after.value.value)
    merged: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if cls.__module__ == __name__:
            merged.update(by_class.get(cls.__name__, {}))
    return merged


def config_reference() -> str:
    """docs/CONFIG.md: every key of every table, generated from the models (a test keeps it current)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `config/settings.py` by `make docs`; a test checks it is current.",
        "",
        "Settings come from `cdmetrics.toml` (or `--config`, or `$CDMETRICS_CONFIG`); any key of a",
        "plain table is overridden by `CDMETRICS_<TABLE>__<KEY>` (e.g. `CDMETRICS_WAREHOUSE__URL`).",
        "Unknown keys and wrong types stop every command with exit code 2, naming the key and file.",
        "Secrets are never values: keys ending in `_env` name the environment variable holding them.",
        "Durations are written `7d`, `24h`, `30m`, `90s` or `2w`.",
    ]

    def section_of(annotation: Any) -> tuple[type[Section] | None, bool]:
        """(the Section model of a field, whether it is a list of them) or (None, False)."""
        inner = get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, Section):
            return annotation, False
        if inner and isinstance(inner[0], type) and issubclass(inner[0], Section):
            return inner[0], True
        return None, False

    def table(path: str, many: bool, model: type[BaseModel], env: str | None) -> None:
        rows, nested = [], []
        docs = attribute_docs(model)
        for key, field in model.model_fields.items():
            sub, sub_many = section_of(field.annotation)
            if sub is not None:
                nested.append((f"{path}.{field.alias or key}", sub_many, sub))
                continue
            meaning = field.description or docs.get(key, "")
            if env:
                meaning += f" Env: `{env}{key.upper()}`."
            kind = _type_name(field.annotation)
            rows.append(
                f"| `{key}` | {kind} | {_default(field)} | {meaning} |".replace(
                    " | None", " or None"
                )
            )
        if rows:
            title = f"[[{path}]]" if many else f"[{path}]"
            lines.extend(
                ["", f"## `{title}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
            )
            lines.extend(rows)
        for sub_path, sub_many, sub in nested:
            table(sub_path, sub_many, sub, None)

    settings_docs = attribute_docs(Settings)
    for key, field in Settings.model_fields.items():
        model, many = section_of(field.annotation)
        if model is not None:
            table(key, many, model, None if many else f"{ENV_PREFIX}{key.upper()}__")
        else:
            lines.extend(["", f"## `[{key}]`", "", field.description or settings_docs.get(key, "")])
    return "\n".join(lines) + "\n"
