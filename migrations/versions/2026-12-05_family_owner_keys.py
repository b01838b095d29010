"""refresh_families: no foreign keys to users and clients; audit_events without its target index

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05 23:30:00

Every code exchange and login checked both foreign keys of the family it inserted: a KEY SHARE
lock on the user's row and on the client's, the client's one row shared by every concurrent
exchange of that client (a MultiXact whenever two overlap). The statements that start a family
hold both rows already (db/families.py, db/codes.py), and user and client rows are deleted only
by the purge, which ends their families in the same transaction (db/purge.py), so the keys
checked nothing those statements do not. The downgrade puts them back (ON DELETE CASCADE), after
deleting any family whose user or client is gone.

audit_events.target's index served one read, the account deletion's scrub of the username,
which now goes through user_id's (rows it needs get their user_id here).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The events about a user that named them only as their target before 0029.
_ABOUT_A_USER = "action IN ('user.created', 'user.signed_up') AND user_id IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("refresh_families") as batch:
        batch.drop_constraint("fk_refresh_families_user_id_users", type_="foreignkey")
        batch.drop_constraint("fk_refresh_families_client_id_clients", type_="foreignkey")
    op.execute(f"UPDATE audit_events SET user_id = target WHERE {_ABOUT_A_USER}")  # noqa: S608
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_index("ix_audit_events_target")


# Families whose user or client is gone (none, if only the purge deleted them).
_ORPHANS = """SELECT f.id FROM refresh_families AS f
    WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.id = f.user_id)
       OR NOT EXISTS (SELECT 1 FROM clients AS c WHERE c.client_id = f.client_id)"""


def downgrade() -> None:
    op.execute(f"DELETE FROM refresh_tokens WHERE family_id IN ({_ORPHANS})")  # noqa: S608
    op.execute(f"DELETE FROM refresh_families WHERE id IN ({_ORPHANS})")  # noqa: S608
    # The user_id given to old events stays: it names whom they concern, as on newer ones.
    with op.batch_alter_table("audit_events") as batch:
        batch.create_index("ix_audit_events_target", ["target"])
    with op.batch_alter_table("refresh_families") as batch:
        batch.create_foreign_key(
            "fk_refresh_families_user_id_users", "users", ["user_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_foreign_key(
            "fk_refresh_families_client_id_clients",
            "clients",
            ["client_id"],
            ["client_id"],
            ondelete="CASCADE",
        )
