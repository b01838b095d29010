"""browser sign-in: clients' redirect URIs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 11:20:00
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
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("redirect_uris", sa.Text(), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("post_logout_redirect_uris", sa.Text(), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("post_logout_redirect_uris")
        batch_op.drop_column("redirect_uris")
