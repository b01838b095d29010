"""clients.resources: the RFC 8707 resources a client may name (issue 25)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 14:30:00

Space-separated resource identifiers, as the client's redirect URIs are; "" (every existing
client) lets the client name any registered resource, as before. The downgrade drops the
column: every client may then name any registered resource again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("resources", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("resources")
