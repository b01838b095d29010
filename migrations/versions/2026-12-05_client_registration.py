"""client registration: RFC 7591/7592 registered clients and initial access tokens

Revision ID: 0021
Revises: 0019
Create Date: 2026-12-05 13:00:00

clients.registration: how the client came ("open" or "token": through POST /register); NULL for
operators' clients. clients.consent: a third-party client, whose users are asked (registered
clients always). clients.registration_token_hash: SHA-256 of the RFC 7592 registration access
token (NULL: not manageable through /register). clients.client_metadata: the RFC 7591 members
authserver keeps but does not act on (client_uri, logo_uri, ...), as JSON.
initial_access_tokens: the operator's tokens that allow a registration in `token` mode, hashed,
each with its expiry and uses (max_uses NULL: any number). Nullable columns, defaults and a new
table: nothing existing changes; the downgrade drops them (registered clients stay as plain
clients).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("registration", sa.String(length=8), nullable=True))
        batch.add_column(
            sa.Column("consent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("registration_token_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("client_metadata", sa.Text(), nullable=True))
    op.create_table(
        "initial_access_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_initial_access_tokens")),
    )


def downgrade() -> None:
    op.drop_table("initial_access_tokens")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("client_metadata")
        batch.drop_column("registration_token_hash")
        batch.drop_column("consent")
        batch.drop_column("registration")
