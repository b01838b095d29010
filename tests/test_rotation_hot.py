"""A rotation updates no indexed column of its family's row (0030): on Postgres every
rotation is then a HOT update, which writes no index entry for the family's six indexes."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.families import _ROTATE_POSTGRES
from authserver.services import Services
from authserver.tokens.refresh import parse_refresh_token, start_family
from tests.conftest import Registry

_COUNTS = text(
    "SELECT pg_stat_get_xact_tuples_updated(CAST('refresh_families' AS regclass)),"
    " pg_stat_get_xact_tuples_hot_updated(CAST('refresh_families' AS regclass))"
)


async def test_a_rotation_is_a_hot_update(
    services: Services, registry: Registry, spa: str, engine: AsyncEngine, database_url: str
) -> None:
    """The server's own rotating statement, run in one transaction whose counters Postgres
    keeps for it; then, as a control, with an index on the live hash (the model tried before,
    which made every rotation a non-HOT update): the same statement is no longer HOT."""
    if not database_url.startswith("postgresql"):
        pytest.skip("HOT updates are Postgres's")
    user = await registry.user("alice")
    now = services.clock()
    started = await start_family(
        services.families, user_id=user, client_id=spa, scope="profile", now=now,
        refresh_ttl=3600, session_ttl=86_400,
    )  # fmt: skip
    token = parse_refresh_token(started.refresh_token)
    live = bytes.fromhex(token.hash)

    async def rotate(conn: object, n: int) -> None:
        nonlocal live
        successor = hashlib.sha256(f"successor {n}".encode()).digest()
        params = {"family_id": token.family_id, "token_hash": live, "client_id": spa,
                  "now": now + n, "new_hash": successor, "new_expires_at": now + 3600,
                  "jkt": None}  # fmt: skip
        row = (await conn.execute(_ROTATE_POSTGRES, params)).first()  # type: ignore[attr-defined]
        assert row is not None, f"rotation {n} matched nothing"
        live = successor

    async with engine.connect() as conn:
        async with conn.begin() as transaction:
            for n in range(1, 6):
                await rotate(conn, n)
            updated, hot = (await conn.execute(_COUNTS)).one()
            assert (updated, hot) == (5, 5)
            await conn.execute(text("CREATE INDEX control ON refresh_families (token_hash)"))
            await rotate(conn, 6)
            updated, hot = (await conn.execute(_COUNTS)).one()
            assert (updated, hot) == (6, 5)
            await transaction.rollback()
