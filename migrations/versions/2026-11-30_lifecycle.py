"""operator lifecycle: client state and secret rotation, deleted users, sessions' user agent

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 11:30:00

Clients: disabled, deleted_at (the row stays, so its client_id is never reused),
secret_rotated_at, the previous secret's hash and when it stops working, and
tokens_revoked_before (its access tokens issued at or before it are revoked, sid or not).
Users: deleted_at, last_login_at; username and password_hash become nullable (cleared on
delete, so the name may be taken again). Families: the user agent that started them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("secret_rotated_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("old_secret_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("old_secret_expires_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("tokens_revoked_before", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("last_login_at", sa.BigInteger(), nullable=True))
        batch_op.alter_column("username", existing_type=sa.String(length=256), nullable=True)
        batch_op.alter_column("password_hash", existing_type=sa.String(length=512), nullable=True)
    with op.batch_alter_table("refresh_families", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_agent", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_families", schema=None) as batch_op:
        batch_op.drop_column("user_agent")
    # Deleted users have no name or hash left: they cannot go back under NOT NULL.
    op.execute("DELETE FROM users WHERE deleted_at IS NOT NULL")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("password_hash", existing_type=sa.String(length=512), nullable=False)
        batch_op.alter_column("username", existing_type=sa.String(length=256), nullable=False)
        batch_op.drop_column("last_login_at")
        batch_op.drop_column("deleted_at")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("tokens_revoked_before")
        batch_op.drop_column("old_secret_expires_at")
        batch_op.drop_column("old_secret_hash")
        batch_op.drop_column("secret_rotated_at")
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("disabled")
