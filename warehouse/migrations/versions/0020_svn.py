"""Subversion: a commit's revision and line (trunk, branches/<name>, tags/<name>)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 02:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('commit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('svn_revision', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('svn_line', sa.String(length=255), nullable=True))
        batch_op.create_index(
            'ix_commit_svn_line', ['repo_id', 'svn_line', 'svn_revision'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('commit', schema=None) as batch_op:
        batch_op.drop_index('ix_commit_svn_line')
        batch_op.drop_column('svn_line')
        batch_op.drop_column('svn_revision')
