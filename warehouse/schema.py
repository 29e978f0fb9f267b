"""The warehouse schema: SQLAlchemy 2.x declarative models for every table of DESIGN.md section 3.

Conventions:
- every table has an integer surrogate `id` and a natural key (`natural_key(...)`), a unique
  constraint that every write upserts on (`warehouse.upsert`);
- small dimension tables (source, team, service, environment, repo) are referenced by id; facts
  reference other facts by their natural key (a job names its pipeline's external id), so a stream
  can be loaded in any order, from a poll or a webhook;
- timestamps are `UTCDateTime`; statuses are normalised (`warehouse.vocabulary`) with the raw value
  kept beside them;
- a column marked `volatile` is written with a row that changed but never makes an unchanged row
  count as changed (fetch times, last-seen times); a column marked `kept` is written on insert
  only (first-seen times).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from warehouse.types import CompressedJson, Json, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Sha = String(64)  # sha1 today, sha256 repositories tomorrow
Name = String(255)
Url = String(1024)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: Json,
        list[Any]: Json,
    }


def table_of(model: type[Base] | Table) -> Table:
    """The Core table of a mapped class (or the table itself)."""
    return model if isinstance(model, Table) else cast(Table, model.__table__)


def natural_key(*columns: str) -> UniqueConstraint:
    """The unique constraint that identifies a row; `upsert` resolves conflicts on it."""
    return UniqueConstraint(*columns, info={"natural_key": True})


def volatile(**kwargs: Any) -> Any:
    """A column updated with its row but ignored when deciding whether the row changed."""
    return mapped_column(info={"volatile": True}, **kwargs)


def changed(**kwargs: Any) -> Any:
    """When the row last really changed: stamped by the upsert on every insert or real change
    (volatile, so the stamp itself never makes a row count as changed). Derive reads it to find
    data that arrived after a deployment was derived."""
    return mapped_column(info={"volatile": True, "changed_at": True}, **kwargs)


def kept(**kwargs: Any) -> Any:
    """A column written when the row is first inserted and never updated (first-seen times)."""
    return mapped_column(info={"kept": True}, **kwargs)


def ref(table: str, nullable: bool = True) -> Any:
    """An integer reference to a dimension table's id."""
    return mapped_column(ForeignKey(f"{table}.id"), nullable=nullable, index=True)


# --- dimensions -----------------------------------------------------------------------------


