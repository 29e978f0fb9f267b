"""rollups: rollup_day per (service, environment, local day), rollup_pipeline_day per (repo,
default-branch flag, local day) and rollup_state, maintained by derive; deployment, pipeline and
test_run gain changed_at so derive knows which days new data touched

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 05:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0024'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAMPED = ('deployment', 'pipeline', 'test_run')


def upgrade() -> None:
    for table in STAMPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('changed_at', warehouse.types.UTCDateTime(), nullable=True))
        op.create_index(f'ix_{table}_changed', table, ['changed_at'], unique=False)
    json = warehouse.types.Json
    op.create_table(
        'rollup_day',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        *(
            sa.Column(name, sa.Integer(), nullable=False)
            for name in ('deployments', 'failed', 'incident', 'failed_rollback', 'hotfix', 'rework')
        ),
        sa.Column('recovery_hours', json, nullable=False),
        sa.Column('changes', sa.Integer(), nullable=False),
        sa.Column('lead_hours', json, nullable=False),
        sa.Column('merge_requests', sa.Integer(), nullable=False),
        sa.Column('stages', json, nullable=False),
        sa.Column('dropped', json, nullable=False),
        sa.Column('attempts_success', sa.Integer(), nullable=False),
        sa.Column('attempts_failed', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['environment_id'], ['environment.id'], name=op.f('fk_rollup_day_environment_id_environment')),
        sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_rollup_day_service_id_service')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_day')),
        sa.UniqueConstraint('service_id', 'environment_id', 'day', name=op.f('uq_rollup_day_service_id_environment_id_day')),
    )
    op.create_index('ix_rollup_day_day', 'rollup_day', ['day'], unique=False)
    op.create_table(
        'rollup_pipeline_day',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repo_id', sa.Integer(), nullable=False),
        sa.Column('default_branch', sa.Boolean(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('pipelines', sa.Integer(), nullable=False),
        sa.Column('statuses', json, nullable=False),
        sa.Column('durations', json, nullable=False),
        sa.Column('queued', json, nullable=False),
        sa.Column('failed_tests', sa.Integer(), nullable=False),
        sa.Column('with_failed_tests', sa.Integer(), nullable=False),
        sa.Column('first_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.Column('first_failed', sa.Boolean(), nullable=True),
        sa.Column('last_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.Column('last_failed', sa.Boolean(), nullable=True),
        sa.Column('red_us', sa.BigInteger(), nullable=False),
        sa.Column('span_us', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_rollup_pipeline_day_repo_id_repo')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_pipeline_day')),
        sa.UniqueConstraint('repo_id', 'default_branch', 'day', name=op.f('uq_rollup_pipeline_day_repo_id_default_branch_day')),
    )
    op.create_index('ix_rollup_pipeline_day_day', 'rollup_pipeline_day', ['day'], unique=False)
    op.create_table(
        'rollup_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('timezone', sa.String(255), nullable=False),
        sa.Column('rules', sa.Text(), nullable=False),
        sa.Column('built_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_state')),
        sa.UniqueConstraint('name', name=op.f('uq_rollup_state_name')),
    )


def downgrade() -> None:
    op.drop_table('rollup_state')
    op.drop_index('ix_rollup_pipeline_day_day', table_name='rollup_pipeline_day')
    op.drop_table('rollup_pipeline_day')
    op.drop_index('ix_rollup_day_day', table_name='rollup_day')
    op.drop_table('rollup_day')
    for table in reversed(STAMPED):
        op.drop_index(f'ix_{table}_changed', table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('changed_at')
