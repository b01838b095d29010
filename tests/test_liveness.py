"""Pooled connections are pinged only after they have been idle: the database restarting
behind an idle pool costs no request, and a busy pool pays no round trips for pings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from authserver.db.liveness import ping_when_idle
from tests._proxy import FaultyProxy

IDLE = 0.3


@pytest.fixture
async def proxied(database_url: str) -> AsyncIterator[tuple[AsyncEngine, FaultyProxy]]:
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("an embedded SQLite database has no connection to lose")
    proxy = FaultyProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    engine = create_async_engine(via_proxy, pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_seconds=IDLE)
    try:
        yield engine, proxy
    finally:
        await engine.dispose()
        await proxy.cut()


async def select_one(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT 1"))).scalar_one())


async def lose_every_connection(proxy: FaultyProxy) -> None:
    """What a database restart does to a pool: every open connection is reset."""
    await proxy.cut()
    await proxy.restore()


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