class Source(Base):
    __tablename__ = "source"
    __table_args__ = (natural_key("name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Name)
    kind: Mapped[str] = mapped_column(
        String(32)
    )  # gitlab, jenkins, harbor, oci, kubernetes, git, cdevents, jira, zentao, pagerduty
    base_url: Mapped[str | None] = mapped_column(Url)


class Team(Base):
    __tablename__ = "team"
    __table_args__ = (natural_key("name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Name)


class Repo(Base):
    __tablename__ = "repo"
    __table_args__ = (natural_key("source_id", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = ref("source", nullable=False)
    external_id: Mapped[str] = mapped_column(Name)
    path: Mapped[str] = mapped_column(Name)
    default_branch: Mapped[str | None] = mapped_column(Name)
    web_url: Mapped[str | None] = mapped_column(Url)


class Service(Base):
    __tablename__ = "service"
    __table_args__ = (natural_key("name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Name)
    team_id: Mapped[int | None] = ref("team")
    repo_id: Mapped[int | None] = ref("repo")
    image_repository: Mapped[str | None] = mapped_column(Name)
    k8s_workload: Mapped[str | None] = mapped_column(Name)
    origin: Mapped[str] = mapped_column(String(16), default="discovered")  # config | discovered


class Environment(Base):
    __tablename__ = "environment"
    __table_args__ = (natural_key("name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Name)
    tier: Mapped[str] = mapped_column(
        String(16)
    )  # development, testing, staging, production, other
    position: Mapped[int | None]  # index in the promotion path; None when not on it
    raw_names: Mapped[list[Any]] = mapped_column(default=list)  # raw names seen that map here


# --- source code --------------------------------------------------------------------------


class Commit(Base):
    __tablename__ = "commit"
    __table_args__ = (
        natural_key("repo_id", "sha"),
        Index("ix_commit_changed", "changed_at"),
        Index("ix_commit_svn_line", "repo_id", "svn_line", "svn_revision"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repo.id"))
    sha: Mapped[str] = mapped_column(Sha)
    author_name: Mapped[str | None] = mapped_column(Name)
    author_email: Mapped[str | None] = mapped_column(Name)
    authored_at: Mapped[datetime | None]
    committed_at: Mapped[datetime | None]
    title: Mapped[str | None] = mapped_column(Text)
    additions: Mapped[int | None]
    deletions: Mapped[int | None]
    is_merge: Mapped[bool] = mapped_column(Boolean, default=False)
    # Subversion: the revision (an `r<n>` commit, or a git-svn commit's `git-svn-id:`) and its line
    # (`trunk`, `branches/<name>`, `tags/<name>`)
    svn_revision: Mapped[int | None]
    svn_line: Mapped[str | None] = mapped_column(Name)
    changed_at: Mapped[datetime | None] = changed()


class CommitParent(Base):
    __tablename__ = "commit_parent"
    __table_args__ = (
        natural_key("repo_id", "sha", "parent_sha"),
        Index("ix_commit_parent_repo_parent", "repo_id", "parent_sha"),
        Index("ix_commit_parent_changed", "changed_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repo.id"))
    sha: Mapped[str] = mapped_column(Sha)
    parent_sha: Mapped[str] = mapped_column(Sha)
    position: Mapped[int] = mapped_column(default=0)  # 0 = first parent
    changed_at: Mapped[datetime | None] = changed()


class Branch(Base):
    __tablename__ = "branch"
    __table_args__ = (natural_key("repo_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repo.id"))
    name: Mapped[str] = mapped_column(Name)
    protected: Mapped[bool] = mapped_column(default=False)
    is_default: Mapped[bool] = mapped_column(default=False)
    head_sha: Mapped[str | None] = mapped_column(Sha)
    first_seen_at: Mapped[datetime | None] = kept()
    last_commit_at: Mapped[datetime | None]
    merged_at: Mapped[datetime | None]


class MergeRequest(Base):
    __tablename__ = "merge_request"
    __table_args__ = (
        natural_key("repo_id", "iid"),
        Index("ix_merge_request_repo_merge_sha", "repo_id", "merge_commit_sha"),
        Index("ix_merge_request_repo_squash_sha", "repo_id", "squash_commit_sha"),
        Index("ix_merge_request_repo_merged_at", "repo_id", "merged_at"),
        Index("ix_merge_request_repo_head_sha", "repo_id", "head_sha"),
        Index("ix_merge_request_repo_source_branch", "repo_id", "source_branch"),
        Index("ix_merge_request_changed", "changed_at"),
        Index("ix_merge_request_state_released", "state", "released_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repo.id"))
    iid: Mapped[int]
    external_id: Mapped[str | None] = mapped_column(Name)
    title: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Name)
    source_branch: Mapped[str | None] = mapped_column(Name)
    target_branch: Mapped[str | None] = mapped_column(Name)
    state: Mapped[str] = mapped_column(String(16))  # opened, merged, closed, locked
    draft: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    merged_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    merged_by: Mapped[str | None] = mapped_column(Name)
    merge_commit_sha: Mapped[str | None] = mapped_column(Sha)
    squash_commit_sha: Mapped[str | None] = mapped_column(Sha)
    head_sha: Mapped[str | None] = mapped_column(Sha)
    squash: Mapped[bool] = mapped_column(default=False)
    approvals: Mapped[int | None]
    first_review_at: Mapped[datetime | None]
    web_url: Mapped[str | None] = mapped_column(Url)
    changed_at: Mapped[datetime | None] = changed()
    # derived (analytics/first_commits.py): the earliest authored time of its commits (where a
    # squash commit's lead time, the coding stage and a feature branch's life start)
    first_commit_at: Mapped[datetime | None]
    # derived (analytics/releases.py): the first finish of a production-tier deployment that
    # brought the merge or squash commit (fast-forward: the head); None while none has
    released_at: Mapped[datetime | None]


class MrCommit(Base):
    __tablename__ = "mr_commit"
    __table_args__ = (
        natural_key("repo_id", "iid", "sha"),
        Index("ix_mr_commit_sha", "repo_id", "sha"),
        Index("ix_mr_commit_changed", "changed_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repo.id"))
    iid: Mapped[int]
    sha: Mapped[str] = mapped_column(Sha)
    changed_at: Mapped[datetime | None] = changed()


# --- builds -------------------------------------------------------------------------------


class Pipeline(Base):
    __tablename__ = "pipeline"
    __table_args__ = (
        natural_key("source_id", "external_id"),
        Index("ix_pipeline_repo_ref_finished", "repo_id", "ref", "finished_at"),
        Index("ix_pipeline_repo_sha", "repo_id", "sha"),
        Index("ix_pipeline_repo_finished", "repo_id", "finished_at"),  # derive's day rollups
        Index("ix_pipeline_finished", "finished_at"),
        Index("ix_pipeline_changed", "changed_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    external_id: Mapped[str] = mapped_column(Name)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repo.id"))
    job_name: Mapped[str | None] = mapped_column(Name)  # Jenkins: the job that built it
    ref: Mapped[str | None] = mapped_column(Name)
    sha: Mapped[str | None] = mapped_column(Sha)
    status: Mapped[str] = mapped_column(String(16))
    raw_status: Mapped[str | None] = mapped_column(String(32))
    trigger: Mapped[str | None] = mapped_column(
        String(64)
    )  # push, merge_request_event, schedule, ...
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    queued_s: Mapped[float | None] = mapped_column(Float)
    web_url: Mapped[str | None] = mapped_column(Url)
    changed_at: Mapped[datetime | None] = changed()  # derive re-rolls up the pipeline's day


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        natural_key("source_id", "external_id"),
        Index("ix_job_pipeline", "source_id", "pipeline_external_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    external_id: Mapped[str] = mapped_column(Name)
    pipeline_external_id: Mapped[str | None] = mapped_column(Name)
    name: Mapped[str] = mapped_column(Name)
    stage: Mapped[str | None] = mapped_column(Name)
    status: Mapped[str] = mapped_column(String(16))
    raw_status: Mapped[str | None] = mapped_column(String(32))
    allow_failure: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    queued_s: Mapped[float | None] = mapped_column(Float)
    web_url: Mapped[str | None] = mapped_column(Url)


class TestRun(Base):
    __tablename__ = "test_run"
    __test__ = False  # not a pytest class
    __table_args__ = (
        natural_key("source_id", "pipeline_external_id", "suite"),
        Index("ix_test_run_changed", "changed_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    pipeline_external_id: Mapped[str] = mapped_column(Name)
    suite: Mapped[str] = mapped_column(Name)
    total: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    duration_s: Mapped[float | None] = mapped_column(Float)
    changed_at: Mapped[datetime | None] = changed()  # derive re-rolls up its pipeline's day


# --- images and deployments ---------------------------------------------------------------


class Image(Base):
    __tablename__ = "image"
    __table_args__ = (
        natural_key("digest"),
        Index("ix_image_revision", "revision"),
        Index("ix_image_index_digest", "index_digest"),
        Index("ix_image_changed", "changed_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(100))
    repository: Mapped[str] = mapped_column(Name)
    media_type: Mapped[str | None] = mapped_column(Name)
    pushed_at: Mapped[datetime | None]
    revision: Mapped[str | None] = mapped_column(Sha)  # the source commit, never a config digest
    revision_origin: Mapped[str | None] = mapped_column(String(16))  # provenance|label|build|tag
    source_repository: Mapped[str | None] = mapped_column(Url)  # org.opencontainers.image.source
    built_by_pipeline: Mapped[str | None] = mapped_column(Name)  # "<source>:<pipeline external id>"
    index_digest: Mapped[str | None] = mapped_column(String(100))  # set on platform images
    platform: Mapped[str | None] = mapped_column(String(64))  # os/arch[/variant]
    changed_at: Mapped[datetime | None] = changed()  # late images re-resolve deployments


class ImageTag(Base):
    __tablename__ = "image_tag"
    __table_args__ = (
        natural_key("repository", "tag", "digest", "seen_at"),
        Index("ix_image_tag_digest", "digest"),
        Index("ix_image_tag_changed", "changed_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    repository: Mapped[str] = mapped_column(Name)
    tag: Mapped[str] = mapped_column(Name)
    digest: Mapped[str] = mapped_column(String(100))
    seen_at: Mapped[datetime]  # when the tag was first seen pointing at this digest
    last_seen_at: Mapped[datetime | None] = volatile()
    changed_at: Mapped[datetime | None] = changed()  # late tag history re-resolves deployments


class ImageRepository(Base):
    """A registry repository and the service whose images it holds (linked by derive: the
    service's `image_repositories` setting, else the longest service prefix it is under)."""

    __tablename__ = "image_repository"
    __table_args__ = (natural_key("repository"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    repository: Mapped[str] = mapped_column(Name)
    service_id: Mapped[int | None] = ref("service")
    linked_by: Mapped[str | None] = mapped_column(String(16))  # config | prefix


class Deployment(Base):
    __tablename__ = "deployment"
    __table_args__ = (
        natural_key("source_id", "external_id"),
        Index("ix_deployment_service_env_finished", "service_id", "environment_id", "finished_at"),
        Index("ix_deployment_digest", "image_digest"),
        Index("ix_deployment_finished", "finished_at"),
        Index("ix_deployment_changed", "changed_at"),
        # the deployments of a revision or an image reference (late image data, derive)
        Index("ix_deployment_sha", "sha"),
        Index("ix_deployment_image_ref", "image_ref"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    external_id: Mapped[str] = mapped_column(Name)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"))
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("environment.id"))
    raw_environment: Mapped[str | None] = mapped_column(Name)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repo.id"))
    pipeline_external_id: Mapped[str | None] = mapped_column(Name)
    status: Mapped[str] = mapped_column(String(16))
    raw_status: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    sha: Mapped[str | None] = mapped_column(Sha)
    ref: Mapped[str | None] = mapped_column(Name)
    image_digest: Mapped[str | None] = mapped_column(String(100))
    image_ref: Mapped[str | None] = mapped_column(Url)
    image_resolution: Mapped[str] = mapped_column(String(16), default="none")
    kind: Mapped[str] = mapped_column(String(16), default="app")  # app, schema, config
    schema_version: Mapped[str | None] = mapped_column(Name)
    deployer: Mapped[str | None] = mapped_column(Name)
    url: Mapped[str | None] = mapped_column(Url)
    changed_at: Mapped[datetime | None] = changed()  # derive re-rolls up the attempt's day


class ObservedWorkload(Base):
    __tablename__ = "observed_workload"
    __table_args__ = (natural_key("cluster", "namespace", "workload", "revision"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    cluster: Mapped[str] = mapped_column(Name)
    namespace: Mapped[str] = mapped_column(Name)
    workload: Mapped[str] = mapped_column(Name)
    replica_set: Mapped[str | None] = mapped_column(Name)
    observed_at: Mapped[datetime]  # when the revision began running (collectors/kubernetes.py)
    status: Mapped[str | None] = mapped_column(String(16))  # success | failed | running
    finished_at: Mapped[datetime | None]  # when it became available
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("environment.id"))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"))
    images: Mapped[list[Any]] = mapped_column(default=list)  # image references as written
    digests: Mapped[list[Any]] = mapped_column(default=list)  # resolved from Pod imageIDs
    revision: Mapped[str | None] = mapped_column(String(32))
    ready: Mapped[bool] = mapped_column(default=False)


class Incident(Base):
    __tablename__ = "incident"
    __table_args__ = (
        natural_key("source_id", "external_id"),
        Index("ix_incident_service_opened", "service_id", "opened_at"),
        Index("ix_incident_changed", "changed_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    external_id: Mapped[str] = mapped_column(Name)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"))
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("environment.id"))
    title: Mapped[str | None] = mapped_column(Text)
    severity: Mapped[str | None] = mapped_column(String(32))
    opened_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    # an explicit link to the deployment that caused it, by the deployment's natural key
    deployment_source_id: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    deployment_external_id: Mapped[str | None] = mapped_column(Name)
    url: Mapped[str | None] = mapped_column(Url)
    # from trackers (Jira, Zentao, PagerDuty; collectors/trackers.py)
    key: Mapped[str | None] = mapped_column(Name)  # PAY-12, bug-45, Q1W2E3
    status: Mapped[str | None] = mapped_column(
        String(16)
    )  # open | acknowledged | resolved | closed
    raw_status: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[str | None] = mapped_column(String(32))
    acknowledged_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    raw_service: Mapped[str | None] = mapped_column(Name)  # the value the service mapping read
    # explicit links as the tracker gives them; derive resolves them to a production deployment
    # of the incident's service, and a resolved one wins over the time window
    linked_deployment: Mapped[str | None] = mapped_column(Name)
    linked_pipeline: Mapped[str | None] = mapped_column(Name)
    linked_sha: Mapped[str | None] = mapped_column(Sha)
    linked_merge_request: Mapped[str | None] = mapped_column(Name)  # iid, or path!iid
    # the incident keys and URL paths its own text names (title, description; space-separated,
    # `warehouse.references.incident_mentions`); derive counts incidents naming each other once:
    # `duplicate_of` is the incident of the group that is counted (docs/METRICS.md)
    mentions: Mapped[str | None] = mapped_column(Text)
    duplicate_of: Mapped[int | None] = mapped_column(info={"refers": "incident"})
    changed_at: Mapped[datetime | None] = changed()  # derive recomputes its service's failures
    # derive: the service whose change failures counted it last (one it moved away from is
    # recomputed too)
    failure_service_id: Mapped[int | None] = mapped_column(info={"refers": "service"})


# --- work items (Jira, Zentao) ------------------------------------------------------------


class WorkItem(Base):
    """A requirement, bug or task from a tracker (not an incident: those are `incident` rows)."""

    __tablename__ = "work_item"
    __table_args__ = (
        natural_key("source_id", "external_id"),
        Index("ix_work_item_key", "key"),
        Index("ix_work_item_service_created", "service_id", "created_at"),
        Index("ix_work_item_changed", "changed_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    external_id: Mapped[str] = mapped_column(Name)
    key: Mapped[str] = mapped_column(Name)  # PAY-12 (Jira), story-12 / bug-45 / task-7 (Zentao)
    kind: Mapped[str] = mapped_column(String(16))  # requirement | bug | task
    raw_kind: Mapped[str | None] = mapped_column(Name)
    title: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Name)  # the tracker's status, as it names it
    status_category: Mapped[str] = mapped_column(String(16))  # todo | in_progress | done
    priority: Mapped[str | None] = mapped_column(String(32))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id"))
    raw_service: Mapped[str | None] = mapped_column(Name)  # the value the service mapping read
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]  # first move out of the todo category
    resolved_at: Mapped[datetime | None]  # last move into done (None while open: reopened)
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    url: Mapped[str | None] = mapped_column(Url)
    changed_at: Mapped[datetime | None] = changed()  # new items' keys are matched incrementally


class WorkItemTransition(Base):
    """One status change of a work item (or a tracker incident), from its history."""

    __tablename__ = "work_item_transition"
    __table_args__ = (natural_key("source_id", "item", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    item: Mapped[str] = mapped_column(Name)  # the work item's external id (its natural key)
    external_id: Mapped[str] = mapped_column(Name)  # the history entry's id
    at: Mapped[datetime]
    from_status: Mapped[str | None] = mapped_column(Name)
    to_status: Mapped[str | None] = mapped_column(Name)
    from_category: Mapped[str | None] = mapped_column(String(16))
    to_category: Mapped[str | None] = mapped_column(String(16))
    author: Mapped[str | None] = mapped_column(Name)


class WorkItemLink(Base):
    """A work item <-> change link: from the tracker itself (`origin` tracker) or from references
    in our own data (`origin` reference: keys in MR titles, source branches, commit messages;
    written by derive)."""

    __tablename__ = "work_item_link"
    __table_args__ = (
        natural_key("source_id", "item", "kind", "repo_path", "target"),
        Index("ix_work_item_link_target", "kind", "target"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))  # the work item's source
    item: Mapped[str] = mapped_column(Name)  # the work item's external id (its natural key)
    kind: Mapped[str] = mapped_column(String(16))  # commit | merge_request
    repo_path: Mapped[str] = mapped_column(Name, default="")  # "" when the tracker names none
    target: Mapped[str] = mapped_column(Name)  # a sha, or an MR's iid
    origin: Mapped[str] = mapped_column(String(16))  # tracker | reference


class CodeAnalysis(Base):
    """One SonarQube analysis of a commit (collectors/sonarqube.py, or its webhook) with the
    quality gate as it was computed then. Keyed by project and analysis time, which the poller
    and the webhook both know (a webhook does not carry the analysis key)."""

    __tablename__ = "code_analysis"
    __table_args__ = (
        natural_key("source_id", "project_key", "analysed_at"),
        Index("ix_code_analysis_revision", "revision"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    project_key: Mapped[str] = mapped_column(Name)
    analysed_at: Mapped[datetime]
    analysis_key: Mapped[str | None] = mapped_column(Name)
    repo_id: Mapped[int | None] = ref("repo")
    repo_path: Mapped[str | None] = mapped_column(Name)  # from config, else the project key
    branch: Mapped[str | None] = mapped_column(Name)  # None for a pull request's analysis
    pull_request: Mapped[str | None] = mapped_column(Name)
    revision: Mapped[str | None] = mapped_column(Sha)
    gate_status: Mapped[str] = mapped_column(String(16))  # passed | failed | none
    raw_gate_status: Mapped[str | None] = mapped_column(String(16))  # OK | WARN | ERROR | NONE
    failing_conditions: Mapped[list[Any]] = mapped_column(default=list)
    project_version: Mapped[str | None] = mapped_column(Name)
    ce_task_id: Mapped[str | None] = mapped_column(Name)
    url: Mapped[str | None] = mapped_column(Url)


# --- bookkeeping --------------------------------------------------------------------------


class RawPayload(Base):
    __tablename__ = "raw_payload"
    __table_args__ = (natural_key("source_id", "stream", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    stream: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(Name)
    # zlib-compressed JSON, compared through its hash; None once `[warehouse]
    # raw_retention_days` dropped the body of an accepted payload (warehouse.raw.prune_raw)
    payload: Mapped[Any | None] = volatile(type_=CompressedJson)
    hash: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical JSON
    fetched_at: Mapped[datetime] = volatile()
    rejected: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)


class SyncState(Base):
    __tablename__ = "sync_state"
    __table_args__ = (natural_key("source_id", "stream", "partition"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    stream: Mapped[str] = mapped_column(String(64))
    partition: Mapped[str] = mapped_column(Name, default="")
    cursor: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="never")  # never|running|ok|failed
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    requests: Mapped[int] = mapped_column(default=0)
    rows: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(Name)
    lease_expires_at: Mapped[datetime | None]


# --- derived (rebuilt by `cdmetrics derive`) ----------------------------------------------


class DeploymentChain(Base):
    """Each successful deployment linked to the previous one of its service and environment."""

    __tablename__ = "deployment_chain"
    __table_args__ = (
        natural_key("deployment_id"),
        Index("ix_deployment_chain_service_finished", "service_id", "is_production", "finished_at"),
        Index("ix_deployment_chain_production_finished", "is_production", "finished_at"),
        Index("ix_deployment_chain_baseline", "baseline"),  # the chains' first: few
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id", ondelete="CASCADE"))
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id"))
    is_production: Mapped[bool] = mapped_column(default=False)
    finished_at: Mapped[datetime]
    previous_deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployment.id"))
    baseline: Mapped[bool] = mapped_column(
        default=False
    )  # the first of its service and environment
    rollback: Mapped[bool] = mapped_column(default=False)
    changes: Mapped[int] = mapped_column(default=0)


class DeploymentChange(Base):
    __tablename__ = "deployment_change"
    __table_args__ = (natural_key("deployment_id", "sha"), Index("ix_deployment_change_sha", "sha"))
    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id", ondelete="CASCADE"))
    sha: Mapped[str] = mapped_column(Sha)
    started_at: Mapped[datetime | None]  # where lead time starts (authored, or first MR commit)
    is_merge: Mapped[bool] = mapped_column(default=False)
    first_in_environment: Mapped[bool] = mapped_column(default=True)
    # the first deployment to any production-tier environment (region) that carried it
    first_in_production: Mapped[bool] = mapped_column(default=False)


class CommitGeneration(Base):
    """A commit's generation in its repository's graph, maintained by derive: 1 + the largest
    generation of its parents (a commit without parent links, or a parent the warehouse has no
    links of, is generation 1; only commits with parent links have a row). A commit's ancestors
    all have smaller generations, so a walk in decreasing generation stops as soon as what it
    looks for cannot lie deeper (`analytics.ancestry`)."""

    __tablename__ = "commit_generation"
    __table_args__ = (
        natural_key("repo_id", "sha"),
        Index("ix_commit_generation_repo_generation", "repo_id", "generation"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repo.id"))
    sha: Mapped[str] = mapped_column(Sha)
    generation: Mapped[int]


class DeriveState(Base):
    """When a derive last ran (`name` "derive"): data changed after its start may have arrived after
    the deployments it derived (late commits, merge requests), so the next derive re-derives them.
    `name` "released": the start of the derive that last refreshed `merge_request.released_at`;
    `name` "generations": of the derive that last brought `commit_generation` up to date."""

    __tablename__ = "derive_state"
    __table_args__ = (natural_key("name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Name)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class RollupDay(Base):
    """One (service, environment, local day in `[sync] timezone`) of the metrics, maintained by
    derive (`analytics.rollups`): production deployments and their failures, the changes and merge
    requests that first reached production there, finished attempts. Value lists are sorted, so
    medians and p90s over any set of days are exact (docs/ARCHITECTURE.md#rollups)."""

    __tablename__ = "rollup_day"
    __table_args__ = (
        natural_key("service_id", "environment_id", "day"),
        Index("ix_rollup_day_day", "day"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id"))
    day: Mapped[date]
    deployments: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    incident: Mapped[int] = mapped_column(default=0)
    failed_rollback: Mapped[int] = mapped_column(default=0)
    hotfix: Mapped[int] = mapped_column(default=0)
    rework: Mapped[int] = mapped_column(default=0)
    recovery_hours: Mapped[list[Any]] = mapped_column(default=list)
    changes: Mapped[int] = mapped_column(default=0)  # counted in lead time, started or not
    lead_hours: Mapped[list[Any]] = mapped_column(default=list)
    merge_requests: Mapped[int] = mapped_column(default=0)
    stages: Mapped[dict[str, Any]] = mapped_column(default=dict)  # stage -> sorted hours
    dropped: Mapped[dict[str, Any]] = mapped_column(default=dict)  # stage -> negative spans
    attempts_success: Mapped[int] = mapped_column(default=0)
    attempts_failed: Mapped[int] = mapped_column(default=0)


class RollupPipelineDay(Base):
    """One (repository, default-branch flag, local day) of build health, maintained by derive:
    counts per status, sorted durations and queue times, failed tests, and for the default branch
    the day's first and last decided pipeline with the red and total time between them."""

    __tablename__ = "rollup_pipeline_day"
    __table_args__ = (
        natural_key("repo_id", "default_branch", "day"),
        Index("ix_rollup_pipeline_day_day", "day"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repo.id"))
    default_branch: Mapped[bool]
    day: Mapped[date]
    pipelines: Mapped[int] = mapped_column(default=0)
    statuses: Mapped[dict[str, Any]] = mapped_column(default=dict)  # status -> pipelines
    durations: Mapped[list[Any]] = mapped_column(default=list)
    queued: Mapped[list[Any]] = mapped_column(default=list)
    failed_tests: Mapped[int] = mapped_column(default=0)
    with_failed_tests: Mapped[int] = mapped_column(default=0)
    first_at: Mapped[datetime | None]  # decided default-branch pipelines only
    first_failed: Mapped[bool | None]
    last_at: Mapped[datetime | None]
    last_failed: Mapped[bool | None]
    red_us: Mapped[int] = mapped_column(BigInteger, default=0)
    span_us: Mapped[int] = mapped_column(BigInteger, default=0)


class RollupSuiteDay(Base):
    """One (repository, test suite, local day) of test results, maintained by derive beside the
    pipeline days: the suite's runs in the day's finished pipelines, those with failed tests,
    the failed tests, and the last failing run's pipeline finish (the Builds page's failing
    tests)."""

    __tablename__ = "rollup_suite_day"
    __table_args__ = (
        natural_key("repo_id", "suite", "day"),
        Index("ix_rollup_suite_day_day", "day"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repo.id"))
    suite: Mapped[str] = mapped_column(Name)
    day: Mapped[date]
    runs: Mapped[int] = mapped_column(default=0)
    failing_runs: Mapped[int] = mapped_column(default=0)
    failed_tests: Mapped[int] = mapped_column(default=0)
    last_failed_at: Mapped[datetime | None]


class RollupState(Base):
    """What the rollups were built with (`name` "rollup"): the time zone of their days and the
    change-failure rules of their rework; metrics asked in another zone or with other rules read
    rows instead."""

    __tablename__ = "rollup_state"
    __table_args__ = (natural_key("name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Name)
    timezone: Mapped[str] = mapped_column(Name)
    rules: Mapped[str] = mapped_column(Text)
    built_at: Mapped[datetime | None]


class ChangeFailure(Base):
    __tablename__ = "change_failure"
    __table_args__ = (natural_key("deployment_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id", ondelete="CASCADE"))
    incident: Mapped[bool] = mapped_column(default=False)
    rollback: Mapped[bool] = mapped_column(default=False)
    hotfix: Mapped[bool] = mapped_column(default=False)
    recovered_at: Mapped[datetime | None]
    recovered_by_deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployment.id"))


class DriftSnapshot(Base):
    __tablename__ = "drift_snapshot"
    __table_args__ = (
        natural_key(
            "taken_at", "service_id", "upstream_environment_id", "downstream_environment_id"
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    taken_at: Mapped[datetime]
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"))
    upstream_environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id"))
    downstream_environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id"))
    upstream_digest: Mapped[str | None] = mapped_column(String(100))
    downstream_digest: Mapped[str | None] = mapped_column(String(100))
    commits_behind: Mapped[int | None]
    drift_age_s: Mapped[float | None] = mapped_column(Float)
    downstream_ever_upstream: Mapped[bool | None]


class PolicyViolation(Base):
    __tablename__ = "policy_violation"
    __table_args__ = (
        natural_key("policy", "subject"),
        Index("ix_policy_violation_occurred", "occurred_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    policy: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Name)  # stable key of the offending object
    severity: Mapped[str] = mapped_column(String(8))  # error, warn, info
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"))
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("environment.id"))
    message: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Url)
    occurred_at: Mapped[datetime]  # when the offending event happened (docs/POLICIES.md)
    first_seen_at: Mapped[datetime] = kept()
    last_seen_at: Mapped[datetime | None] = volatile()
    resolved_at: Mapped[datetime | None]


metadata = Base.metadata
