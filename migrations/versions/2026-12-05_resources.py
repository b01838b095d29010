"""resources: RFC 8707 resource servers, and the resources an authorization named

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-05 12:00:00

resources: one row per resource server an operator registered (tokens/resources.py): its
identifier (an absolute URI, the `aud` of its tokens), the scopes it declares and the lifetime
of its access tokens. authorization_codes.resources and refresh_families.resources: the
identifiers the authorization request named, space-separated (no identifier holds a space);
NULL for rows from before and for authorizations that named none, which get the default
audience as before. A new table and two nullable columns: nothing existing changes, and the
downgrade drops them (sessions bound to resources go on with the default audience).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("resource", sa.String(length=256), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("access_token_ttl", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("resource", name=op.f("pk_resources")),
    )
    for table in ("authorization_codes", "refresh_families"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("resources", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ("refresh_families", "authorization_codes"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("resources")
    op.drop_table("resources")
