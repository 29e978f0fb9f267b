"""trackers (Jira, Zentao, PagerDuty): incident gains key, statuses, priority, times, the raw
service field and explicit links; new work_item, work_item_transition and work_item_link

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 02:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INCIDENT_COLUMNS = (
    ('key', sa.String(255)),
    ('status', sa.String(16)),
    ('raw_status', sa.String(64)),
    ('priority', sa.String(32)),
    ('acknowledged_at', warehouse.types.UTCDateTime()),
    ('closed_at', warehouse.types.UTCDateTime()),
    ('updated_at', warehouse.types.UTCDateTime()),
    ('raw_service', sa.String(255)),
    ('linked_deployment', sa.String(255)),
    ('linked_pipeline', sa.String(255)),
    ('linked_sha', sa.String(64)),
    ('linked_merge_request', sa.String(255)),
)


def upgrade() -> None:
    with op.batch_alter_table('incident', schema=None) as batch_op:
        for name, type_ in INCIDENT_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    op.create_table(
        'work_item',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('external_id', sa.String(255), nullable=False),
        sa.Column('key', sa.String(255), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('raw_kind', sa.String(255), nullable=True),
        sa.Column('title', sa.Text(), nullable=True),
        sa.Column('status', sa.String(255), nullable=True),
        sa.Column('status_category', sa.String(16), nullable=False),
        sa.Column('priority', sa.String(32), nullable=True),
        sa.Column('service_id', sa.Integer(), nullable=True),
        sa.Column('team_id', sa.Integer(), nullable=True),
        sa.Column('raw_service', sa.String(255), nullable=True),
        sa.Column('created_at', warehouse.types.UTCDateTime(), nullable=False),
        sa.Column('started_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.Column('resolved_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.Column('closed_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.Column('updated_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.Column('url', sa.String(1024), nullable=True),
        sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_work_item_service_id_service')),
        sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_work_item_source_id_source')),
        sa.ForeignKeyConstraint(['team_id'], ['team.id'], name=op.f('fk_work_item_team_id_team')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_work_item')),
        sa.UniqueConstraint('source_id', 'external_id', name=op.f('uq_work_item_source_id_external_id')),
    )
    op.create_index('ix_work_item_key', 'work_item', ['key'], unique=False)
    op.create_index('ix_work_item_service_created', 'work_item', ['service_id', 'created_at'], unique=False)
    op.create_table(
        'work_item_transition',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('item', sa.String(255), nullable=False),
        sa.Column('external_id', sa.String(255), nullable=False),
        sa.Column('at', warehouse.types.UTCDateTime(), nullable=False),
        sa.Column('from_status', sa.String(255), nullable=True),
        sa.Column('to_status', sa.String(255), nullable=True),
        sa.Column('from_category', sa.String(16), nullable=True),
        sa.Column('to_category', sa.String(16), nullable=True),
        sa.Column('author', sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_work_item_transition_source_id_source')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_work_item_transition')),
        sa.UniqueConstraint(
            'source_id', 'item', 'external_id',
            name=op.f('uq_work_item_transition_source_id_item_external_id'),
        ),
    )
    op.create_table(
        'work_item_link',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('item', sa.String(255), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('repo_path', sa.String(255), nullable=False),
        sa.Column('target', sa.String(255), nullable=False),
        sa.Column('origin', sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_work_item_link_source_id_source')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_work_item_link')),
        sa.UniqueConstraint(
            'source_id', 'item', 'kind', 'repo_path', 'target',
            name=op.f('uq_work_item_link_source_id_item_kind_repo_path_target'),
        ),
    )
    op.create_index('ix_work_item_link_target', 'work_item_link', ['kind', 'target'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_work_item_link_target', table_name='work_item_link')
    op.drop_table('work_item_link')
    op.drop_table('work_item_transition')
    op.drop_index('ix_work_item_service_created', table_name='work_item')
    op.drop_index('ix_work_item_key', table_name='work_item')
    op.drop_table('work_item')
    with op.batch_alter_table('incident', schema=None) as batch_op:
        for name, _ in reversed(INCIDENT_COLUMNS):
            batch_op.drop_column(name)
