"""changed_at on commits, parents, merge requests and their commits; derive_state: late data
marks the deployments it affects for re-derivation

Revision ID: 0015
Revises: 0010
Create Date: 2026-12-04 17:45:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0015'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('commit', 'commit_parent', 'merge_request', 'mr_commit')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column('changed_at', warehouse.types.UTCDateTime(), nullable=True)
            )
            batch_op.create_index(f'ix_{table}_changed', ['changed_at'], unique=False)
    op.create_table(
        'derive_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('started_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.Column('finished_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_derive_state')),
        sa.UniqueConstraint('name', name=op.f('uq_derive_state_name')),
    )


def downgrade() -> None:
    op.drop_table('derive_state')
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_changed')
            batch_op.drop_column('changed_at')
