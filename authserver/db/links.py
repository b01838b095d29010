"""SQL behind the one-time links in mail (authserver/accounts/links.py) and the reset requests.

Spending a reset link takes the user's row lock first (FOR UPDATE on Postgres; SQLite's BEGIN
IMMEDIATE lets one writer in at a time), then spends the link in one UPDATE … RETURNING: two
spenders of one link, or of two links of one user, take their turns on the user's row, and the
second finds its link spent or the password hash no longer the one it was mailed under. The
new hash is written only over the hash just read (a compare-and-set), so a password change by
a way that takes no lock (a rehash at login) cannot be overwritten either.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.links import (
    RESET,
    SIGNUP,
    VERIFY,
    Link,
    ResetRequest,
    ResetTarget,
    Spent,
    password_fingerprint,
)
from authserver.accounts.profiles import email_key
from authserver.audit import AuditEvent
from authserver.db.audit import append_audit
from authserver.db.engine import is_postgres, single_statements
from authserver.db.outbox import queue_mail
from authserver.mail.compose import Mail

_INSERT = text("""
INSERT INTO link_tokens (token_hash, kind, user_id, password_fingerprint, email, created_at,
                         expires_at, spent_at)
VALUES (:token_hash, :kind, :user_id, :password_fingerprint, :email, :created_at, :expires_at,
        NULL)
""")

_ASK = text("""
INSERT INTO reset_requests (id, email, locale, created_at) VALUES (:id, :email, :locale, :now)
""")

_TAKE = """
DELETE FROM reset_requests
WHERE id IN (SELECT id FROM reset_requests ORDER BY created_at LIMIT :limit{lock})
RETURNING email, locale
"""

_TARGET = text("""
SELECT id, email, password_hash, locale FROM users
WHERE email_key = :email_key AND deleted_at IS NULL AND NOT disabled
  AND password_hash IS NOT NULL
""")

_IN_USE = text("""
SELECT 1 FROM users WHERE email_key = :email_key AND id != :user_id AND deleted_at IS NULL
""")

_USER_OF = text("""
SELECT user_id FROM link_tokens
WHERE token_hash = :token_hash AND kind = :kind AND spent_at IS NULL AND expires_at > :now
""")

_LOCK_USER = """
SELECT password_hash FROM users WHERE id = :user_id AND deleted_at IS NULL AND NOT disabled
{lock}"""

# The spending: of two statements racing for one link, one finds it unspent.
_SPEND = text("""
UPDATE link_tokens SET spent_at = :now
WHERE token_hash = :token_hash AND kind = :kind AND spent_at IS NULL AND expires_at > :now
RETURNING user_id, password_fingerprint, email
""")

# A verification link of either kind: an address change's, or a sign-up's first.
_SPEND_VERIFICATION = text("""
UPDATE link_tokens SET spent_at = :now
WHERE token_hash = :token_hash AND kind IN (:verify, :signup) AND spent_at IS NULL
  AND expires_at > :now
