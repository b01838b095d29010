"""The rotation statement's direct asyncpg path: a lost connection is a 503 and is replaced,
an error the server answered is not mistaken for an outage, and the pool is not drained."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.direct import fetch_row
from authserver.db.failures import unavailable
from tests._proxy import FaultyProxy, engine_through_proxy, lose_every_connection

ANSWER = text("SELECT CAST(:a AS integer) + CAST(:b AS integer) AS total")
DIVIDE = text("SELECT 1 / CAST(:zero AS integer) AS never")


@pytest.fixture
async def proxied(database_url: str) -> AsyncIterator[tuple[AsyncEngine, FaultyProxy]]:
    async with engine_through_proxy(database_url, pool_size=1, max_overflow=0) as pair:
        yield pair


async def test_parameters_are_bound_by_name(proxied: tuple[AsyncEngine, FaultyProxy]) -> None:
    engine, _ = proxied
    row = await fetch_row(engine, ANSWER, {"b": 2, "a": 40})
    assert row is not None and row["total"] == 42


async def test_a_lost_connection_is_unavailable_and_replaced(
    proxied: tuple[AsyncEngine, FaultyProxy],
) -> None:
    engine, proxy = proxied
    assert await fetch_row(engine, ANSWER, {"a": 1, "b": 1}) is not None
    await lose_every_connection(proxy)

    with pytest.raises(OSError) as lost:
        await fetch_row(engine, ANSWER, {"a": 1, "b": 1})
    assert unavailable(lost.value) is not None  # a 503, not a 500
    # The one pooled connection was thrown away, not given back broken.
    row = await fetch_row(engine, ANSWER, {"a": 1, "b": 2})
    assert row is not None and row["total"] == 3


async def test_an_error_the_server_answered_is_not_an_outage(
    proxied: tuple[AsyncEngine, FaultyProxy],
) -> None:
    engine, _ = proxied
    for _ in range(3):  # a pool of one: a connection not given back would hang the next call
        with pytest.raises(asyncpg.DivisionByZeroError) as failed:
            await fetch_row(engine, DIVIDE, {"zero": 0})
        assert unavailable(failed.value) is None  # a bug is a 500, not a retry
    assert await fetch_row(engine, ANSWER, {"a": 0, "b": 0}) is not None
