"""consent_grants: what a user allowed a third-party client, remembered (issue 25)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 13:30:00

One row per user, client and thing granted: kind "client" (value "": the grant itself, so a
grant of no scope is remembered too), "scope" or "resource". "Allow" inserts every row it
grants in one INSERT ... ON CONFLICT, which widens a grant and never narrows it, whatever
another "Allow" does at the same moment; revoking deletes the user's rows for the client. The
downgrade drops the table: every third-party client asks again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_grants",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.Column("granted_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.client_id"],
            name=op.f("fk_consent_grants_client_id_clients"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_consent_grants_user_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "client_id", "kind", "value", name=op.f("pk_consent_grants")
        ),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("consent_grants")