RETURNING user_id, kind, email
""")

_SET_PASSWORD = text("""
UPDATE users SET password_hash = :new_hash
WHERE id = :user_id AND password_hash = :old_hash AND deleted_at IS NULL
""")

# Every other reset link of the user dies with the password (their fingerprint would not match
# any more either: this only says so in the table).
_SPEND_OTHER_RESETS = text("""
UPDATE link_tokens SET spent_at = :now
WHERE user_id = :user_id AND kind = 'reset' AND spent_at IS NULL
""")

_SET_EMAIL = text("""
UPDATE users SET email = :email, email_key = :email_key, email_verified = :verified
WHERE id = :user_id AND deleted_at IS NULL
""")

# A sign-up's account, stored disabled with its first address, may sign in from now on. Only
# while it still has that address: an operator who changed it since decided otherwise.
_ACTIVATE = text("""
UPDATE users SET email_verified = :verified, disabled = :enabled_now, signup_expires_at = NULL
WHERE id = :user_id AND deleted_at IS NULL AND disabled AND email_key = :email_key
""")


class SqlLinkStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        postgres = is_postgres(engine)
        self._take = text(_TAKE.format(lock=" FOR UPDATE SKIP LOCKED" if postgres else ""))
        self._lock_user = text(_LOCK_USER.format(lock="FOR UPDATE" if postgres else ""))

    async def issue(self, link: Link, *mails: Mail) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                _INSERT,
                {
                    "token_hash": link.token_hash,
                    "kind": link.kind,
                    "user_id": link.user_id,
                    "password_fingerprint": link.password_fingerprint,
                    "email": link.email,
                    "created_at": link.created_at,
                    "expires_at": link.expires_at,
                },
            )
            for mail in mails:
                await queue_mail(conn, mail, link.created_at)

    async def ask_reset(self, request: ResetRequest, now: int) -> None:
        values = {"email": request.email, "locale": request.locale, "now": now}
        async with self._single.begin() as conn:
            await conn.execute(_ASK, {"id": str(uuid.uuid4()), **values})

    async def take_reset_requests(self, limit: int) -> list[ResetRequest]:
        async with self._single.begin() as conn:
            rows = (await conn.execute(self._take, {"limit": limit})).all()
        return [ResetRequest(row.email, row.locale) for row in rows]

    async def email_in_use(self, email: str, by_other_than: str) -> bool:
        values = {"email_key": email_key(email), "user_id": by_other_than}
        async with self._single.connect() as conn:
            return (await conn.execute(_IN_USE, values)).first() is not None

    async def reset_target(self, email: str) -> ResetTarget | None:
        async with self._single.connect() as conn:
            row = (await conn.execute(_TARGET, {"email_key": email_key(email)})).first()
        if row is None:
            return None
        return ResetTarget(row.id, row.email, row.password_hash, row.locale)

    async def user_of(self, token_hash: str, kind: str, now: int) -> str | None:
        async with self._single.connect() as conn:
            found = await conn.execute(
                _USER_OF, {"token_hash": token_hash, "kind": kind, "now": now}
            )
            user_id: str | None = found.scalar()
        return user_id

    async def spend_reset(
        self,
        token_hash: str,
        new_password_hash: str,
        now: int,
        audit: Callable[[str], AuditEvent],
    ) -> str | None:
        user_id = await self.user_of(token_hash, RESET, now)
        if user_id is None:
            return None
        async with self._engine.begin() as conn:
            # The user's row first, then the link: every spender locks in this order.
            locked = (await conn.execute(self._lock_user, {"user_id": user_id})).first()
            spent = (
                await conn.execute(_SPEND, {"token_hash": token_hash, "kind": RESET, "now": now})
            ).first()
            if spent is None or spent.user_id != user_id or locked is None:
                return None
            current = locked.password_hash
            if password_fingerprint(current) != spent.password_fingerprint:
                return None  # the password changed since the link was mailed: it is dead
            changed = await conn.execute(
                _SET_PASSWORD,
                {"user_id": user_id, "old_hash": current, "new_hash": new_password_hash},
            )
            if not changed.rowcount:
                return None
            await conn.execute(_SPEND_OTHER_RESETS, {"user_id": user_id, "now": now})
            await append_audit(conn, [audit(user_id)])
        return user_id

    async def spend_verification(
        self, token_hash: str, now: int, audit: Callable[[str, str], AuditEvent]
    ) -> Spent:
        try:
            async with self._engine.begin() as conn:
                kinds = {"verify": VERIFY, "signup": SIGNUP}
                spent = (
                    await conn.execute(
                        _SPEND_VERIFICATION, {"token_hash": token_hash, "now": now, **kinds}
                    )
                ).first()
                if spent is None or spent.email is None:
                    return Spent.DEAD
                if spent.kind == SIGNUP:
                    activated = await conn.execute(
                        _ACTIVATE,
                        {
                            "user_id": spent.user_id,
                            "email_key": email_key(spent.email),
                            "verified": True,
                            "enabled_now": False,
                        },
                    )
                    if not activated.rowcount:
                        return Spent.DEAD
                    await append_audit(conn, [audit(spent.user_id, spent.email)])
                    return Spent.ACTIVATED
                values = {
                    "user_id": spent.user_id,
                    "email": spent.email,
                    "email_key": email_key(spent.email),
                    "verified": True,
                }
                changed = await conn.execute(_SET_EMAIL, values)
                if not changed.rowcount:
                    return Spent.DEAD
                await append_audit(conn, [audit(spent.user_id, spent.email)])
        except IntegrityError as exc:
            # Rolled back whole: the link stays unspent, the address is another live user's.
            if "email_key" in str(exc.orig):
                return Spent.EMAIL_TAKEN
            raise
        return Spent.DONE
