"""Racing one refresh token: real commits on separate pooled connections, on both databases.

The requests run concurrently through the real ASGI app (asyncio.gather over one httpx client);
the app's engine hands each its own connection, so the database settles the race, not Python.
Each test repeats the race a few times: one lucky interleaving proves little.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.tokens.refresh import hash_token
from tests.conftest import Registry, password_login

# Also through PgBouncer in transaction mode (tests/_pgbouncer.py).
pytestmark = pytest.mark.pgbouncer
ROUNDS = 5
RACERS = 20


@pytest.fixture
async def alice(registry: Registry, spa: str) -> None:
    await registry.user("alice", "correct horse")


async def log_in(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await password_login(client)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/refresh", data={"refresh_token": token, "client_id": "spa"})


def sid_of(access_token: str) -> str:
    sid: str = jwt.decode(access_token, options={"verify_signature": False})["sid"]
    return sid


async def family_state(engine: AsyncEngine, sid: str) -> tuple[str | None, set[str]]:
    """The family's revoked_reason and the hashes of its unspent tokens, as committed."""
    async with engine.connect() as conn:
        reason = (
            await conn.execute(
                text("SELECT revoked_reason FROM refresh_families WHERE id = :id"), {"id": sid}
            )
        ).scalar_one()
        unspent = (
            await conn.execute(
                text(  # the live one in the family's row (0030)
                    "SELECT token_hash FROM refresh_families"
                    " WHERE id = :id AND token_hash IS NOT NULL"
                ),
                {"id": sid},
            )
        ).scalars()
        return reason, {bytes(stored).hex() for stored in unspent}


def split(responses: list[httpx.Response]) -> list[dict[str, Any]]:
    """The 200 bodies; every other answer must be a clean invalid_grant, never a 500."""
    winners = []
    for response in responses:
        if response.status_code == 200:
            winners.append(response.json())
            continue
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_grant"
    return winners


async def test_twenty_racing_refreshes_with_one_token_rotate_once(
    client: httpx.AsyncClient, alice: None, engine: AsyncEngine
) -> None:
    for _ in range(ROUNDS):
        login = await log_in(client)
        sid = sid_of(login["access_token"])

        responses = await asyncio.gather(
            *(refresh(client, login["refresh_token"]) for _ in range(RACERS))
        )

        winners = split(list(responses))
        # At most one rotation; and the first to commit cannot lose, the family being alive.
        assert len(winners) == 1, [r.status_code for r in responses]
        # With no grace every loser presented a spent token: the family is dead, the winner's
        # new token included, and the revocation is committed.
        assert (await refresh(client, winners[0]["refresh_token"])).status_code == 400
        reason, unspent = await family_state(engine, sid)
        assert reason == "reuse"
        assert unspent <= {hash_token(winners[0]["refresh_token"])}


@pytest.mark.parametrize("settings_overrides", [{"refresh_reuse_grace": "10"}])
async def test_racing_refreshes_within_grace_keep_the_family_with_one_live_token(
    client: httpx.AsyncClient, alice: None, engine: AsyncEngine
) -> None:
    """Several tabs refreshing at once is what the grace window is for: none of them is theft,
    so the family survives, and it never has more than one live token."""
    for _ in range(ROUNDS):
        login = await log_in(client)
        sid = sid_of(login["access_token"])

        responses = await asyncio.gather(
            *(refresh(client, login["refresh_token"]) for _ in range(RACERS))
        )

        winners = split(list(responses))
        reason, unspent = await family_state(engine, sid)
        assert reason is None, [r.status_code for r in responses]
        # Each retry displaces the previous answer: exactly one token lives, one a racer holds.
        issued = {hash_token(body["refresh_token"]): body for body in winners}
        assert len(unspent) == 1 and unspent <= issued.keys()
        [live] = [issued[token_hash] for token_hash in unspent]
        assert (await refresh(client, live["refresh_token"])).status_code == 200


async def test_logout_racing_refreshes_always_ends_the_session(
    client: httpx.AsyncClient, alice: None, engine: AsyncEngine
) -> None:
    for _ in range(ROUNDS):
        login = await log_in(client)
        sid = sid_of(login["access_token"])
        token = login["refresh_token"]

        logout = client.post("/logout", data={"refresh_token": token})
        racers = [refresh(client, token) for _ in range(5)]
        logout_response, *responses = await asyncio.gather(logout, *racers)

        assert logout_response.status_code == 204, logout_response.text
        winners = split(list(responses))
        assert len(winners) <= 1
        # Whoever won, logout revoked the family: nothing issued in the race still works.
        for body in winners:
            assert (await refresh(client, body["refresh_token"])).status_code == 400
        reason, _ = await family_state(engine, sid)
        assert reason in ("logout", "reuse")
