"""purge and audit indexes: who an audit event concerns, and what the purge and feed scan

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("family_id", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_events_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_family_id"), ["family_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)
    with op.batch_alter_table("refresh_families", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refresh_families_revoked_at"), ["revoked_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_refresh_families_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("refresh_families", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_families_expires_at"))
        batch_op.drop_index(batch_op.f("ix_refresh_families_revoked_at"))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))
        batch_op.drop_index(batch_op.f("ix_audit_events_family_id"))
        batch_op.drop_index(batch_op.f("ix_audit_events_user_id"))
        batch_op.drop_column("family_id")
        batch_op.drop_column("user_id")
