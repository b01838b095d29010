"""The hot statements' direct asyncpg path: a lost connection is a 503 and is replaced, an error
the server answered is not mistaken for an outage, and the pool is not drained. A connection is
leased between statements (at most half the pool) and given back when the pool runs out, when
idle, when the pool is reset, and on dispose."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.direct import HOLD_SECONDS, fetch_row
from authserver.db.failures import unavailable
from authserver.db.liveness import IDLE_SECONDS, ping_when_idle
from tests._proxy import FaultyProxy, engine_through_proxy, lose_every_connection

ANSWER = text("SELECT CAST(:a AS integer) + CAST(:b AS integer) AS total")
DIVIDE = text("SELECT 1 / CAST(:zero AS integer) AS never")
NAP = text("SELECT true AS slept FROM pg_sleep(CAST(:seconds AS float))")

# asyncpg's own path, a proxy between it and the server: nothing of it exists on SQLite.
pytestmark = pytest.mark.postgres_only


@pytest.fixture(params=[1, 2], ids=["pool of 1, nothing leased", "pool of 2, one lease"])
def pool_size(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
async def proxied(
    database_url: str, pool_size: int
) -> AsyncIterator[tuple[AsyncEngine, FaultyProxy]]:
    async with engine_through_proxy(database_url, pool_size=pool_size, max_overflow=0) as pair:
        yield pair


class Proxied:
    """An engine through a proxy, its pool's checkouts counted, its connections named."""

    def __init__(self, engine: AsyncEngine, proxy: FaultyProxy, name: str) -> None:
        self.engine, self.proxy, self.name = engine, proxy, name
        self.checkouts = 0

        def counted(*_: Any) -> None:
            self.checkouts += 1

        event.listen(engine.sync_engine, "checkout", counted)

    def checked_out(self) -> int:
        return int(self.engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]


@pytest.fixture
async def leasing(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Proxied]:
    size = getattr(request, "param", 2)
    name = f"direct-{uuid.uuid4().hex[:12]}"
    async with engine_through_proxy(
        database_url,
        pool_size=size,
        max_overflow=0,
        pool_timeout=3,
        connect_args={"server_settings": {"application_name": name}},
    ) as (engine, proxy):
        yield Proxied(engine, proxy, name)


async def total(engine: AsyncEngine, a: int, b: int) -> int:
    row = await fetch_row(engine, ANSWER, {"b": b, "a": a})
    assert row is not None
    return int(row["total"])


async def test_parameters_are_bound_by_name(proxied: tuple[AsyncEngine, FaultyProxy]) -> None:
    engine, _ = proxied
    assert await total(engine, 40, 2) == 42


async def test_a_lost_connection_is_unavailable_and_replaced(
    proxied: tuple[AsyncEngine, FaultyProxy],
) -> None:
    engine, proxy = proxied
    assert await total(engine, 1, 1) == 2
    await lose_every_connection(proxy)

    with pytest.raises(OSError) as lost:
        await fetch_row(engine, ANSWER, {"a": 1, "b": 1})
    assert unavailable(lost.value) is not None  # a 503, not a 500
    # The connection was thrown away (the lease with it), not given back broken.
    assert await total(engine, 1, 2) == 3


async def test_an_error_the_server_answered_is_not_an_outage(
    proxied: tuple[AsyncEngine, FaultyProxy],
) -> None:
    engine, _ = proxied
    for _ in range(3):  # a pool of one: a connection not given back would hang the next call
        with pytest.raises(asyncpg.DivisionByZeroError) as failed:
            await fetch_row(engine, DIVIDE, {"zero": 0})
        assert unavailable(failed.value) is None  # a bug is a 500, not a retry
    assert await fetch_row(engine, ANSWER, {"a": 0, "b": 0}) is not None
    assert engine.sync_engine.pool.checkedout() <= 1  # type: ignore[attr-defined]


async def test_statements_one_after_another_share_one_checkout(leasing: Proxied) -> None:
    for n in range(5):
        assert await total(leasing.engine, n, 1) == n + 1
    # The short way ran: one checkout for five statements (each checked out its own before).
    assert leasing.checkouts == 1
    assert leasing.checked_out() == 1  # held between them ...
    await asyncio.sleep(HOLD_SECONDS * 3)
    assert leasing.checked_out() == 0  # ... and given back once idle


