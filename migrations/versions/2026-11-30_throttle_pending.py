"""login throttle: attempts in flight

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 11:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Attempts whose password is being checked: counted apart from failures, so logins in
    # flight hold a place in the budget without blocking anyone (authserver/throttle.py).
    with op.batch_alter_table("login_throttle") as table:
        table.add_column(sa.Column("pending", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(
            sa.Column("pending_since", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("login_throttle") as table:
        table.drop_column("pending_since")
        table.drop_column("pending")
