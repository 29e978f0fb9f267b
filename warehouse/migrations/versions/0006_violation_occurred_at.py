"""policy_violation.occurred_at: when the offending event happened (besides when it was found)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:15:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('policy_violation', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('occurred_at', warehouse.types.UTCDateTime(timezone=True), nullable=True)
        )
    # rows from before this revision: the time they were found is the best known (the next scan
    # sets the real one)
    op.execute('UPDATE policy_violation SET occurred_at = first_seen_at WHERE occurred_at IS NULL')
    with op.batch_alter_table('policy_violation', schema=None) as batch_op:
        batch_op.alter_column(
            'occurred_at', existing_type=warehouse.types.UTCDateTime(timezone=True), nullable=False
        )
        batch_op.create_index('ix_policy_violation_occurred', ['occurred_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('policy_violation', schema=None) as batch_op:
        batch_op.drop_index('ix_policy_violation_occurred')
        batch_op.drop_column('occurred_at')
