"""merge_request gains first_commit_at (the earliest authored time of its commits, maintained by
derive: `analytics.first_commits`), so a read of merge requests gets where their work started
from their own rows, not from a lookup in mr_commit and commit per MR commit; the first derive
after the upgrade fills it for every MR

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07 19:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0031'
down_revision: str | None = '0030'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('merge_request', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('first_commit_at', warehouse.types.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('merge_request', schema=None) as batch_op:
        batch_op.drop_column('first_commit_at')
