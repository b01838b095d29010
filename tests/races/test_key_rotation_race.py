"""Racing key rotations, on one instance and on two instances sharing one database.

Two apps built on the same settings are two instances behind a load balancer: separate
engines, separate connection pools, separate key rings. The database settles the race (the
advisory lock on Postgres, BEGIN IMMEDIATE on SQLite; the one-active partial index behind
both), so whatever the interleaving, exactly one key ends active and every instance signs
with it after its next reload.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import anyio
import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.app import create_app
from authserver.config import Settings
from authserver.keys.manager import publication_lag, reload_interval
from authserver.services import Services
from tests.conftest import ISSUER, Clock, Registry, password_login

# Every test here makes, rotates or revokes keys: start each from none (see conftest).
pytestmark = pytest.mark.usefixtures("fresh_keys")

ROUNDS = 3
RACERS = 6


@pytest.fixture
async def other(
    app: Starlette, settings: Settings, clock: Clock
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """A second instance on the same database, started after the first (it finds its keys)."""
    second = create_app(settings, clock=clock)
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            yield http, second.state.services


@pytest.fixture
async def root(client: httpx.AsyncClient, registry: Registry, spa: str) -> dict[str, str]:
    await registry.user("root", "correct horse", admin=True)
    response = await password_login(client, "root", scope="admin")
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def key_states(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT state FROM signing_keys"))).scalars().all()
    return Counter(rows)


async def active_kid(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        kid = await conn.scalar(text("SELECT kid FROM signing_keys WHERE state = 'active'"))
    assert isinstance(kid, str)
    return kid


async def signing_kid(http: httpx.AsyncClient) -> str:
    response = await password_login(http, "root", scope="admin")
    assert response.status_code == 200, response.text
    return str(jwt.get_unverified_header(response.json()["access_token"])["kid"])


async def test_racing_forced_rotations_on_one_instance_end_with_one_active_key(
    client: httpx.AsyncClient, root: dict[str, str], engine: AsyncEngine, services: Services
) -> None:
    for round_ in range(1, ROUNDS + 1):
        responses = await asyncio.gather(
            *(
                client.post("/admin/keys/rotate", json={"force": True}, headers=root)
                for _ in range(RACERS)
            )
        )

        assert [r.status_code for r in responses] == [200] * RACERS, responses[0].text
        states = await key_states(engine)
        assert (states["active"], states["next"]) == (1, 1)
        assert states["retired"] == round_ * RACERS
        assert services.keys.ring.signing.kid == await active_kid(engine)


async def test_racing_rotations_on_two_instances_end_with_one_active_key_both_sign_with(
    client: httpx.AsyncClient,
    other: tuple[httpx.AsyncClient, Services],
    root: dict[str, str],
    engine: AsyncEngine,
    services: Services,
) -> None:
    other_client, other_services = other
    for _ in range(ROUNDS):
        responses = await asyncio.gather(
            *(
                http.post("/admin/keys/rotate", json={"force": True}, headers=root)
                for http in (client, other_client) * (RACERS // 2)
            )
        )

        assert {r.status_code for r in responses} == {200}
        states = await key_states(engine)
        assert (states["active"], states["next"]) == (1, 1)
        # Whichever instance rotated last reloaded last; the other catches up on its reload.
        await services.keys.reload()
        await other_services.keys.reload()
        active = await active_kid(engine)
        assert await signing_kid(client) == await signing_kid(other_client) == active


async def test_two_instances_rotating_by_the_rules_at_once_promote_only_once(
    client: httpx.AsyncClient,
    other: tuple[httpx.AsyncClient, Services],
    root: dict[str, str],
    engine: AsyncEngine,
    clock: Clock,
    settings: Settings,
) -> None:
    other_client, _ = other
    clock.advance(settings.jwks_max_age + publication_lag(settings))

    responses = await asyncio.gather(
        client.post("/admin/keys/rotate", headers=root),
        other_client.post("/admin/keys/rotate", headers=root),
    )

    # The loser decided on the winner's result: a next key made this second is not ready.
    assert sorted(r.status_code for r in responses) == [200, 409]
    assert await key_states(engine) == Counter({"active": 1, "next": 1, "retired": 1})
    async with engine.connect() as conn:
        activations = await conn.scalar(
            text("SELECT COUNT(*) FROM audit_events WHERE action = 'key.activated'")
        )
    assert activations == 2  # the first start's key, and the one rotation


@pytest.mark.parametrize("settings_overrides", [{"jwks_max_age": "4"}])
async def test_an_instance_picks_up_another_instances_rotation_by_itself(
    client: httpx.AsyncClient,
    other: tuple[httpx.AsyncClient, Services],
    root: dict[str, str],
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    other_client, other_services = other
    assert reload_interval(settings) == 1
    before = await signing_kid(other_client)

    response = await client.post("/admin/keys/rotate", json={"force": True}, headers=root)

    assert response.status_code == 200
    after = await active_kid(engine)
    assert after != before
    assert other_services.keys.ring.signing.kid == before  # not told, only polling
    with anyio.fail_after(reload_interval(settings) * 3 + 2):
        while other_services.keys.ring.signing.kid != after:
            await anyio.sleep(0.05)
    assert await signing_kid(other_client) == after
