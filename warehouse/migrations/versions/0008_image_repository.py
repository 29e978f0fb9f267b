"""image_repository: which service each registry repository belongs to

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-04 17:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('image_repository',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repository', sa.String(length=255), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=True),
    sa.Column('linked_by', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_image_repository_service_id_service')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image_repository')),
    sa.UniqueConstraint('repository', name=op.f('uq_image_repository_repository'))
    )
    with op.batch_alter_table('image_repository', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_image_repository_service_id'), ['service_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('image_repository', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_image_repository_service_id'))
    op.drop_table('image_repository')
