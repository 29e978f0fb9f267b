"""raw_payload.payload kept zlib-compressed (BLOB/bytea, nullable: `[warehouse]
raw_retention_days` drops old bodies); merge_request (repo_id, source_branch) for the policy scan

Every existing payload is compressed in keyset batches (the JSON text as stored on SQLite, the
document on PostgreSQL), written to a new column that then replaces the old one. SQLite returns
the freed pages to the file system only on VACUUM: `cdmetrics db prune-raw --vacuum`
(docs/OPERATIONS.md).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 05:40:00.000000
"""
import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from warehouse.types import ZLIB_LEVEL, pack_json, unpack_json

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2_000


def _packed(value: object) -> bytes:
    """The compressed form of a stored payload: SQLite returns the JSON text, PostgreSQL's jsonb
    the document."""
    if isinstance(value, str):
        return zlib.compress(value.encode('utf-8'), ZLIB_LEVEL)
    return pack_json(value)


def _copy(convert: object, source: str, target: str, value: str = ':value') -> None:
    """Write `convert(source)` into `target` for every row, a keyset batch at a time (`value`:
    the SQL of the converted value, a cast where the column needs one)."""
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.text(f'select id, {source} from raw_payload where id > :last order by id limit {BATCH}'),
            {'last': last},
        ).all()
        if not rows:
            return
        bind.execute(
            sa.text(f'update raw_payload set {target} = {value} where id = :id'),
            [{'id': row[0], 'value': convert(row[1])} for row in rows],  # type: ignore[operator]
        )
        last = rows[-1][0]


def upgrade() -> None:
    # the policy scan's "has a merge request" lookup per branch (long-lived-branch, stale-branch)
    op.create_index(
        'ix_merge_request_repo_source_branch', 'merge_request', ['repo_id', 'source_branch'], unique=False
    )
    op.add_column('raw_payload', sa.Column('payload_z', sa.LargeBinary(), nullable=True))
    _copy(_packed, 'payload', 'payload_z')
    op.execute('alter table raw_payload drop column payload')
    op.execute('alter table raw_payload rename column payload_z to payload')


def downgrade() -> None:
    op.drop_index('ix_merge_request_repo_source_branch', table_name='merge_request')
    # a body retention dropped comes back as JSON null (the column was NOT NULL)
    dialect = op.get_bind().dialect.name
    kind = 'jsonb' if dialect == 'postgresql' else 'JSON'
    op.execute(f'alter table raw_payload add column payload_json {kind}')

    def text(blob: object) -> str:
        import json

        return json.dumps(unpack_json(blob))  # type: ignore[arg-type]

    _copy(text, 'payload', 'payload_json', f'cast(:value as {kind})' if kind == 'jsonb' else ':value')
    op.execute('alter table raw_payload drop column payload')
    op.execute('alter table raw_payload rename column payload_json to payload')
