"""SQL behind DPoP's replay check: a proof's key inserted once, in one statement."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.direct import fetch_row
from authserver.db.engine import is_postgres, single_statements

# The primary key settles a race between instances: of two INSERTs of one key, one inserts.
# A row whose window is over may be taken again (the purge may not have come by yet); its
# proof could not pass the iat check any more, so this is a new proof with the same jti.
_FIRST_USE = text("""
INSERT INTO dpop_proofs (proof_key, expires_at) VALUES (:key, :expires_at)
ON CONFLICT (proof_key) DO UPDATE SET expires_at = excluded.expires_at
WHERE dpop_proofs.expires_at <= :now
RETURNING proof_key
""")


class SqlProofStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._direct = engine if is_postgres(engine) else None
        self._engine = single_statements(engine)

    async def first_use(self, key: str, expires_at: int, now: int) -> bool:
        params = {"key": key, "expires_at": expires_at, "now": now}
        if self._direct is not None:
            # Every DPoP request runs it: straight through asyncpg (db/direct.py), its own
            # transaction as before.
            return await fetch_row(self._direct, _FIRST_USE, params) is not None
        async with self._engine.begin() as conn:
            row = (await conn.execute(_FIRST_USE, params)).first()
        return row is not None
