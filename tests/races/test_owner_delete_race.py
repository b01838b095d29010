"""Deleting a user or a client while a code exchange starts a family for them leaves no family
behind (Postgres, real commits on separate connections).

refresh_families has no foreign keys to users and clients (0029): the purge, which alone deletes
their rows, ends their families itself (db/purge.end_families_of), in the same transaction. The
exchange holds the user's row FOR SHARE and the code's row, which the client's delete cascades
to; so whichever commits first, the other sees it: an exchange first, and the delete waits for
it and then finds its family; the delete first, and the exchange finds no user or no code.
A password login holds the client's row FOR SHARE and the user's by its UPDATE, likewise.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.db.codes import _EXCHANGE_POSTGRES  # the statement itself, held uncommitted
from authserver.db.columns import stored_hash
from authserver.db.purge import end_families_of
from authserver.tokens.pkce import s256
from authserver.tokens.refresh import hash_token
from tests.conftest import Registry, password_login
from tests.http.signin import INSECURE_COOKIES, WEB, Flow, code_for, exchange, web_client

# SQLite serialises every writer: no interleaving to race.
pytestmark = pytest.mark.postgres_only


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def delete_user(conn: AsyncConnection, user_id: str) -> None:
    """As the purge deletes an abandoned sign-up: the row, then its families."""
    await conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
    await end_families_of(conn, users=[user_id])


async def delete_client(conn: AsyncConnection, client_id: str) -> None:
    """As the purge deletes an idle registered client: the row, then its families."""
    await conn.execute(text("DELETE FROM clients WHERE client_id = :id"), {"id": client_id})
    await end_families_of(conn, clients=[client_id])


Delete = Callable[[AsyncConnection, str], Awaitable[None]]
WHO = {"user": delete_user, "client": delete_client}


async def families(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM refresh_families"))).scalar_one())


async def orphans(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("""SELECT count(*) FROM refresh_families AS f
                    WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.id = f.user_id)
                       OR NOT EXISTS (SELECT 1 FROM clients AS c
                                      WHERE c.client_id = f.client_id)""")
        )
        return int(found.scalar_one())


def exchange_params(code: str, flow: Flow, now: int) -> dict[str, Any]:
    """What db/codes.SqlCodeStore.redeem binds for an exchange without DPoP."""
    family = str(uuid.uuid4())
    return {
        "now": now,
        "family_id": family,
        "code_hash": hash_token(code),
        "client_id": WEB,
        "redirect_uri": flow.params["redirect_uri"],
        "code_challenge": s256(flow.verifier),
        "proof_jkt": None,
        "family_expires_at": now + 3600,
        "token_hash": stored_hash(hash_token(str(uuid.uuid4()))),
        "token_expires_at": now + 3600,
        "audit_family": family,
        "dpop_jkt": None,
    }


async def a_code(
    http: httpx.AsyncClient, registry: Registry, engine: AsyncEngine, who: str
) -> tuple[str, Flow, str]:
    """A code of alice's for the web client, its flow, and the id of the row to delete."""
    user = await registry.user("alice", "correct horse", scopes=("openid", "profile"))
    await web_client(registry)
    flow = Flow.new(WEB)
    return await code_for(http, flow), flow, user if who == "user" else WEB


@pytest.mark.parametrize("who", ["user", "client"])
async def test_a_delete_waits_for_the_exchange_holding_the_row_then_ends_its_family(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine, who: str
) -> None:
    code, flow, target = await a_code(client, registry, engine, who)
    now = registry.services.clock()

    async with engine.connect() as exchanging:
        await exchanging.begin()
        spent = await exchanging.execute(_EXCHANGE_POSTGRES, exchange_params(code, flow, now))
        assert spent.first() is not None  # the family is in, not committed yet

        async def delete() -> None:
            async with engine.begin() as conn:
                await WHO[who](conn, target)

        deleting = asyncio.create_task(delete())
        await asyncio.sleep(0.3)
        assert not deleting.done()  # it waits for the exchange's row lock
        await exchanging.commit()
        await asyncio.wait_for(deleting, 10)

    assert await families(engine) == 0
    assert await orphans(engine) == 0


@pytest.mark.parametrize("who", ["user", "client"])
async def test_an_exchange_after_an_uncommitted_delete_waits_and_starts_nothing(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine, who: str
) -> None:
    code, flow, target = await a_code(client, registry, engine, who)

    async with engine.connect() as deleting:
        await deleting.begin()
        await WHO[who](deleting, target)
        answer = asyncio.create_task(exchange(client, code, flow))
        await asyncio.sleep(0.3)
        assert not answer.done()  # it waits for the delete's row lock
        await deleting.commit()
        response = await asyncio.wait_for(answer, 10)

    assert response.status_code in (400, 401), response.text
    assert await families(engine) == 0
    assert await orphans(engine) == 0


async def waiting_on(engine: AsyncEngine, statement: str) -> bool:
    """Whether a backend of this database waits for a lock in a statement containing `statement`."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE :prefix"
            ),
            {"prefix": "%" + statement + "%"},
        )
        return bool(found.scalar_one())


async def test_a_client_delete_waits_for_a_login_holding_the_row_then_ends_its_family(
    client: httpx.AsyncClient, registry: Registry, spa: str, engine: AsyncEngine
) -> None:
    """The login is held between its two locks (the client's row taken, the user's awaited)
    while the client is deleted: the delete waits for the login, then ends its family."""
    user = await registry.user("alice", "correct horse")
    async with engine.connect() as holding:
        await holding.begin()
        await holding.execute(text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": user})
        login = asyncio.create_task(password_login(client))
        for _ in range(200):  # past argon2, at the user's row
            if await waiting_on(engine, "UPDATE users SET last_login_at"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the login never reached the user's row")

        async def delete() -> None:
            async with engine.begin() as conn:
                await delete_client(conn, spa)

        deleting = asyncio.create_task(delete())
        await asyncio.sleep(0.3)
        assert not deleting.done()  # it waits for the login's FOR SHARE on the client
        await holding.commit()
        answer = await asyncio.wait_for(login, 10)
        await asyncio.wait_for(deleting, 10)

    assert answer.status_code == 200, answer.text  # the login won: its family was stored
    assert await families(engine) == 0
    assert await orphans(engine) == 0
