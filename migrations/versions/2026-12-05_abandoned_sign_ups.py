"""users.signup_expires_at: when a `verified` sign-up that never opened its link is abandoned

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 15:00:00

Set by the sign-up page in AUTHSERVER_SIGNUP=verified to the link's expiry; cleared when the
link enables the account or an operator enables or disables it. The purge deletes the accounts
still disabled past it, so an abandoned sign-up no longer holds its username for good. NULL for
every existing row: accounts made before keep today's behaviour. The downgrade drops the column.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("signup_expires_at", sa.BigInteger(), nullable=True))
        batch.create_index(batch.f("ix_users_signup_expires_at"), ["signup_expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_index(batch.f("ix_users_signup_expires_at"))
        batch.drop_column("signup_expires_at")
