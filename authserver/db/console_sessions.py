"""SQL behind the console's sessions (console_sessions.py): one statement per verb."""

from __future__ import annotations

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.console_sessions import PENDING_TTL, REFRESH_CLAIM_SECONDS, Held
from authserver.db.models import ConsoleSessionRow as Row


class SqlConsoleSessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def begin(self, id_hash: str, sealed: bytes, now: int) -> None:
        async with self._engine.begin() as conn:
            # The expired ones go as new ones come (the index on expires_at): no purge job.
            await conn.execute(delete(Row).where(Row.expires_at <= now))
            await conn.execute(
                insert(Row).values(
                    id_hash=id_hash, sealed=sealed, created_at=now, expires_at=now + PENDING_TTL
                )
            )

    async def take_pending(self, id_hash: str, now: int) -> bytes | None:
        statement = (
            delete(Row)
            .where(Row.id_hash == id_hash, Row.sub.is_(None), Row.expires_at > now)
            .returning(Row.sealed)
        )
        async with self._engine.begin() as conn:
            sealed = (await conn.execute(statement)).scalar()
        return None if sealed is None else bytes(sealed)

    async def hold(
        self, id_hash: str, sub: str, sealed: bytes, access_expires_at: int, now: int, until: int
    ) -> None:
        values = {
            "id_hash": id_hash,
            "sub": sub,
            "sealed": sealed,
            "access_expires_at": access_expires_at,
            "created_at": now,
            "expires_at": until,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(Row).values(**values))

    async def find(self, id_hash: str, now: int) -> Held | None:
        statement = select(
            Row.id_hash, Row.sub, Row.sealed, Row.access_expires_at, Row.expires_at
        ).where(Row.id_hash == id_hash, Row.sub.is_not(None), Row.expires_at > now)
        async with self._engine.connect() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            return None
        return Held(row.id_hash, row.sub, bytes(row.sealed), row.access_expires_at, row.expires_at)

    async def claim_refresh(self, id_hash: str, now: int) -> bool:
        # One UPDATE with a row count: of two requests finding the access token expired, one
        # refreshes (a refresh token presented twice would end the session: reuse).
        statement = (
            update(Row)
            .where(
                Row.id_hash == id_hash,
                Row.sub.is_not(None),
                or_(Row.refreshing_at.is_(None), Row.refreshing_at <= now - REFRESH_CLAIM_SECONDS),
            )
            .values(refreshing_at=now)
        )
        async with self._engine.begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def refreshed(self, id_hash: str, sealed: bytes, access_expires_at: int) -> None:
        statement = (
            update(Row)
            .where(Row.id_hash == id_hash)
            .values(sealed=sealed, access_expires_at=access_expires_at, refreshing_at=None)
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def end(self, id_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(Row).where(Row.id_hash == id_hash))
