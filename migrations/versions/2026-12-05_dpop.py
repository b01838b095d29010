"""dpop: DPoP proofs seen (RFC 9449 §11.1), clients that require DPoP, families bound to a key

Revision ID: 0022
Revises: 0019
Create Date: 2026-12-05 13:00:00

dpop_proofs: one row per proof accepted, keyed by SHA-256 of the key's thumbprint and the
proof's jti (authserver_verify.dpop.Proof.replay_key), until its iat leaves the window; the
primary key refuses a second use on every instance in one INSERT. clients.dpop_bound_access_tokens:
the client must send a proof at /token (false for existing clients: nothing changes for them).
refresh_families.dpop_jkt: the thumbprint a public client's refresh tokens are bound to; NULL
for families from before and unbound ones. The downgrade drops all three (bound families then
refresh without a proof, as before).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dpop_proofs",
        sa.Column("proof_key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("proof_key", name=op.f("pk_dpop_proofs")),
    )
    op.create_index(op.f("ix_dpop_proofs_expires_at"), "dpop_proofs", ["expires_at"])
    with op.batch_alter_table("clients") as batch:
        batch.add_column(
            sa.Column(
                "dpop_bound_access_tokens",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )
    with op.batch_alter_table("refresh_families") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_families") as batch:
        batch.drop_column("dpop_jkt")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("dpop_bound_access_tokens")
    op.drop_index(op.f("ix_dpop_proofs_expires_at"), table_name="dpop_proofs")
    op.drop_table("dpop_proofs")
