"""rollup_suite_day: per (repository, test suite, local day) the suite's runs, failing runs,
failed tests and last failing run, maintained by derive beside rollup_pipeline_day, so the
failing tests the Builds page lists read days, not every test run of the period. The rollup
state is dropped: the next derive builds every rollup again, this one with them.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07 14:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0030'
down_revision: str | None = '0029'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'rollup_suite_day',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repo_id', sa.Integer(), nullable=False),
        sa.Column('suite', sa.String(255), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('runs', sa.Integer(), nullable=False),
        sa.Column('failing_runs', sa.Integer(), nullable=False),
        sa.Column('failed_tests', sa.Integer(), nullable=False),
        sa.Column('last_failed_at', warehouse.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['repo_id'], ['repo.id'], name=op.f('fk_rollup_suite_day_repo_id_repo')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_suite_day')),
        sa.UniqueConstraint('repo_id', 'suite', 'day', name=op.f('uq_rollup_suite_day_repo_id_suite_day')),
    )
    op.create_index('ix_rollup_suite_day_day', 'rollup_suite_day', ['day'], unique=False)
    op.execute("DELETE FROM rollup_state")


def downgrade() -> None:
    op.drop_index('ix_rollup_suite_day_day', table_name='rollup_suite_day')
    op.drop_table('rollup_suite_day')
