"""SQL behind the denylist: denied access tokens, and whether a token's jti, session or signing
key is revoked, asked in one statement."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.direct import fetch_row
from authserver.db.engine import is_postgres, single_statements
from authserver.db.models import FamilyRow

# A token signed by a revoked key dies with it at once, on every instance, whatever that
# instance's key ring still holds (it drops the key only at its next reload).
_DENIED = (
    "(EXISTS (SELECT 1 FROM denied_access_tokens WHERE jti = :jti)"
    " OR EXISTS (SELECT 1 FROM signing_keys WHERE kid = :kid AND state = 'revoked'))"
)
_ACCESS_REVOKED = text(f"SELECT {_DENIED}")
# A session that is revoked, over, or gone takes its access tokens with it.
_ACCESS_REVOKED_IN_SESSION = text(f"""
SELECT {_DENIED} OR NOT EXISTS (
    SELECT 1 FROM refresh_families
    WHERE id = :sid AND revoked_at IS NULL AND expires_at > :now)
""")


class SqlDenylist:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        self._postgres = is_postgres(engine)

    async def deny(self, jti: str, expires_at: int, now: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM denied_access_tokens WHERE expires_at <= :now"), {"now": now}
            )
            await conn.execute(
                text(
                    "INSERT INTO denied_access_tokens (jti, expires_at) VALUES (:jti, :expires_at)"
                    " ON CONFLICT (jti) DO NOTHING"
                ),
                {"jti": jti, "expires_at": expires_at},
            )

    async def access_revoked(self, jti: str, sid: str | None, now: int, kid: str = "") -> bool:
        params: dict[str, object]
        if sid is None:
            statement, params = _ACCESS_REVOKED, {"jti": jti, "kid": kid}
        else:
            statement = _ACCESS_REVOKED_IN_SESSION
            params = {"jti": jti, "kid": kid, "sid": sid, "now": now}
        if self._postgres:
            # Asked by every introspection and admin request: straight through asyncpg.
            row = await fetch_row(self._engine, statement, params)
            return bool(row is not None and row[0])
        async with self._single.connect() as conn:
            return bool((await conn.execute(statement, params)).scalar())

    async def recent_revocations(self, since: int, now: int) -> tuple[list[str], list[str]]:
        # A range scan on ix_refresh_families_revoked_at (0004).
        async with self._single.connect() as conn:
            sids = await conn.execute(select(FamilyRow.id).where(FamilyRow.revoked_at >= since))
            jtis = await conn.execute(
                text("SELECT jti FROM denied_access_tokens WHERE expires_at > :now"),
                {"now": now},
            )
            return list(sids.scalars()), list(jtis.scalars())
