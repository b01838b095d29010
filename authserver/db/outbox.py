"""SQL behind the mail outbox: queued by the use cases (mail.Outbox), drained by the sender
(mail/sender.py MailQueue).

The claim is one statement that picks the due rows and leases them: on Postgres the rows are
picked `FOR UPDATE SKIP LOCKED`, so concurrent senders take disjoint rows without waiting on
each other, and a row another sender has just leased fails the re-check of `next_attempt_at`;
on SQLite the engine's BEGIN IMMEDIATE lets one writer in at a time. A leased row's
`next_attempt_at` is the lease's end, so a sender that dies leaves its rows due again then.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.db.engine import is_postgres, single_statements
from authserver.mail.compose import Mail
from authserver.mail.sender import Queued

_INSERT = text("""
INSERT INTO mail_outbox (id, recipient, subject, text_body, html_body, template, attempts,
                         next_attempt_at, claim, created_at)
VALUES (:id, :recipient, :subject, :text_body, :html_body, :template, 0, :now, NULL, :now)
""")

_CLAIM = """
UPDATE mail_outbox SET claim = :claim, attempts = attempts + 1, next_attempt_at = :until
WHERE id IN (SELECT id FROM mail_outbox WHERE next_attempt_at <= :now
             ORDER BY next_attempt_at, created_at LIMIT :limit{lock})
RETURNING id, recipient, subject, text_body, html_body, template, attempts
"""

_SENT = text("DELETE FROM mail_outbox WHERE id = :id")
# Only while the claim is still this sender's: after its lease ended another sender may hold
# the row, and its claim must not be pushed back or deleted.
_RETRY = text("""
UPDATE mail_outbox SET next_attempt_at = :at, claim = NULL WHERE id = :id AND claim = :claim
""")
_DROP = text("DELETE FROM mail_outbox WHERE id = :id AND claim = :claim")


async def queue_mail(conn: AsyncConnection, mail: Mail, now: int) -> str:
    """Queues `mail` in the caller's transaction (a reset token and its mail commit together,
    or neither does); due at once. Returns its id."""
    mail_id = str(uuid.uuid4())
    await conn.execute(
        _INSERT,
        {
            "id": mail_id,
            "recipient": mail.to,
            "subject": mail.subject,
            "text_body": mail.text,
            "html_body": mail.html,
            "template": mail.template,
            "now": now,
        },
    )
    return mail_id


class SqlOutbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        lock = " FOR UPDATE SKIP LOCKED" if is_postgres(engine) else ""
        self._claim = text(_CLAIM.format(lock=lock))

    async def enqueue(self, mail: Mail, now: int) -> str:
        async with self._engine.begin() as conn:
            return await queue_mail(conn, mail, now)

    async def claim(self, claim: str, now: int, lease: int, limit: int) -> list[Queued]:
        async with self._single.begin() as conn:
            rows = await conn.execute(
                self._claim, {"claim": claim, "now": now, "until": now + lease, "limit": limit}
            )
            return [
                Queued(
                    row.id,
                    Mail(row.recipient, row.subject, row.text_body, row.html_body, row.template),
                    row.attempts,
                )
                for row in rows
            ]

    async def sent(self, mail_id: str) -> None:
        async with self._single.begin() as conn:
            await conn.execute(_SENT, {"id": mail_id})

    async def retry(self, claim: str, mail_id: str, at: int) -> None:
        async with self._single.begin() as conn:
            await conn.execute(_RETRY, {"id": mail_id, "claim": claim, "at": at})

    async def drop(self, claim: str, mail_id: str) -> None:
        async with self._single.begin() as conn:
            await conn.execute(_DROP, {"id": mail_id, "claim": claim})
