"""deployment_chain gains an index on baseline, so the release times derive recomputes find the
chains' first deployments (about one a chain) by lookups, not by a scan of every chain row
(`analytics.releases.release_times`: 30 ms a statement on a large organisation, seven statements a
derive)

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 14:05:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0029'
down_revision: str | None = '0028'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_deployment_chain_baseline', 'deployment_chain', ['baseline'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_deployment_chain_baseline', table_name='deployment_chain')
