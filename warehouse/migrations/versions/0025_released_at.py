"""merge_request gains released_at (the first finish of a production-tier deployment that brought
its merge or squash commit, fast-forward: its head; maintained by derive) and an index on
(state, released_at), so the merged MRs not yet in production are indexed range reads

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 17:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0025'
down_revision: str | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('merge_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('released_at', warehouse.types.UTCDateTime(), nullable=True))
    op.create_index(
        'ix_merge_request_state_released', 'merge_request', ['state', 'released_at'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_merge_request_state_released', table_name='merge_request')
    with op.batch_alter_table('merge_request', schema=None) as batch_op:
        batch_op.drop_column('released_at')
