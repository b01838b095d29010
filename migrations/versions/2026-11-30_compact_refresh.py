"""compact refresh storage: hashes as 32 bytes, family ids as uuid, no unused index

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 13:45:00

refresh_tokens.token_hash and parent_hash become the 32 bytes of the SHA-256 rather than its
64 hex characters (BYTEA on Postgres, BLOB on SQLite). On Postgres, family ids become native
`uuid` (16 bytes rather than 37) wherever one is stored as a family's key:
refresh_families.id, refresh_tokens.family_id (its foreign key dropped and made again around
the change) and authorization_codes.family_id. audit_events.family_id stays text: it is only
filtered on and shown, and outlives the family it names. SQLite keeps its id strings.
ix_refresh_tokens_parent_hash goes: no statement looks a token up by its parent any more (the
grace path finds the child through the parent's family, on ix_refresh_tokens_family_id).

Existing rows are converted: in SQL on Postgres (decode/encode, ::uuid/::text), in Python on
SQLite, whose bundled version (3.40) has no unhex().
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_refresh_tokens_family_id_refresh_families"
_PARENT_INDEX = "ix_refresh_tokens_parent_hash"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(_PARENT_INDEX, table_name="refresh_tokens")
        op.drop_constraint(_FK, "refresh_tokens", type_="foreignkey")
        # One ALTER TABLE per table: each rewrites its table once.
        op.execute("ALTER TABLE refresh_families ALTER COLUMN id TYPE uuid USING id::uuid")
        op.execute("""
            ALTER TABLE refresh_tokens
                ALTER COLUMN token_hash TYPE bytea USING decode(token_hash, 'hex'),
                ALTER COLUMN family_id TYPE uuid USING family_id::uuid,
                ALTER COLUMN parent_hash TYPE bytea USING decode(parent_hash, 'hex')
        """)
        op.execute(
            "ALTER TABLE authorization_codes ALTER COLUMN family_id TYPE uuid USING family_id::uuid"
        )
        _create_foreign_key()
        return
    _convert_hashes_on_sqlite(bytes.fromhex)
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(_PARENT_INDEX)
        # The copy CASTs to BLOB: the values are bytes already, so they pass unchanged.
        for column in ("token_hash", "parent_hash"):
            batch_op.alter_column(
                column, existing_type=sa.String(length=64), type_=sa.LargeBinary()
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(_FK, "refresh_tokens", type_="foreignkey")
        op.execute(
            "ALTER TABLE authorization_codes"
            " ALTER COLUMN family_id TYPE varchar(36) USING family_id::text"
        )
        op.execute("""
            ALTER TABLE refresh_tokens
                ALTER COLUMN token_hash TYPE varchar(64) USING encode(token_hash, 'hex'),
                ALTER COLUMN family_id TYPE varchar(36) USING family_id::text,
                ALTER COLUMN parent_hash TYPE varchar(64) USING encode(parent_hash, 'hex')
        """)
        op.execute("ALTER TABLE refresh_families ALTER COLUMN id TYPE varchar(36) USING id::text")
        _create_foreign_key()
        op.create_index(_PARENT_INDEX, "refresh_tokens", ["parent_hash"], unique=False)
        return
    _convert_hashes_on_sqlite(bytes.hex)
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        for column in ("token_hash", "parent_hash"):
            batch_op.alter_column(
                column, existing_type=sa.LargeBinary(), type_=sa.String(length=64)
            )
        batch_op.create_index(_PARENT_INDEX, ["parent_hash"], unique=False)


def _create_foreign_key() -> None:
    op.create_foreign_key(
        _FK, "refresh_tokens", "refresh_families", ["family_id"], ["id"], ondelete="CASCADE"
    )


def _convert_hashes_on_sqlite(convert: Callable[[Any], Any]) -> None:
    """Rewrites both hashes of every row with `convert` (hex -> bytes, or back), in place:
    SQLite stores whatever a column is given, so the type change after it only copies."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT token_hash, parent_hash FROM refresh_tokens")).all()
    if not rows:
        return
    bind.execute(
        sa.text(
            "UPDATE refresh_tokens SET token_hash = :new, parent_hash = :parent"
            " WHERE token_hash = :old"
        ),
        [
            {
                "old": old,
                "new": convert(old),
                "parent": None if parent is None else convert(parent),
            }
            for old, parent in rows
        ],
    )
