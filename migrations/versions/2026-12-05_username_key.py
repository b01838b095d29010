"""usernames: one account per name in any case or Unicode form

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 05:00:00

users.username_key: the name NFKC-normalised, case folded and normalised again
(authserver.accounts.users.username_key), unique. The name itself stays as it was given, for
display.
Existing rows get their key here; if two live users' names fold to one key (`Alice` and
`alice`), the upgrade stops with the names and subs of each such group and changes nothing:
delete (`authserver users delete`) or rename all but one of each, then migrate again. Names
are never merged silently.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(username: str) -> str:
    # authserver.accounts.users.username_key as of this revision (a migration must not change when
    # the code does).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


class UsernamesCollide(RuntimeError):
    pass


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, username FROM users WHERE username IS NOT NULL")).all()
    groups: dict[str, list[tuple[str, str]]] = {}
    for user_id, username in sorted(rows, key=lambda row: row[1]):  # code points, any collation
        groups.setdefault(_key(username), []).append((username, user_id))
    collisions = [group for group in groups.values() if len(group) > 1]
    if collisions:
        listed = "; ".join(
            ", ".join(f"{name!r} (sub {sub})" for name, sub in group) for group in collisions
        )
        raise UsernamesCollide(
            f"{len(collisions)} group(s) of usernames differ only in case or Unicode form and "
            f"would become one account: {listed}. Delete (`authserver users delete SUB`) or "
            "rename all but one of each group, then run `authserver migrate` again; nothing "
            "was changed."
        )
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("username_key", sa.Text(), nullable=True))
    if rows:
        conn.execute(
            sa.text("UPDATE users SET username_key = :key WHERE id = :id"),
            [{"key": _key(username), "id": user_id} for user_id, username in rows],
        )
    with op.batch_alter_table("users") as table:
        table.create_unique_constraint("uq_users_username_key", ["username_key"])


def downgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.drop_constraint("uq_users_username_key", type_="unique")
        table.drop_column("username_key")
