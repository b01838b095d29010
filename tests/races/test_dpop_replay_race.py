"""DPoP races. One proof's jti sent to two instances at once (two engines, each its own pool, on
one database): the primary key of dpop_proofs lets at most one of them accept it (RFC 9449
§11.1). A bound refresh token presented by two keys at once: the family dies."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import create_app
from authserver.config import Settings
from authserver.db.dpop import SqlProofStore
from authserver.db.engine import make_engine
from authserver.db.purge import purge
from tests._dpop import DPoPKey
from tests.conftest import ISSUER, Clock, Registry

ROUNDS = 10
RACERS = 10  # per instance


async def test_one_proof_raced_on_two_instances_is_accepted_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    first, second = make_engine(settings), make_engine(settings)
    try:
        stores = [SqlProofStore(first), SqlProofStore(second)]
        for round_ in range(ROUNDS):
            key = f"proof-{round_}"
            results = await asyncio.gather(
                *(store.first_use(key, 1_060, 1_000) for store in stores for _ in range(RACERS))
            )
            assert results.count(True) == 1, results
    finally:
        await first.dispose()
        await second.dispose()


async def test_one_proof_sent_to_two_apps_at_once_gets_one_token(
    client: httpx.AsyncClient, registry: Registry, settings: Settings, clock: Clock
) -> None:
    """The same, through /token: two apps, each with its own engine and pool, as two instances."""
    secret = await registry.client("svc")
    assert secret is not None
    other = create_app(settings, clock=clock)
    async with (
        other.router.lifespan_context(other),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url=ISSUER) as second,
    ):
        for _ in range(ROUNDS):
            headers = DPoPKey().header()

            async def ask(http: httpx.AsyncClient, headers: dict[str, str] = headers) -> int:
                response = await http.post(
                    "/token",
                    data={"grant_type": "client_credentials"},
                    auth=("svc", secret),
                    headers=headers,
                )
                return response.status_code

            statuses = await asyncio.gather(*(ask(http) for http in (client, second) * 3))
            assert statuses.count(200) == 1, statuses
            assert set(statuses) == {200, 400}, statuses


async def test_a_key_whose_window_is_over_is_taken_again_and_purged(
    engine: AsyncEngine, settings: Settings
) -> None:
    store = SqlProofStore(engine)
    assert await store.first_use("k", 1_060, 1_000)
    assert not await store.first_use("k", 1_070, 1_059)
    assert await store.first_use("k", 1_130, 1_070)  # the old row's window is over
    assert await store.first_use("other", 1_010, 1_000)
    purged = await purge(engine, settings, 1_100)
    assert purged is not None and purged.dpop_proofs == 1
    assert not await store.first_use("k", 1_130, 1_100)


async def test_a_bound_refresh_token_raced_by_two_keys_leaves_no_live_token(
    client: httpx.AsyncClient, registry: Registry, spa: str, engine: AsyncEngine
) -> None:
    """RFC 9449 §5 with RFC 9700 §4.14.2: the holder and a thief with another key refresh at
    once; whoever spends first, the other's proof of another key revokes the family."""
    await registry.user("alice", "correct horse")
    for _ in range(ROUNDS):
        holder, thief = DPoPKey(), DPoPKey()
        data = {"grant_type": "password", "username": "alice", "password": "correct horse",
                "client_id": "spa"}  # fmt: skip
        login = await client.post("/token", data=data, headers=holder.header())
        token = login.json()["refresh_token"]
        refresh = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}
        answers = await asyncio.gather(
            *(client.post("/token", data=refresh, headers=key.header()) for key in (holder, thief))
        )
        assert answers[1].status_code == 400, answers[1].text
        for answer in answers:
            if answer.status_code == 200:  # the holder won: its new token is dead already
                again = {**refresh, "refresh_token": answer.json()["refresh_token"]}
                late = await client.post("/token", data=again, headers=holder.header())
                assert late.status_code == 400, late.text
        async with engine.connect() as conn:
            live = await conn.scalar(
                text("SELECT COUNT(*) FROM refresh_families WHERE revoked_at IS NULL")
            )
        assert live == 0


async def test_one_refresh_request_sent_to_two_apps_at_once_rotates_once(
    client: httpx.AsyncClient, registry: Registry, spa: str, settings: Settings, clock: Clock
) -> None:
    """The jti recorded by the rotating statement itself: the same request (one proof, one
    token) raced on two instances rotates once, the others are invalid_dpop_proof (never taken
    for reuse, which would revoke the family), and the winner's token still rotates."""
    await registry.user("alice", "correct horse")
    other = create_app(settings, clock=clock)
    async with (
        other.router.lifespan_context(other),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url=ISSUER) as second,
    ):
        key = DPoPKey()
        data = {"grant_type": "password", "username": "alice", "password": "correct horse",
                "client_id": "spa"}  # fmt: skip
        token = (await client.post("/token", data=data, headers=key.header())).json()[
            "refresh_token"
        ]
        for _ in range(ROUNDS):
            refresh = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}
            headers = key.header()
            answers = await asyncio.gather(
                *(
                    http.post("/token", data=refresh, headers=headers)
                    for http in (client, second) * 3
                )
            )
            won = [answer for answer in answers if answer.status_code == 200]
            assert len(won) == 1, [answer.text for answer in answers]
            for answer in answers:
                if answer is not won[0]:
                    assert answer.json()["error"] == "invalid_dpop_proof", answer.text
            token = won[0].json()["refresh_token"]
