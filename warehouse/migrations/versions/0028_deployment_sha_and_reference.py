"""deployment gains indexes on sha and image_ref, so derive finds the deployments resolved by tag
or revision that late image data may resolve otherwise (`analytics.images._reopen_late`: the
deployments of the revisions and references written since the last derive) by lookups, not by a
scan of every deployment

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 05:15:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0028'
down_revision: str | None = '0027'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_deployment_sha', 'deployment', ['sha'], unique=False)
    op.create_index('ix_deployment_image_ref', 'deployment', ['image_ref'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_deployment_image_ref', table_name='deployment')
    op.drop_index('ix_deployment_sha', table_name='deployment')
