"""console_sessions: the admin console's server-side sessions (issue 27)

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05 14:30:00

The console is a backend-for-frontend: the browser holds only a random cookie, and the row
found by the cookie's SHA-256 holds the console's tokens (sealed under the KEK, the row's id as
associated data). A row without a `sub` is a sign-in under way: its sealed part is the PKCE
verifier and the `state` of the authorization request. `refreshing_at` is the claim of the
one request that refreshes the tokens (so two tabs never present one refresh token twice).
The console's client is registered at startup, not here: its redirect URI is the issuer's,
which a migration does not know (actions/console/client.py). The downgrade drops the table:
every operator signs in again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("sub", sa.String(length=36), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("access_expires_at", sa.BigInteger(), nullable=True),
        sa.Column("refreshing_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index(
        op.f("ix_console_sessions_expires_at"), "console_sessions", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_console_sessions_expires_at"), table_name="console_sessions")
    op.drop_table("console_sessions")
