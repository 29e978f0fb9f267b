"""changed_at on images and image tags: image data arriving after a derive re-resolves the
deployments it could resolve

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-05 05:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0018'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('image', 'image_tag')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column('changed_at', warehouse.types.UTCDateTime(), nullable=True)
            )
            batch_op.create_index(f'ix_{table}_changed', ['changed_at'], unique=False)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_changed')
            batch_op.drop_column('changed_at')
