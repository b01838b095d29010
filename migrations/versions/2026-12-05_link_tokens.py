"""link tokens: one-time links in mail (password reset, email verification)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 09:00:00

link_tokens: one row per link mailed (authserver/accounts/links.py), keyed by the SHA-256 of its
token (the token itself is only in the mail); `spent_at` set by the one statement that spends it.
reset_requests: the addresses asked for a reset, resolved off the request path
(actions/password_reset.py), so the page costs the same for a known and an unknown address.
page_requests: the request counts per client address and per address of the pages above
(authserver/page_limits.py). New tables only: nothing existing changes, and the downgrade
drops them (every link mailed and not spent yet stops working).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "link_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("password_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("spent_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_link_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_link_tokens")),
    )  # fmt: skip
    with op.batch_alter_table("link_tokens") as table:
        table.create_index(table.f("ix_link_tokens_user_id"), ["user_id"], unique=False)
        table.create_index(table.f("ix_link_tokens_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "reset_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reset_requests")),
    )
    with op.batch_alter_table("reset_requests") as table:
        table.create_index(table.f("ix_reset_requests_created_at"), ["created_at"], unique=False)
    op.create_table(
        "page_requests",
        sa.Column("bucket", sa.String(length=80), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_page_requests")),
    )


def downgrade() -> None:
    op.drop_table("page_requests")
    with op.batch_alter_table("reset_requests") as table:
        table.drop_index(table.f("ix_reset_requests_created_at"))
    op.drop_table("reset_requests")
    with op.batch_alter_table("link_tokens") as table:
        table.drop_index(table.f("ix_link_tokens_expires_at"))
        table.drop_index(table.f("ix_link_tokens_user_id"))
    op.drop_table("link_tokens")
