"""deployment_chain: an index for the whole organisation's period filters

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 14:10:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('deployment_chain', schema=None) as batch_op:
        batch_op.create_index(
            'ix_deployment_chain_production_finished', ['is_production', 'finished_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('deployment_chain', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_chain_production_finished')
