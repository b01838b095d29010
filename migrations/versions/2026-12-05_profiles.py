"""profiles: email, names, locale and roles of a user

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 08:00:00

users gains `email` (as given) and `email_key` (authserver.accounts.profiles.email_key: NFKC, case
folded; unique, so one address belongs to at most one live user whatever instance writes
it), `email_verified`, `name`, `given_name`, `family_name`, `locale` and `roles`
(space-separated). Existing users get no address, no names and no roles; nothing else of
theirs changes. Downgrading drops the columns, and with them every profile.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("email", sa.String(length=254), nullable=True))
        table.add_column(sa.Column("email_key", sa.Text(), nullable=True))
        table.add_column(
            sa.Column("email_verified", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        table.add_column(sa.Column("name", sa.String(length=256), nullable=True))
        table.add_column(sa.Column("given_name", sa.String(length=256), nullable=True))
        table.add_column(sa.Column("family_name", sa.String(length=256), nullable=True))
        table.add_column(sa.Column("locale", sa.String(length=35), nullable=True))
        table.add_column(sa.Column("roles", sa.Text(), server_default="", nullable=False))
        table.create_unique_constraint("uq_users_email_key", ["email_key"])


def downgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.drop_constraint("uq_users_email_key", type_="unique")
        for column in (
            "roles",
            "locale",
            "family_name",
            "given_name",
            "name",
            "email_verified",
            "email_key",
            "email",
        ):
            table.drop_column(column)
