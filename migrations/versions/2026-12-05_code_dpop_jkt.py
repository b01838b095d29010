"""code_dpop_jkt: an authorization code bound to a DPoP key at /authorize (RFC 9449 §10)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 14:30:00

authorization_codes.dpop_jkt: the RFC 7638 thumbprint the authorization request named in
`dpop_jkt`; the exchange spends the code only with a proof of that key. NULL for codes from
before and for requests without it (nothing changes for them). The downgrade drops it: codes
alive at that moment (60 s) are then redeemable without the proof.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("authorization_codes") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorization_codes") as batch:
        batch.drop_column("dpop_jkt")
