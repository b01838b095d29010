"""clients.document_expires_at: client ID metadata documents cached in the clients table (issue 25)

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 14:30:00

A client whose client_id is an https URL naming its metadata document
(draft-ietf-oauth-client-id-metadata-document) is kept as an ordinary `clients` row
(registration "document"), so consent grants, codes and refresh families reference it by the
same foreign key as any client, and operators list, disable and delete it as any client.
Each successful fetch upserts the row in one statement and sets this column: until then the
document is fresh (its HTTP caching headers, at most 24 h), on every instance. NULL for every
other client. The downgrade drops the column: such rows then stay as public clients.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("document_expires_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("document_expires_at")
