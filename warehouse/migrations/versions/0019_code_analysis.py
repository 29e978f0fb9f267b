"""code_analysis: SonarQube analyses of commits with their quality gate

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 02:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import warehouse.types

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'code_analysis',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('project_key', sa.String(length=255), nullable=False),
        sa.Column('analysed_at', warehouse.types.UTCDateTime(), nullable=False),
        sa.Column('analysis_key', sa.String(length=255), nullable=True),
        sa.Column('repo_id', sa.Integer(), nullable=True),
        sa.Column('repo_path', sa.String(length=255), nullable=True),
        sa.Column('branch', sa.String(length=255), nullable=True),
        sa.Column('pull_request', sa.String(length=255), nullable=True),
        sa.Column('revision', sa.String(length=64), nullable=True),
        sa.Column('gate_status', sa.String(length=16), nullable=False),
        sa.Column('raw_gate_status', sa.String(length=16), nullable=True),
        sa.Column(
            'failing_conditions',
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
            nullable=False,
        ),
        sa.Column('project_version', sa.String(length=255), nullable=True),
        sa.Column('ce_task_id', sa.String(length=255), nullable=True),
        sa.Column('url', sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(
            ['repo_id'], ['repo.id'], name=op.f('fk_code_analysis_repo_id_repo')
        ),
        sa.ForeignKeyConstraint(
            ['source_id'], ['source.id'], name=op.f('fk_code_analysis_source_id_source')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_code_analysis')),
        sa.UniqueConstraint(
            'source_id',
            'project_key',
            'analysed_at',
            name=op.f('uq_code_analysis_source_id_project_key_analysed_at'),
        ),
    )
    with op.batch_alter_table('code_analysis', schema=None) as batch_op:
        batch_op.create_index('ix_code_analysis_revision', ['revision'], unique=False)
        batch_op.create_index(batch_op.f('ix_code_analysis_repo_id'), ['repo_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('code_analysis', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_code_analysis_repo_id'))
        batch_op.drop_index('ix_code_analysis_revision')
    op.drop_table('code_analysis')
