"""login_sessions: the user agent of the browser that signed in

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 09:00:00

login_sessions.user_agent (NULL for sessions started before it, shown as unknown on the account
page), cut to 200 characters as refresh_families.user_agent. The downgrade drops it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_sessions") as table:
        table.add_column(sa.Column("user_agent", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("login_sessions") as table:
        table.drop_column("user_agent")
