"""indexes for period filters

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:42:56.338283
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types  # noqa: F401

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('deployment', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_finished', ['finished_at'], unique=False)

    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.create_index('ix_incident_service_opened', ['service_id', 'opened_at'], unique=False)

    with op.batch_alter_table('merge_request', schema=None) as batch_op:
        batch_op.create_index('ix_merge_request_repo_head_sha', ['repo_id', 'head_sha'], unique=False)

    with op.batch_alter_table('pipeline', schema=None) as batch_op:
        batch_op.create_index('ix_pipeline_finished', ['finished_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('pipeline', schema=None) as batch_op:
        batch_op.drop_index('ix_pipeline_finished')

    with op.batch_alter_table('merge_request', schema=None) as batch_op:
        batch_op.drop_index('ix_merge_request_repo_head_sha')

    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.drop_index('ix_incident_service_opened')

    with op.batch_alter_table('deployment', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_finished')

