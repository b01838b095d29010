"""SQL behind second factors: enrolment, and accepting a code or a recovery code once.

Each acceptance is one conditional UPDATE: a racing UPDATE of the same row waits for the
winner, re-checks its WHERE on the committed row and matches nothing (SQLite's BEGIN IMMEDIATE
serialises them outright), so of any number of instances presenting one code, one wins.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.passkeys import PASSKEY
from authserver.accounts.second_factors import TOTP, StoredTotp
from authserver.audit import AuditEvent
from authserver.db.audit import append_audit

_ADD = text("""
INSERT INTO second_factors (id, user_id, kind, sealed_secret, last_step, created_at)
VALUES (:id, :user_id, :kind, :sealed_secret, :last_step, :now)
""")

_TOTP = text("""
SELECT id, sealed_secret, last_step FROM second_factors WHERE user_id = :user_id AND kind = :kind
""")

# Passkeys (db/passkeys.py) are a kind of factor too, kept in their own table.
_KINDS = text(f"""
SELECT kind FROM second_factors WHERE user_id = :user_id
UNION SELECT '{PASSKEY}' AS kind FROM passkeys WHERE user_id = :user_id
ORDER BY kind
""")

# RFC 6238 §5.2: a code accepted once is not accepted again, nor any code of an earlier step.
_ACCEPT_STEP = text("""
UPDATE second_factors SET last_step = :step
WHERE id = :id AND (last_step IS NULL OR last_step < :step)
""")

_SPEND_CODE = text("""
UPDATE recovery_codes SET used_at = :now
WHERE code_hash = :code_hash AND user_id = :user_id AND used_at IS NULL
""")

_DROP_CODES = text("DELETE FROM recovery_codes WHERE user_id = :user_id")
_ADD_CODE = text("""
INSERT INTO recovery_codes (code_hash, user_id, created_at) VALUES (:code_hash, :user_id, :now)
""")
_DROP_FACTORS = text("DELETE FROM second_factors WHERE user_id = :user_id")
_DROP_PASSKEYS = text("DELETE FROM passkeys WHERE user_id = :user_id")


class SqlSecondFactorStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add_totp(
        self, factor_id: str, user_id: str, sealed_secret: bytes, step: int, now: int,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:  # fmt: skip
        params = {
            "id": factor_id,
            "user_id": user_id,
            "kind": TOTP,
            "sealed_secret": sealed_secret,
            "last_step": step,
            "now": now,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_ADD, params)
                await append_audit(conn, audit)
        except IntegrityError:  # uq_second_factors_one_totp: one enrolled first
            return False
        return True

    async def totp(self, user_id: str) -> StoredTotp | None:
        async with self._engine.begin() as conn:
            row = (await conn.execute(_TOTP, {"user_id": user_id, "kind": TOTP})).first()
        if row is None:
            return None
        return StoredTotp(row.id, bytes(row.sealed_secret), row.last_step)

    async def kinds(self, user_id: str) -> list[str]:
        async with self._engine.begin() as conn:
            return list((await conn.execute(_KINDS, {"user_id": user_id})).scalars())

    async def accept_step(self, factor_id: str, step: int) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(_ACCEPT_STEP, {"id": factor_id, "step": step})
        return result.rowcount == 1

    async def replace_recovery_codes(
        self, user_id: str, code_hashes: Sequence[str], now: int
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(_DROP_CODES, {"user_id": user_id})
            await conn.execute(
                _ADD_CODE, [{"code_hash": h, "user_id": user_id, "now": now} for h in code_hashes]
            )

    async def spend_recovery_code(self, user_id: str, code_hash: str, now: int) -> bool:
        params = {"user_id": user_id, "code_hash": code_hash, "now": now}
        async with self._engine.begin() as conn:
            result = await conn.execute(_SPEND_CODE, params)
        return result.rowcount == 1

    async def remove_all(self, user_id: str, audit: Sequence[AuditEvent] = ()) -> int:
        async with self._engine.begin() as conn:
            await conn.execute(_DROP_CODES, {"user_id": user_id})
            removed = (await conn.execute(_DROP_FACTORS, {"user_id": user_id})).rowcount
            removed += (await conn.execute(_DROP_PASSKEYS, {"user_id": user_id})).rowcount
            await append_audit(conn, audit)
        return removed
