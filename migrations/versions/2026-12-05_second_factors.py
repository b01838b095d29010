"""second factors: TOTP authenticators and recovery codes

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-05 09:30:00

second_factors: one row per factor a user enrolled (kind `totp` now; passkeys later, several a
user, so the one-per-user rule is a partial unique index on kind 'totp' only). The TOTP secret
is sealed under the KEK (AES-256-GCM, the factor's id as associated data) as signing keys are;
last_step is the last RFC 6238 time step accepted, so a code is accepted once.
recovery_codes: the SHA-256 of each single-use code, used_at set when spent.
pending_sign_ins: a password checked for a user with a factor, awaiting it (5 minutes), by the
SHA-256 of its own cookie; never a login session, so nothing that looks for one finds it.
login_sessions.amr and authorization_codes.amr: how the session's user proved who they are
(RFC 8176 values, space-separated); NULL for rows from before, which were password only.
New tables and two nullable columns: nothing existing changes, and the downgrade drops them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "second_factors",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_second_factors_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_second_factors")),
    )
    with op.batch_alter_table("second_factors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_second_factors_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            "uq_second_factors_one_totp",
            ["user_id"],
            unique=True,
            sqlite_where=sa.text("kind = 'totp'"),
            postgresql_where=sa.text("kind = 'totp'"),
        )
    op.create_table(
        "recovery_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_recovery_codes")),
    )
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recovery_codes_user_id"), ["user_id"], unique=False)
    op.create_table(
        "pending_sign_ins",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("password_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_pending_sign_ins_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_pending_sign_ins")),
    )
    with op.batch_alter_table("pending_sign_ins", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_sign_ins_expires_at"), ["expires_at"], unique=False
        )

    # NULL: the password alone, as every session and code before this revision.
    with op.batch_alter_table("login_sessions") as table:
        table.add_column(sa.Column("amr", sa.String(64), nullable=True))
    with op.batch_alter_table("authorization_codes") as table:
        table.add_column(sa.Column("amr", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorization_codes") as table:
        table.drop_column("amr")
    with op.batch_alter_table("login_sessions") as table:
        table.drop_column("amr")
    with op.batch_alter_table("pending_sign_ins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_sign_ins_expires_at"))
    op.drop_table("pending_sign_ins")
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recovery_codes_user_id"))
    op.drop_table("recovery_codes")
    with op.batch_alter_table("second_factors", schema=None) as batch_op:
        batch_op.drop_index("uq_second_factors_one_totp")
        batch_op.drop_index(batch_op.f("ix_second_factors_user_id"))
    op.drop_table("second_factors")
