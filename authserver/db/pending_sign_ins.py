"""SQL behind pending sign-ins: a password checked, the second factor awaited."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.login_sessions import PendingSignIn
from authserver.db.predicates import user_enabled

_HOLD = text("""
INSERT INTO pending_sign_ins (token_hash, user_id, client_id, password_at, expires_at)
VALUES (:token_hash, :user_id, :client_id, :password_at, :expires_at)
""")

_FIND = text(f"""
SELECT p.user_id, p.client_id, p.password_at, p.expires_at
FROM pending_sign_ins AS p JOIN users AS u ON u.id = p.user_id
WHERE p.token_hash = :token_hash AND p.expires_at > :now AND {user_enabled("u")}
""")

# Single use: of two requests finishing one pending sign-in, one deletes the row.
_RELEASE = text("""
DELETE FROM pending_sign_ins WHERE token_hash = :token_hash AND expires_at > :now
RETURNING user_id, client_id, password_at, expires_at
""")

_PURGE = text("DELETE FROM pending_sign_ins WHERE expires_at <= :now")


class SqlPendingSignInStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def hold(self, pending: PendingSignIn, token_hash: str) -> None:
        params = {
            "token_hash": token_hash,
            "user_id": pending.user_id,
            "client_id": pending.client_id,
            "password_at": pending.password_at,
            "expires_at": pending.expires_at,
        }
        async with self._engine.begin() as conn:
            # The expired ones go as new ones come (the index on expires_at): no purge job.
            await conn.execute(_PURGE, {"now": pending.password_at})
            await conn.execute(_HOLD, params)

    async def find(self, token_hash: str, now: int) -> PendingSignIn | None:
        async with self._engine.begin() as conn:
            row = (await conn.execute(_FIND, {"token_hash": token_hash, "now": now})).first()
        return None if row is None else PendingSignIn(*row)

    async def release(self, token_hash: str, now: int) -> PendingSignIn | None:
        async with self._engine.begin() as conn:
            row = (await conn.execute(_RELEASE, {"token_hash": token_hash, "now": now})).first()
        return None if row is None else PendingSignIn(*row)