@pytest.mark.parametrize("leasing", [6], indirect=True)
async def test_at_most_half_the_pool_is_leased(leasing: Proxied) -> None:
    slept = await asyncio.gather(
        *(fetch_row(leasing.engine, NAP, {"seconds": 0.2}) for _ in range(4))
    )
    assert all(row is not None and row["slept"] for row in slept)
    assert leasing.checkouts == 3  # the fourth waited for the first lease given back


async def test_past_the_leases_a_statement_waits_for_one(leasing: Proxied) -> None:
    slept = await asyncio.gather(
        *(fetch_row(leasing.engine, NAP, {"seconds": 0.05}) for _ in range(3))
    )
    assert all(row is not None and row["slept"] for row in slept)
    assert leasing.checkouts == 1  # one lease, handed from statement to statement


@pytest.mark.parametrize("leasing", [2], indirect=True)
async def test_a_wait_for_a_lease_ends_with_the_pool_timeout(leasing: Proxied) -> None:
    leasing.engine.sync_engine.pool._timeout = 0.3  # type: ignore[attr-defined]
    busy = asyncio.ensure_future(fetch_row(leasing.engine, NAP, {"seconds": 1.0}))
    await asyncio.sleep(0.1)
    with pytest.raises(Exception) as waited:
        await fetch_row(leasing.engine, ANSWER, {"a": 1, "b": 1})
    found = unavailable(waited.value)
    assert found is not None and "pool exhausted" in (found.detail or "")  # a 503
    assert await busy is not None
    assert await total(leasing.engine, 1, 2) == 3  # the lease was not lost on the way


async def test_a_statement_cancelled_while_waiting_loses_no_lease(leasing: Proxied) -> None:
    busy = asyncio.ensure_future(fetch_row(leasing.engine, NAP, {"seconds": 0.2}))
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(fetch_row(leasing.engine, ANSWER, {"a": 1, "b": 1}))
    await asyncio.sleep(0.05)
    waiting.cancel()
    assert await busy is not None
    assert await total(leasing.engine, 1, 2) == 3
    assert leasing.checkouts == 1  # still the one lease
    assert leasing.checked_out() == 1


async def test_a_lease_goes_back_when_the_pool_has_no_connection_left(leasing: Proxied) -> None:
    async with leasing.engine.connect():  # the other connection of the two
        assert await total(leasing.engine, 1, 1) == 2
        assert leasing.checked_out() == 1  # the statement's went straight back


async def test_a_request_waits_for_an_idle_lease_no_longer_than_its_hold(
    leasing: Proxied,
) -> None:
    assert await total(leasing.engine, 1, 1) == 2  # leased, now idle
    async with leasing.engine.connect():
        started = time.monotonic()
        async with leasing.engine.connect() as third:  # the pool is empty until it comes back
            assert (await third.execute(text("SELECT 1"))).scalar_one() == 1
        assert time.monotonic() - started < HOLD_SECONDS + 0.5  # not the 3 s pool_timeout


async def test_a_lease_idle_past_the_liveness_window_is_pinged_first(leasing: Proxied) -> None:
    ping_when_idle(leasing.engine)
    assert await total(leasing.engine, 1, 1) == 2
    await lose_every_connection(leasing.proxy)
    time.sleep(IDLE_SECONDS)  # the loop stalls: the timer that gives it back cannot run
    # Not used as it is: given back, pinged as idle since its statement, found dead, replaced.
    assert await total(leasing.engine, 1, 2) == 3


@pytest.mark.parametrize("leasing", [3], indirect=True)
async def test_a_lost_connection_elsewhere_drops_the_lease_too(leasing: Proxied) -> None:
    engine = leasing.engine
    assert await total(engine, 1, 1) == 2  # leased
    async with engine.connect() as conn:  # another connection, given back a moment ago
        await conn.execute(text("SELECT 1"))
    await lose_every_connection(leasing.proxy)

    with pytest.raises(DBAPIError) as failed:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    assert failed.value.connection_invalidated  # SQLAlchemy resets its pool ...
    assert await total(engine, 1, 2) == 3  # ... and the lease, dead too, is not used


async def test_dispose_closes_the_leased_connection(leasing: Proxied, engine: AsyncEngine) -> None:
    async def connections() -> int:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": leasing.name},
            )
            return int(found.scalar_one())

    assert await total(leasing.engine, 1, 1) == 2
    assert await connections() == 1
    await leasing.engine.dispose()
    deadline = time.monotonic() + 5
    while await connections() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await connections() == 0
