"""merge_request gains first_commit_at (the earliest authored time of its commits, maintained by
derive: `analytics.first_commits`), so a read of merge requests gets where their work started
from their own rows, not from a lookup in mr_commit and commit per MR commit; filled here for
every MR, so that a read right after the upgrade finds it before the next derive

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
    # the definition as this revision knows it (analytics.first_commits.FIRST_COMMIT)
    op.execute(
        'UPDATE merge_request SET first_commit_at = ('
        ' SELECT min(c.authored_at) FROM mr_commit m'
        ' JOIN "commit" c ON c.repo_id = m.repo_id AND c.sha = m.sha'
        ' WHERE m.repo_id = merge_request.repo_id AND m.iid = merge_request.iid)'
    )


def downgrade() -> None:
    with op.batch_alter_table('merge_request', schema=None) as batch_op:
        batch_op.drop_column('first_commit_at')
