"""SQL behind registration.py: initial access tokens, spent in one statement, and a
registration stored with its audit event in one transaction."""

from __future__ import annotations

from sqlalchemy import ColumnElement, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.audit import AuditEvent
from authserver.clients import Client
from authserver.db.accounts import insert_client
from authserver.db.audit import append_audit
from authserver.db.models import InitialAccessTokenRow
from authserver.registration import InitialAccessToken

_TOKEN = InitialAccessTokenRow


def _registers(now: int) -> ColumnElement[bool]:
    """The token still registers a client: unexpired, with uses left."""
    uses_left = or_(_TOKEN.max_uses.is_(None), _TOKEN.uses < _TOKEN.max_uses)
    return (_TOKEN.expires_at > now) & uses_left


class SqlRegistrationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_initial_token(self, token: InitialAccessToken, audit: AuditEvent) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(_TOKEN).values(
                    token_hash=token.token_hash,
                    created_at=token.created_at,
                    expires_at=token.expires_at,
                    max_uses=token.max_uses,
                    uses=0,
                )
            )
            await append_audit(conn, [audit])

    async def live_initial_tokens(self, now: int, limit: int) -> list[InitialAccessToken]:
        statement = (
            select(_TOKEN)
            .where(_registers(now))
            .order_by(_TOKEN.created_at.desc(), _TOKEN.token_hash)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            InitialAccessToken(r.token_hash, r.created_at, r.expires_at, r.max_uses, r.uses)
            for r in rows
        ]

    async def revoke_initial_token(self, token_hash: str, now: int, audit: AuditEvent) -> bool:
        async with self._engine.begin() as conn:
            ended = await conn.execute(
                update(_TOKEN)
                .where(_TOKEN.token_hash == token_hash, _registers(now))
                .values(expires_at=now)
            )
            if not ended.rowcount:
                return False
            await append_audit(conn, [audit])
        return True

    async def register(
        self, client: Client, initial_token_hash: str | None, now: int, audit: AuditEvent
    ) -> bool:
        async with self._engine.begin() as conn:
            if initial_token_hash is not None:
                # ONE statement checks and counts the use: racing registrations queue on the
                # row, and each re-reads `uses` as the one before left it.
                spent = await conn.execute(
                    update(_TOKEN)
                    .where(_TOKEN.token_hash == initial_token_hash, _registers(now))
                    .values(uses=_TOKEN.uses + 1)
                )
                if not spent.rowcount:
                    return False
            # The client_id is 144 random bits (registration.new_client_id): never taken.
            await insert_client(conn, client, now)
            await append_audit(conn, [audit])
        return True
