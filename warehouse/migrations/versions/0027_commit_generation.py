"""commit_generation: each commit's generation in its repository's graph, maintained by derive, so
that the walks between a deployment and the previous one stop where they can (bounded by the
commits in between, not the repository's history); filled by the first derive after this
migration

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 23:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0027'
down_revision: str | None = '0026'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'commit_generation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repo_id', sa.Integer(), nullable=False),
        sa.Column('sha', sa.String(length=64), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_commit_generation_repo_id_repo')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_commit_generation')),
        sa.UniqueConstraint('repo_id', 'sha', name=op.f('uq_commit_generation_repo_id_sha')),
    )
    op.create_index(
        'ix_commit_generation_repo_generation',
        'commit_generation',
        ['repo_id', 'generation'],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_commit_generation_repo_generation', table_name='commit_generation')
    op.drop_table('commit_generation')
