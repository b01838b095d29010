"""Pooled connections are pinged only after they have been idle: the database restarting
behind an idle pool costs no request, and a busy pool pays no round trips for pings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.liveness import ping_when_idle
from tests._proxy import FaultyProxy, engine_through_proxy, lose_every_connection

IDLE = 0.3

# A server that restarts behind the pool: the embedded SQLite has none.
pytestmark = pytest.mark.postgres_only


@pytest.fixture
async def proxied(database_url: str) -> AsyncIterator[tuple[AsyncEngine, FaultyProxy]]:
    async with engine_through_proxy(database_url, pool_size=1, max_overflow=0) as (engine, proxy):
        ping_when_idle(engine, idle_seconds=IDLE)
        yield engine, proxy


async def select_one(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT 1"))).scalar_one())


async def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(
    proxied: tuple[AsyncEngine, FaultyProxy],
) -> None:
    engine, proxy = proxied
    assert await select_one(engine) == 1
    await lose_every_connection(proxy)
    await asyncio.sleep(IDLE + 0.1)

    assert await select_one(engine) == 1  # the ping found it dead; a new one answered


async def test_a_connection_used_a_moment_ago_is_trusted_and_one_failure_resets_the_pool(
    proxied: tuple[AsyncEngine, FaultyProxy],
) -> None:
    engine, proxy = proxied
    assert await select_one(engine) == 1
    await lose_every_connection(proxy)

    # No ping within the window: the statement meets the dead connection (the request
    # would be answered 503 by db/failures.py) ...
    with pytest.raises(DBAPIError) as failed:
        await select_one(engine)
    assert failed.value.connection_invalidated
    # ... and SQLAlchemy has dropped the pool's connections, so the next one works.
    assert await select_one(engine) == 1
