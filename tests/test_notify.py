"""Changes announced with Postgres NOTIFY: heard by a running app at once, only once committed,
and again after the listening connection is lost (db/notify.py).

The app's clock stands still here, so a client's 5 s memory never ends by itself: only the
notification can make the app read the client again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.keys import SqlKeyStore
from authserver.db.notify import APPLICATION_NAME, CLIENTS_CHANNEL, KEYS_CHANNEL, connect_params
from authserver.keys import lifecycle
from authserver.keys.records import KeyRecord
from authserver.services import Services
from tests.conftest import Registry


@pytest.fixture(autouse=True)
def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is Postgres's; SQLite has one process, nothing to hear")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5) -> None:
    with anyio.fail_after(within):
        while not await check():
            await anyio.sleep(0.01)


async def listening(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        )
    return bool(found)


async def edit_client(engine: AsyncEngine, client_id: str, scopes: str, *, announce: bool) -> None:
    """What docs/high-availability.md tells an operator to do when editing a client by hand."""
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE clients SET scopes = :scopes WHERE client_id = :id"),
            {"scopes": scopes, "id": client_id},
        )
        if announce:
            await conn.execute(
                text("SELECT pg_notify(:channel, :id)"),
                {"channel": CLIENTS_CHANNEL, "id": client_id},
            )


async def scopes_of(services: Services, client_id: str) -> tuple[str, ...]:
    client = await services.clients.get(client_id)
    assert client is not None
    return client.scopes


async def test_a_changed_client_is_forgotten_when_the_change_is_announced(
    services: Services, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.client("svc", scopes=("profile",))
    await eventually(lambda: listening(engine))
    assert await scopes_of(services, "svc") == ("profile",)  # now remembered

    await edit_client(engine, "svc", "profile admin", announce=False)
    await anyio.sleep(0.2)
    assert await scopes_of(services, "svc") == ("profile",)  # unannounced: the 5 s memory
    await edit_client(engine, "svc", "admin", announce=True)

    async def read_again() -> bool:
        return await scopes_of(services, "svc") == ("admin",)

    await eventually(read_again, within=1)


@pytest.mark.usefixtures("fresh_keys")
async def test_a_key_change_is_announced_when_it_commits_and_only_then(
    services: Services, engine: AsyncEngine
) -> None:
    heard: list[str] = []
    conn = await asyncpg.connect(**connect_params(engine, services.settings.database_url))
    try:
        await conn.add_listener(KEYS_CHANNEL, lambda *args: heard.append(args[2]))

        def refuse(records: list[KeyRecord]) -> lifecycle.Transition:
            raise RuntimeError("changed my mind")

        with pytest.raises(RuntimeError):  # rolled back
            await SqlKeyStore(engine).change(refuse, "test", services.clock())
        await anyio.sleep(0.3)
        assert heard == []
        await services.keys.rotate("test", force=True)

        async def announced() -> bool:
            return heard == [KEYS_CHANNEL]

        await eventually(announced, within=1)
    finally:
        await conn.close()


async def test_listening_resumes_after_the_connection_is_lost_and_counts_all_as_changed(
    services: Services, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.client("svc", scopes=("profile",))
    await eventually(lambda: listening(engine))
    assert await scopes_of(services, "svc") == ("profile",)
    await edit_client(engine, "svc", "admin", announce=False)  # unheard while connected

    async with engine.begin() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        )
    await eventually(lambda: listening(engine))

    async def read_again() -> bool:  # whatever changed while deaf is read again
        return await scopes_of(services, "svc") == ("admin",)

    await eventually(read_again, within=1)
    await edit_client(engine, "svc", "profile", announce=True)  # and heard again

    async def heard() -> bool:
        return await scopes_of(services, "svc") == ("profile",)

    await eventually(heard, within=1)
