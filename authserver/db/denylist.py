"""SQL behind the denylist: denied access tokens, and whether a token's jti, session or signing
key is revoked, asked in one statement."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.columns import family_key
from authserver.db.direct import fetch_row
from authserver.db.engine import is_postgres, single_statements
from authserver.db.models import FamilyRow
from authserver.tokens.denylist import Revocations

# A token signed by a revoked key dies with it at once, on every instance, whatever that
# instance's key ring still holds (it drops the key only at its next reload). So does the
# token of a client disabled or deleted, or issued before the client's revocation mark (set
# on disable, re-enable and delete: re-enabling brings back nothing issued before it).
_DENIED = (
    "(EXISTS (SELECT 1 FROM denied_access_tokens WHERE jti = :jti)"
    " OR EXISTS (SELECT 1 FROM signing_keys WHERE kid = :kid AND state = 'revoked')"
    " OR EXISTS (SELECT 1 FROM clients WHERE client_id = :client_id AND (disabled"
    " OR deleted_at IS NOT NULL OR tokens_revoked_before >= :iat)))"
)
# The feed's clients: marked recently enough that some of their tokens may still verify, or
# disabled or deleted now.
_REVOKED_CLIENTS = text("""
SELECT client_id, CASE WHEN disabled OR deleted_at IS NOT NULL THEN :now
                       ELSE tokens_revoked_before END AS revoked_before
FROM clients
WHERE tokens_revoked_before >= :since OR (disabled AND COALESCE(deleted_at, :now) >= :since)
""")
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

    async def access_revoked(
        self,
        jti: str,
        sid: str | None,
        now: int,
        kid: str = "",
        client_id: str = "",
        issued_at: int = 0,
    ) -> bool:
        params: dict[str, object] = {"jti": jti, "kid": kid, "client_id": client_id}
        params["iat"] = issued_at
        if sid is None:
            statement = _ACCESS_REVOKED
        elif family_key(sid) is None:
            return True  # no session has this sid, so it is over (Postgres would refuse it)
        else:
            statement = _ACCESS_REVOKED_IN_SESSION
            params.update(sid=sid, now=now)
        if self._postgres:
            # Asked by every introspection and admin request: straight through asyncpg.
            row = await fetch_row(self._engine, statement, params)
            return bool(row is not None and row[0])
        async with self._single.connect() as conn:
            return bool((await conn.execute(statement, params)).scalar())

    async def recent_revocations(self, since: int, now: int) -> Revocations:
        # A range scan on ix_refresh_families_revoked_at (0004).
        async with self._single.connect() as conn:
            sids = await conn.execute(select(FamilyRow.id).where(FamilyRow.revoked_at >= since))
            jtis = await conn.execute(
                text("SELECT jti FROM denied_access_tokens WHERE expires_at > :now"),
                {"now": now},
            )
            # Few rows: clients are not many, and only the recently changed are read.
            clients = await conn.execute(_REVOKED_CLIENTS, {"since": since, "now": now})
            return Revocations(
                list(sids.scalars()),
                list(jtis.scalars()),
                {row.client_id: row.revoked_before for row in clients},
            )
