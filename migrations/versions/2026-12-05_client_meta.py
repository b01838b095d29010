"""clients: a name for the hosted pages and their own browser origins

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 08:00:00

clients.client_name (NULL: the pages show the client_id, as before) and
clients.allowed_origins (space-separated origins, "" for none: only AUTHSERVER_ALLOWED_ORIGINS,
as before). Existing rows keep working unchanged; the downgrade drops both.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as table:
        table.add_column(sa.Column("client_name", sa.Text(), nullable=True))
        table.add_column(sa.Column("allowed_origins", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("clients") as table:
        table.drop_column("allowed_origins")
        table.drop_column("client_name")
