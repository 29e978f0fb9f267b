"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 10:35:37.329312
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import warehouse.types

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('environment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('position', sa.Integer(), nullable=True),
    sa.Column('raw_names', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_environment')),
    sa.UniqueConstraint('name', name=op.f('uq_environment_name'))
    )
    op.create_table('image',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=100), nullable=False),
    sa.Column('repository', sa.String(length=255), nullable=False),
    sa.Column('media_type', sa.String(length=255), nullable=True),
    sa.Column('pushed_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revision', sa.String(length=64), nullable=True),
    sa.Column('revision_origin', sa.String(length=16), nullable=True),
    sa.Column('source_repository', sa.String(length=1024), nullable=True),
    sa.Column('built_by_pipeline', sa.String(length=255), nullable=True),
    sa.Column('index_digest', sa.String(length=100), nullable=True),
    sa.Column('platform', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image')),
    sa.UniqueConstraint('digest', name=op.f('uq_image_digest'))
    )
    with op.batch_alter_table('image', schema=None) as batch_op:
        batch_op.create_index('ix_image_index_digest', ['index_digest'], unique=False)
        batch_op.create_index('ix_image_revision', ['revision'], unique=False)

    op.create_table('image_tag',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repository', sa.String(length=255), nullable=False),
    sa.Column('tag', sa.String(length=255), nullable=False),
    sa.Column('digest', sa.String(length=100), nullable=False),
    sa.Column('seen_at', warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image_tag')),
    sa.UniqueConstraint('repository', 'tag', 'digest', 'seen_at', name=op.f('uq_image_tag_repository_tag_digest_seen_at'))
    )
    with op.batch_alter_table('image_tag', schema=None) as batch_op:
        batch_op.create_index('ix_image_tag_digest', ['digest'], unique=False)

    op.create_table('source',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('base_url', sa.String(length=1024), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source')),
    sa.UniqueConstraint('name', name=op.f('uq_source_name'))
    )
    op.create_table('team',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team')),
    sa.UniqueConstraint('name', name=op.f('uq_team_name'))
    )
    op.create_table('job',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('pipeline_external_id', sa.String(length=255), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('stage', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('raw_status', sa.String(length=32), nullable=True),
    sa.Column('allow_failure', sa.Boolean(), nullable=False),
    sa.Column('created_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('queued_s', sa.Float(), nullable=True),
    sa.Column('web_url', sa.String(length=1024), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_job_source_id_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job')),
    sa.UniqueConstraint('source_id', 'external_id', name=op.f('uq_job_source_id_external_id'))
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index('ix_job_pipeline', ['source_id', 'pipeline_external_id'], unique=False)

    op.create_table('raw_payload',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('stream', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('fetched_at', warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rejected', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_raw_payload_source_id_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_raw_payload')),
    sa.UniqueConstraint('source_id', 'stream', 'external_id', name=op.f('uq_raw_payload_source_id_stream_external_id'))
    )
    op.create_table('repo',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('default_branch', sa.String(length=255), nullable=True),
    sa.Column('web_url', sa.String(length=1024), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_repo_source_id_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_repo')),
    sa.UniqueConstraint('source_id', 'external_id', name=op.f('uq_repo_source_id_external_id'))
    )
    with op.batch_alter_table('repo', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_repo_source_id'), ['source_id'], unique=False)

    op.create_table('sync_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('stream', sa.String(length=64), nullable=False),
    sa.Column('partition', sa.String(length=255), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=255), nullable=True),
    sa.Column('lease_expires_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_sync_state_source_id_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_state')),
    sa.UniqueConstraint('source_id', 'stream', 'partition', name=op.f('uq_sync_state_source_id_stream_partition'))
    )
    op.create_table('test_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('pipeline_external_id', sa.String(length=255), nullable=False),
    sa.Column('suite', sa.String(length=255), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_test_run_source_id_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_test_run')),
    sa.UniqueConstraint('source_id', 'pipeline_external_id', 'suite', name=op.f('uq_test_run_source_id_pipeline_external_id_suite'))
    )
    op.create_table('branch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('protected', sa.Boolean(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('head_sha', sa.String(length=64), nullable=True),
    sa.Column('first_seen_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_commit_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('merged_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_branch_repo_id_repo')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_branch')),
    sa.UniqueConstraint('repo_id', 'name', name=op.f('uq_branch_repo_id_name'))
    )
    op.create_table('commit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.Integer(), nullable=False),
    sa.Column('sha', sa.String(length=64), nullable=False),
    sa.Column('author_name', sa.String(length=255), nullable=True),
    sa.Column('author_email', sa.String(length=255), nullable=True),
    sa.Column('authored_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('committed_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('additions', sa.Integer(), nullable=True),
    sa.Column('deletions', sa.Integer(), nullable=True),
    sa.Column('is_merge', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_commit_repo_id_repo')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commit')),
    sa.UniqueConstraint('repo_id', 'sha', name=op.f('uq_commit_repo_id_sha'))
    )
    op.create_table('commit_parent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.Integer(), nullable=False),
    sa.Column('sha', sa.String(length=64), nullable=False),
    sa.Column('parent_sha', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_commit_parent_repo_id_repo')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commit_parent')),
    sa.UniqueConstraint('repo_id', 'sha', 'parent_sha', name=op.f('uq_commit_parent_repo_id_sha_parent_sha'))
    )
    with op.batch_alter_table('commit_parent', schema=None) as batch_op:
        batch_op.create_index('ix_commit_parent_repo_parent', ['repo_id', 'parent_sha'], unique=False)

    op.create_table('merge_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.Integer(), nullable=False),
    sa.Column('iid', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('author', sa.String(length=255), nullable=True),
    sa.Column('source_branch', sa.String(length=255), nullable=True),
    sa.Column('target_branch', sa.String(length=255), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('draft', sa.Boolean(), nullable=False),
    sa.Column('created_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('merged_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('merged_by', sa.String(length=255), nullable=True),
    sa.Column('merge_commit_sha', sa.String(length=64), nullable=True),
    sa.Column('squash_commit_sha', sa.String(length=64), nullable=True),
    sa.Column('head_sha', sa.String(length=64), nullable=True),
    sa.Column('squash', sa.Boolean(), nullable=False),
    sa.Column('approvals', sa.Integer(), nullable=True),
    sa.Column('first_review_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('web_url', sa.String(length=1024), nullable=True),
    sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_merge_request_repo_id_repo')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merge_request')),
    sa.UniqueConstraint('repo_id', 'iid', name=op.f('uq_merge_request_repo_id_iid'))
    )
    with op.batch_alter_table('merge_request', schema=None) as batch_op:
        batch_op.create_index('ix_merge_request_repo_merge_sha', ['repo_id', 'merge_commit_sha'], unique=False)
        batch_op.create_index('ix_merge_request_repo_merged_at', ['repo_id', 'merged_at'], unique=False)
        batch_op.create_index('ix_merge_request_repo_squash_sha', ['repo_id', 'squash_commit_sha'], unique=False)

    op.create_table('mr_commit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.Integer(), nullable=False),
    sa.Column('iid', sa.Integer(), nullable=False),
    sa.Column('sha', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_mr_commit_repo_id_repo')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mr_commit')),
    sa.UniqueConstraint('repo_id', 'iid', 'sha', name=op.f('uq_mr_commit_repo_id_iid_sha'))
    )
    with op.batch_alter_table('mr_commit', schema=None) as batch_op:
        batch_op.create_index('ix_mr_commit_sha', ['repo_id', 'sha'], unique=False)

    op.create_table('pipeline',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('repo_id', sa.Integer(), nullable=True),
    sa.Column('job_name', sa.String(length=255), nullable=True),
    sa.Column('ref', sa.String(length=255), nullable=True),
    sa.Column('sha', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('raw_status', sa.String(length=32), nullable=True),
    sa.Column('trigger', sa.String(length=64), nullable=True),
    sa.Column('created_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('queued_s', sa.Float(), nullable=True),
    sa.Column('web_url', sa.String(length=1024), nullable=True),
    sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_pipeline_repo_id_repo')),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_pipeline_source_id_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline')),
    sa.UniqueConstraint('source_id', 'external_id', name=op.f('uq_pipeline_source_id_external_id'))
    )
    with op.batch_alter_table('pipeline', schema=None) as batch_op:
        batch_op.create_index('ix_pipeline_repo_ref_finished', ['repo_id', 'ref', 'finished_at'], unique=False)
        batch_op.create_index('ix_pipeline_repo_sha', ['repo_id', 'sha'], unique=False)

    op.create_table('service',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=True),
    sa.Column('repo_id', sa.Integer(), nullable=True),
    sa.Column('image_repository', sa.String(length=255), nullable=True),
    sa.Column('k8s_workload', sa.String(length=255), nullable=True),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_service_repo_id_repo')),
    sa.ForeignKeyConstraint(['team_id'], ['team.id'], name=op.f('fk_service_team_id_team')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service')),
    sa.UniqueConstraint('name', name=op.f('uq_service_name'))
    )
    with op.batch_alter_table('service', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_repo_id'), ['repo_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_service_team_id'), ['team_id'], unique=False)

    op.create_table('deployment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=True),
    sa.Column('environment_id', sa.Integer(), nullable=True),
    sa.Column('raw_environment', sa.String(length=255), nullable=True),
    sa.Column('repo_id', sa.Integer(), nullable=True),
    sa.Column('pipeline_external_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('raw_status', sa.String(length=32), nullable=True),
    sa.Column('created_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sha', sa.String(length=64), nullable=True),
    sa.Column('ref', sa.String(length=255), nullable=True),
    sa.Column('image_digest', sa.String(length=100), nullable=True),
    sa.Column('image_ref', sa.String(length=1024), nullable=True),
    sa.Column('image_resolution', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('schema_version', sa.String(length=255), nullable=True),
    sa.Column('deployer', sa.String(length=255), nullable=True),
    sa.Column('url', sa.String(length=1024), nullable=True),
    sa.ForeignKeyConstraint(['environment_id'], ['environment.id'], name=op.f('fk_deployment_environment_id_environment')),
    sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_deployment_repo_id_repo')),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_deployment_service_id_service')),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_deployment_source_id_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment')),
    sa.UniqueConstraint('source_id', 'external_id', name=op.f('uq_deployment_source_id_external_id'))
    )
    with op.batch_alter_table('deployment', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_digest', ['image_digest'], unique=False)
        batch_op.create_index('ix_deployment_service_env_finished', ['service_id', 'environment_id', 'finished_at'], unique=False)

    op.create_table('drift_snapshot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('taken_at', warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('upstream_environment_id', sa.Integer(), nullable=False),
    sa.Column('downstream_environment_id', sa.Integer(), nullable=False),
    sa.Column('upstream_digest', sa.String(length=100), nullable=True),
    sa.Column('downstream_digest', sa.String(length=100), nullable=True),
    sa.Column('commits_behind', sa.Integer(), nullable=True),
    sa.Column('drift_age_s', sa.Float(), nullable=True),
    sa.Column('downstream_ever_upstream', sa.Boolean(), nullable=True),
    sa.ForeignKeyConstraint(['downstream_environment_id'], ['environment.id'], name=op.f('fk_drift_snapshot_downstream_environment_id_environment')),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_drift_snapshot_service_id_service')),
    sa.ForeignKeyConstraint(['upstream_environment_id'], ['environment.id'], name=op.f('fk_drift_snapshot_upstream_environment_id_environment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_snapshot')),
    sa.UniqueConstraint('taken_at', 'service_id', 'upstream_environment_id', 'downstream_environment_id', name=op.f('uq_drift_snapshot_taken_at_service_id_upstream_environment_id_downstream_environment_id'))
    )
    op.create_table('incident',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=True),
    sa.Column('environment_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('severity', sa.String(length=32), nullable=True),
    sa.Column('opened_at', warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deployment_source_id', sa.Integer(), nullable=True),
    sa.Column('deployment_external_id', sa.String(length=255), nullable=True),
    sa.Column('url', sa.String(length=1024), nullable=True),
    sa.ForeignKeyConstraint(['deployment_source_id'], ['source.id'], name=op.f('fk_incident_deployment_source_id_source')),
    sa.ForeignKeyConstraint(['environment_id'], ['environment.id'], name=op.f('fk_incident_environment_id_environment')),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_incident_service_id_service')),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_incident_source_id_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incident')),
    sa.UniqueConstraint('source_id', 'external_id', name=op.f('uq_incident_source_id_external_id'))
    )
    op.create_table('observed_workload',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cluster', sa.String(length=255), nullable=False),
    sa.Column('namespace', sa.String(length=255), nullable=False),
    sa.Column('workload', sa.String(length=255), nullable=False),
    sa.Column('observed_at', warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=True),
    sa.Column('service_id', sa.Integer(), nullable=True),
    sa.Column('images', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('digests', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('revision', sa.String(length=32), nullable=True),
    sa.Column('ready', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environment.id'], name=op.f('fk_observed_workload_environment_id_environment')),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_observed_workload_service_id_service')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_observed_workload')),
    sa.UniqueConstraint('cluster', 'namespace', 'workload', 'observed_at', name=op.f('uq_observed_workload_cluster_namespace_workload_observed_at'))
    )
    op.create_table('policy_violation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('policy', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=True),
    sa.Column('environment_id', sa.Integer(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('url', sa.String(length=1024), nullable=True),
    sa.Column('first_seen_at', warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['environment_id'], ['environment.id'], name=op.f('fk_policy_violation_environment_id_environment')),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_policy_violation_service_id_service')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_violation')),
    sa.UniqueConstraint('policy', 'subject', name=op.f('uq_policy_violation_policy_subject'))
    )
    op.create_table('change_failure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('incident', sa.Boolean(), nullable=False),
    sa.Column('rollback', sa.Boolean(), nullable=False),
    sa.Column('hotfix', sa.Boolean(), nullable=False),
    sa.Column('recovered_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('recovered_by_deployment_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployment.id'], name=op.f('fk_change_failure_deployment_id_deployment'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recovered_by_deployment_id'], ['deployment.id'], name=op.f('fk_change_failure_recovered_by_deployment_id_deployment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_change_failure')),
    sa.UniqueConstraint('deployment_id', name=op.f('uq_change_failure_deployment_id'))
    )
    op.create_table('deployment_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('sha', sa.String(length=64), nullable=False),
    sa.Column('started_at', warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('is_merge', sa.Boolean(), nullable=False),
    sa.Column('first_in_environment', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployment.id'], name=op.f('fk_deployment_change_deployment_id_deployment'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_change')),
    sa.UniqueConstraint('deployment_id', 'sha', name=op.f('uq_deployment_change_deployment_id_sha'))
    )
    with op.batch_alter_table('deployment_change', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_change_sha', ['sha'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('deployment_change', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_change_sha')

    op.drop_table('deployment_change')
    op.drop_table('change_failure')
    op.drop_table('policy_violation')
    op.drop_table('observed_workload')
    op.drop_table('incident')
    op.drop_table('drift_snapshot')
    with op.batch_alter_table('deployment', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_service_env_finished')
        batch_op.drop_index('ix_deployment_digest')

    op.drop_table('deployment')
    with op.batch_alter_table('service', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_team_id'))
        batch_op.drop_index(batch_op.f('ix_service_repo_id'))

    op.drop_table('service')
    with op.batch_alter_table('pipeline', schema=None) as batch_op:
        batch_op.drop_index('ix_pipeline_repo_sha')
        batch_op.drop_index('ix_pipeline_repo_ref_finished')

    op.drop_table('pipeline')
    with op.batch_alter_table('mr_commit', schema=None) as batch_op:
        batch_op.drop_index('ix_mr_commit_sha')

    op.drop_table('mr_commit')
    with op.batch_alter_table('merge_request', schema=None) as batch_op:
        batch_op.drop_index('ix_merge_request_repo_squash_sha')
        batch_op.drop_index('ix_merge_request_repo_merged_at')
        batch_op.drop_index('ix_merge_request_repo_merge_sha')

    op.drop_table('merge_request')
    with op.batch_alter_table('commit_parent', schema=None) as batch_op:
        batch_op.drop_index('ix_commit_parent_repo_parent')

    op.drop_table('commit_parent')
    op.drop_table('commit')
    op.drop_table('branch')
    op.drop_table('test_run')
    op.drop_table('sync_state')
    with op.batch_alter_table('repo', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_repo_source_id'))

    op.drop_table('repo')
    op.drop_table('raw_payload')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_pipeline')

    op.drop_table('job')
    op.drop_table('team')
    op.drop_table('source')
    with op.batch_alter_table('image_tag', schema=None) as batch_op:
        batch_op.drop_index('ix_image_tag_digest')

    op.drop_table('image_tag')
    with op.batch_alter_table('image', schema=None) as batch_op:
        batch_op.drop_index('ix_image_revision')
        batch_op.drop_index('ix_image_index_digest')

    op.drop_table('image')
    op.drop_table('environment')
