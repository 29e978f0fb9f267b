"""incident gains changed_at (stamped by the upsert) and failure_service_id (the service whose
change failures counted it at the last derive), so derive recomputes change failures only for the
services new data touched; pipeline gains an index on (repo_id, finished_at), so derive rolls up
the days of the repositories with new pipelines by range reads

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 21:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0026'
down_revision: str | None = '0025'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed_at', warehouse.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('failure_service_id', sa.Integer(), nullable=True))
    op.create_index('ix_incident_changed', 'incident', ['changed_at'], unique=False)
    op.create_index(
        'ix_pipeline_repo_finished', 'pipeline', ['repo_id', 'finished_at'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_pipeline_repo_finished', table_name='pipeline')
    op.drop_index('ix_incident_changed', table_name='incident')
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.drop_column('failure_service_id')
        batch_op.drop_column('changed_at')
