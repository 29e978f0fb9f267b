"""observed workload rollouts: one row per rollout revision

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('observed_workload', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('replica_set', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('finished_at', warehouse.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.drop_constraint('uq_observed_workload_cluster_namespace_workload_observed_at', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_observed_workload_cluster_namespace_workload_revision'), ['cluster', 'namespace', 'workload', 'revision'])
        batch_op.create_foreign_key(batch_op.f('fk_observed_workload_source_id_source'), 'source', ['source_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('observed_workload', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_observed_workload_source_id_source'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_observed_workload_cluster_namespace_workload_revision'), type_='unique')
        batch_op.create_unique_constraint('uq_observed_workload_cluster_namespace_workload_observed_at', ['cluster', 'namespace', 'workload', 'observed_at'])
        batch_op.drop_column('finished_at')
        batch_op.drop_column('status')
        batch_op.drop_column('replica_set')
        batch_op.drop_column('source_id')
