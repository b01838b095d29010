"""the live refresh token in its family's row; spent tokens in a narrow table

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-05 23:15:00

A refresh token issued from now on names its family (`<family id>.<secret>`): its family's row
holds the live token's hash, its parent's (the token spent last: for the grace retry and its
replay) and that one's spend time, the live one's issue time and idle end, none of them
indexed, so a rotation updates no indexed column (a HOT update on Postgres) and inserts the
parent it replaces into `spent_refresh_tokens` (family id, hash, spent time; its primary key
is what a replay is looked up by, and what the purge deletes by).

Nothing is copied: the new columns are NULL for existing families, whose tokens stay in
refresh_tokens (a legacy family); when such a token rotates its successor goes to the family's
row. So the upgrade only adds nullable columns and creates a table: no rewrite, a lock held
for milliseconds whatever the number of families. refresh_tokens can be dropped by a later
migration once one idle lifetime (AUTHSERVER_REFRESH_TOKEN_TTL) has passed since this one.

The hash is of the whole token, as before: so the downgrade puts every family's live token
(with its parent) and its spent ones back into refresh_tokens, where the code before 0030
finds them by that hash (a token that names its family is only a longer opaque string to
it): no session ends, and a replay of a spent token is still reuse. A spent token's issue
time and idle end, which are not kept, come back as its spend time. Then the columns and the
table are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _family_id() -> sa.types.TypeEngine[str]:
    return sa.Uuid(as_uuid=False).with_variant(sa.String(36), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("refresh_families") as batch:
        batch.add_column(sa.Column("token_hash", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("parent_hash", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("parent_spent_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("token_issued_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("token_expires_at", sa.BigInteger(), nullable=True))
    op.create_table(
        "spent_refresh_tokens",
        sa.Column("family_id", _family_id(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("spent_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["refresh_families.id"],
            name=op.f("fk_spent_refresh_tokens_family_id_refresh_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("family_id", "token_hash", name=op.f("pk_spent_refresh_tokens")),
    )


def downgrade() -> None:
    op.execute("""
        INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, issued_at, expires_at)
        SELECT token_hash, id, parent_hash, token_issued_at, token_expires_at
        FROM refresh_families WHERE token_hash IS NOT NULL
    """)
    # The parent and the older spent ones; one from before 0030 is there already.
    op.execute("""
        INSERT INTO refresh_tokens
            (token_hash, family_id, parent_hash, issued_at, expires_at, spent_at)
        SELECT f.parent_hash, f.id, NULL, f.parent_spent_at, f.parent_spent_at, f.parent_spent_at
        FROM refresh_families AS f
        WHERE f.parent_hash IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM refresh_tokens AS t WHERE t.token_hash = f.parent_hash)
    """)
    op.execute("""
        INSERT INTO refresh_tokens
            (token_hash, family_id, parent_hash, issued_at, expires_at, spent_at)
        SELECT s.token_hash, s.family_id, NULL, s.spent_at, s.spent_at, s.spent_at
        FROM spent_refresh_tokens AS s
        WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens AS t WHERE t.token_hash = s.token_hash)
    """)
    op.drop_table("spent_refresh_tokens")
    with op.batch_alter_table("refresh_families") as batch:
        batch.drop_column("token_expires_at")
        batch.drop_column("token_issued_at")
        batch.drop_column("parent_spent_at")
        batch.drop_column("parent_hash")
        batch.drop_column("token_hash")
