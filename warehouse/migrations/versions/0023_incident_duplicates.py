"""incident gains mentions (the incident keys and URLs its own text names) and duplicate_of (the
incident it is counted as, when several sources recorded the same incident); work_item gains
changed_at (derive links new work items incrementally)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 05:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mentions', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('duplicate_of', sa.Integer(), nullable=True))
    with op.batch_alter_table('work_item', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('changed_at', warehouse.types.UTCDateTime(), nullable=True)
        )
        batch_op.create_index('ix_work_item_changed', ['changed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('work_item', schema=None) as batch_op:
        batch_op.drop_index('ix_work_item_changed')
        batch_op.drop_column('changed_at')
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.drop_column('duplicate_of')
        batch_op.drop_column('mentions')
