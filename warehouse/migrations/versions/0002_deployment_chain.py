"""deployment chain

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 11:15:29.730920
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import warehouse.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('deployment_chain',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('is_production', sa.Boolean(), nullable=False),
    sa.Column('finished_at', warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('previous_deployment_id', sa.Integer(), nullable=True),
    sa.Column('baseline', sa.Boolean(), nullable=False),
    sa.Column('rollback', sa.Boolean(), nullable=False),
    sa.Column('changes', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployment.id'], name=op.f('fk_deployment_chain_deployment_id_deployment'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['environment_id'], ['environment.id'], name=op.f('fk_deployment_chain_environment_id_environment')),
    sa.ForeignKeyConstraint(['previous_deployment_id'], ['deployment.id'], name=op.f('fk_deployment_chain_previous_deployment_id_deployment')),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_deployment_chain_service_id_service')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_chain')),
    sa.UniqueConstraint('deployment_id', name=op.f('uq_deployment_chain_deployment_id'))
    )
    with op.batch_alter_table('deployment_chain', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_chain_service_finished', ['service_id', 'is_production', 'finished_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('deployment_chain', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_chain_service_finished')

    op.drop_table('deployment_chain')
