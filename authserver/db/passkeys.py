"""SQL behind passkeys: the credentials, their counters, and the ceremonies' challenges.

A challenge is spent by one DELETE … RETURNING and a counter raised by one conditional UPDATE:
a racing statement on the same row waits for the winner, re-checks its WHERE on the committed
row and matches nothing (SQLite's BEGIN IMMEDIATE serialises them outright).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.passkeys import Challenge, StoredPasskey
from authserver.audit import AuditEvent
from authserver.db.audit import append_audit
from authserver.db.engine import is_postgres

_COLUMNS = (
    "id, user_id, credential_id, public_key, sign_count, transports, name, created_at, last_used_at"
)

_ADD = text(f"""
INSERT INTO passkeys ({_COLUMNS})
VALUES (:id, :user_id, :credential_id, :public_key, :sign_count, :transports, :name,
        :created_at, NULL)
""")

_OF_USER = text(f"SELECT {_COLUMNS} FROM passkeys WHERE user_id = :user_id ORDER BY created_at, id")
_BY_CREDENTIAL = text(f"SELECT {_COLUMNS} FROM passkeys WHERE credential_id = :credential_id")
_BY_ID = text("SELECT 1 FROM passkeys WHERE id = :id AND user_id = :user_id")

# WebAuthn §7.2 step 21: a count not above the stored one "is a signal that the authenticator
# may be cloned"; 0 and 0 is an authenticator that keeps no counter.
_USE = text("""
UPDATE passkeys SET sign_count = :count, last_used_at = :now
WHERE id = :id AND (sign_count < :count OR (sign_count = 0 AND :count = 0))
""")

_REMOVE = text("DELETE FROM passkeys WHERE id = :id AND user_id = :user_id")
# Another factor stays after this passkey goes: a TOTP app, or another passkey.
_OTHER_FACTOR = text("""
SELECT 1 FROM second_factors WHERE user_id = :user_id
UNION ALL SELECT 1 FROM passkeys WHERE user_id = :user_id AND id <> :id
""")
# Removals of one user's passkeys take turns on the user's row (SQLite's BEGIN IMMEDIATE
# serialises them anyway): two browsers removing the last two passkeys at once remove one.
_LOCK_USER = text("SELECT 1 FROM users WHERE id = :user_id FOR UPDATE")

_HOLD = text("""
INSERT INTO webauthn_challenges (challenge_hash, purpose, user_id, browser, expires_at)
VALUES (:challenge_hash, :purpose, :user_id, :browser, :expires_at)
""")
_PURGE = text("DELETE FROM webauthn_challenges WHERE expires_at <= :now")

# Single use: of two answers carrying one challenge, one deletes the row.
_SPEND = text("""
DELETE FROM webauthn_challenges
WHERE challenge_hash = :challenge_hash AND purpose = :purpose AND browser = :browser
  AND expires_at > :now
RETURNING purpose, user_id, browser, expires_at
""")


class SqlPasskeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = is_postgres(engine)

    async def add(self, passkey: StoredPasskey, audit: Sequence[AuditEvent] = ()) -> bool:
        params = {
            "id": passkey.id,
            "user_id": passkey.user_id,
            "credential_id": passkey.credential_id,
            "public_key": passkey.public_key,
            "sign_count": passkey.sign_count,
            "transports": " ".join(passkey.transports) or None,
            "name": passkey.name,
            "created_at": passkey.created_at,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_ADD, params)
                await append_audit(conn, audit)
        except IntegrityError:  # uq_passkeys_credential_id: registered already
            return False
        return True

    async def of_user(self, user_id: str) -> list[StoredPasskey]:
        async with self._engine.begin() as conn:
            rows = (await conn.execute(_OF_USER, {"user_id": user_id})).all()
        return [_passkey(row) for row in rows]

    async def by_credential(self, credential_id: str) -> StoredPasskey | None:
        async with self._engine.begin() as conn:
            row = (await conn.execute(_BY_CREDENTIAL, {"credential_id": credential_id})).first()
        return None if row is None else _passkey(row)

    async def use(self, passkey_id: str, sign_count: int, now: int) -> bool:
        async with self._engine.begin() as conn:
            params = {"id": passkey_id, "count": sign_count, "now": now}
            return (await conn.execute(_USE, params)).rowcount == 1

    async def remove(
        self, passkey_id: str, user_id: str, audit: Sequence[AuditEvent] = ()
    ) -> bool | None:
        params = {"id": passkey_id, "user_id": user_id}
        async with self._engine.begin() as conn:
            if self._postgres:
                await conn.execute(_LOCK_USER, params)
            if (await conn.execute(_OTHER_FACTOR, params)).first() is None:
                mine = (await conn.execute(_BY_ID, params)).first() is not None
                return None if mine else False
            removed = (await conn.execute(_REMOVE, params)).rowcount
            if removed:
                await append_audit(conn, audit)
        return removed == 1

    async def hold_challenge(self, challenge_hash: str, challenge: Challenge, now: int) -> None:
        params = {
            "challenge_hash": challenge_hash,
            "purpose": challenge.purpose,
            "user_id": challenge.user_id,
            "browser": challenge.browser,
            "expires_at": challenge.expires_at,
        }
        async with self._engine.begin() as conn:
            # The expired ones go as new ones come (the index on expires_at): no purge job.
            await conn.execute(_PURGE, {"now": now})
            await conn.execute(_HOLD, params)

    async def spend_challenge(
        self, challenge_hash: str, purpose: str, browser: str, now: int
    ) -> Challenge | None:
        params = {"challenge_hash": challenge_hash, "purpose": purpose, "browser": browser}
        async with self._engine.begin() as conn:
            row = (await conn.execute(_SPEND, {**params, "now": now})).first()
        return None if row is None else Challenge(*row)


def _passkey(row: Row[tuple[object, ...]]) -> StoredPasskey:
    m = row._mapping
    return StoredPasskey(
        id=m["id"],
        user_id=m["user_id"],
        credential_id=m["credential_id"],
        public_key=bytes(m["public_key"]),
        sign_count=int(m["sign_count"]),
        transports=tuple((m["transports"] or "").split()),
        name=m["name"],
        created_at=int(m["created_at"]),
        last_used_at=m["last_used_at"],
    )
