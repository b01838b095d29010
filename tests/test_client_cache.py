"""The client memory in front of the database: fresh within its few seconds, never stale past
them, and never remembering an id that does not exist."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.clients import CachedClients, Client, hash_secret
from authserver.db.accounts import SqlClientStore
from tests.conftest import Clock


def confidential(client_id: str, secret: str = "s3cret") -> Client:
    return Client(client_id, hash_secret(secret), ("client_credentials",), ("profile",))


async def set_column(engine: AsyncEngine, client_id: str, column: str, value: object) -> None:
    """An operator's edit by hand, unannounced."""
    async with engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE clients SET {column} = :value WHERE client_id = :id"),
            {"value": value, "id": client_id},
        )


async def set_scopes(engine: AsyncEngine, client_id: str, scopes: str) -> None:
    await set_column(engine, client_id, "scopes", scopes)


async def test_a_found_client_is_remembered_for_the_ttl_then_read_again(
    engine: AsyncEngine, clock: Clock
) -> None:
    store = SqlClientStore(engine)
    await store.create(confidential("svc"), clock())
    cached = CachedClients(store, clock, ttl=5)

    first = await cached.get("svc")
    assert first is not None and first.scopes == ("profile",)
    # An operator edits the row by hand: within the TTL the memory answers, without a query.
    await set_scopes(engine, "svc", "profile admin")
    clock.advance(4)
    assert await cached.get("svc") == first
    clock.advance(1)
    again = await cached.get("svc")
    assert again is not None and again.scopes == ("profile", "admin")


async def test_an_unknown_client_is_not_remembered(engine: AsyncEngine, clock: Clock) -> None:
    store = SqlClientStore(engine)
    cached = CachedClients(store, clock)

    assert await cached.get("late") is None
    await cached.create(confidential("late"), clock())
    found = await cached.get("late")  # registered a moment later: found at once
    assert found is not None and found.client_id == "late"


async def test_the_memory_is_bounded(engine: AsyncEngine, clock: Clock) -> None:
    store = SqlClientStore(engine)
    for n in range(3):
        await store.create(confidential(f"c{n}"), clock())
    cached = CachedClients(store, clock, ttl=60, size=2)
    for n in range(3):
        assert await cached.get(f"c{n}") is not None

    # c0 was dropped to make room for c2: a change to it shows at once; c2's does not.
    await set_scopes(engine, "c0", "changed")
    await set_scopes(engine, "c2", "changed")
    c0, c2 = await cached.get("c0"), await cached.get("c2")
    assert c0 is not None and c0.scopes == ("changed",)
    assert c2 is not None and c2.scopes == ("profile",)


async def test_the_clients_origins_are_remembered_as_the_clients_and_forgotten_with_them(
    engine: AsyncEngine, clock: Clock
) -> None:
    store = SqlClientStore(engine)
    await store.create(replace(confidential("shop"), allowed_origins=("https://a.example",)), 0)
    await store.create(replace(confidential("off"), allowed_origins=("https://off.example",)), 0)
    await set_column(engine, "off", "disabled", True)
    cached = CachedClients(store, clock, ttl=5)

    # Every enabled client's origins in one set: CORS asks for it on each browser request.
    assert await cached.origins_in_use() == {"https://a.example"}
    await set_column(engine, "shop", "allowed_origins", "https://b.example")
    clock.advance(4)
    assert await cached.origins_in_use() == {"https://a.example"}  # within the memory
    # A change announced for any client (db/notify.py calls forget) is seen at once.
    cached.forget("another")
    assert await cached.origins_in_use() == {"https://b.example"}
    await set_column(engine, "shop", "allowed_origins", "https://c.example https://d.example")
    clock.advance(5)
    assert await cached.origins_in_use() == {"https://c.example", "https://d.example"}
