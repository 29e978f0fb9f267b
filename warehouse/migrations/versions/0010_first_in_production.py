"""deployment_change.first_in_production: a change counts once over several production regions

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-04 17:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('deployment_change', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('first_in_production', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # one production environment per service until now: its first is the production-wide first
    op.execute(
        "UPDATE deployment_change SET first_in_production = first_in_environment"
        " WHERE deployment_id IN (SELECT deployment_id FROM deployment_chain WHERE is_production)"
    )


def downgrade() -> None:
    with op.batch_alter_table('deployment_change', schema=None) as batch_op:
        batch_op.drop_column('first_in_production')
