"""step-up: what access tokens say of the sign-in, step-up of a login session, MFA clients

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 11:00:00

refresh_families.amr and .auth_time: how the user of a browser sign-in proved who they are
(RFC 8176 values, space-separated) and when, stored at the code exchange and carried on by
every rotation into the access tokens (RFC 9068 §2.2.1). NULL for families from before this
revision and for the password grant's: their access tokens carry no amr, acr or auth_time (a
claim the server cannot vouch for is left out rather than guessed; a service requiring an
`acr` sees none and asks for a step-up).
login_sessions.auth_time: the last time the user proved a factor, moved on by a step-up
(a second factor given to a live session); NULL: the session's created_at, as before.
clients.require_mfa: the client gets only sessions with a second factor (false for every
existing client).
Nullable columns and one with a default: nothing existing changes, the downgrade drops them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_families") as table:
        table.add_column(sa.Column("amr", sa.String(64), nullable=True))
        table.add_column(sa.Column("auth_time", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("login_sessions") as table:
        table.add_column(sa.Column("auth_time", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("clients") as table:
        table.add_column(
            sa.Column("require_mfa", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("clients") as table:
        table.drop_column("require_mfa")
    with op.batch_alter_table("login_sessions") as table:
        table.drop_column("auth_time")
    with op.batch_alter_table("refresh_families") as table:
        table.drop_column("amr")
        table.drop_column("auth_time")
