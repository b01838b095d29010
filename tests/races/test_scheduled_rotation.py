"""Scheduled rotation (AUTHSERVER_KEY_ROTATION_INTERVAL): by the rules, by one instance.

Two apps on one database are two instances; the test clock is moved past the interval. Each
instance's check runs inside the serialised key transaction, so of two racing the second
finds the first one's fresh active key and does nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.app import create_app
from authserver.config import Settings, SettingsError, load_settings
from authserver.keys.manager import publication_lag
from authserver.services import Services
from tests.conftest import Clock

HOUR = 3600


@pytest.fixture
async def other(app: Starlette, settings: Settings, clock: Clock) -> AsyncIterator[Services]:
    second = create_app(settings, clock=clock)
    async with second.router.lifespan_context(second):
        yield second.state.services


async def key_states(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT state FROM signing_keys"))).scalars().all()
    return Counter(rows)


async def activations(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT actor FROM audit_events WHERE action = 'key.activated' ORDER BY id")
        )
        return list(rows.scalars())


@pytest.mark.parametrize("raw", ["60", "3599", "-1", "daily"])
def test_a_bad_interval_is_one_line(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"AUTHSERVER_KEY_ROTATION_INTERVAL": raw})
    (problem,) = caught.value.problems
    assert problem.startswith("AUTHSERVER_KEY_ROTATION_INTERVAL: ")


def test_the_interval_is_off_by_default() -> None:
    assert load_settings({}).key_rotation_interval == 0
    assert load_settings({"AUTHSERVER_KEY_ROTATION_INTERVAL": "0"}).key_rotation_interval == 0
    assert load_settings({"AUTHSERVER_KEY_ROTATION_INTERVAL": "86400"}).key_rotation_interval


@pytest.mark.parametrize("settings_overrides", [{"key_rotation_interval": str(HOUR)}])
async def test_two_instances_due_at_once_rotate_once(
    fresh_keys: None,
    services: Services,
    other: Services,
    engine: AsyncEngine,
    clock: Clock,
) -> None:
    assert not await services.keys.rotate_if_due()  # a new key is not due
    clock.advance(HOUR)

    for _ in range(3):  # three checks each, all at once
        results = await asyncio.gather(
            services.keys.rotate_if_due(), other.keys.rotate_if_due(), other.keys.rotate_if_due()
        )
        assert results.count(True) <= 1

    assert await key_states(engine) == Counter({"active": 1, "next": 1, "retired": 1})
    assert await activations(engine) == ["system", "scheduler"]
    await services.keys.reload()
    await other.keys.reload()
    assert services.keys.ring.signing.kid == other.keys.ring.signing.kid
    # Due again an interval later, not before.
    clock.advance(HOUR - 1)
    assert not await other.keys.rotate_if_due()
    clock.advance(1)
    assert await other.keys.rotate_if_due()
    assert await activations(engine) == ["system", "scheduler", "scheduler"]


@pytest.mark.parametrize(
    "settings_overrides", [{"key_rotation_interval": str(HOUR), "jwks_max_age": "7200"}]
)
async def test_a_next_key_not_yet_known_to_every_cache_just_waits(
    fresh_keys: None,
    services: Services,
    engine: AsyncEngine,
    clock: Clock,
    settings: Settings,
) -> None:
    clock.advance(HOUR)  # due, but the next key has been published for an hour of a 2 h cache

    assert not await services.keys.rotate_if_due()

    assert await key_states(engine) == Counter({"active": 1, "next": 1})
    clock.advance(settings.jwks_max_age + publication_lag(settings) - HOUR)
    assert await services.keys.rotate_if_due()
    assert await activations(engine) == ["system", "scheduler"]


@pytest.mark.parametrize(
    "settings_overrides", [{"key_rotation_interval": str(HOUR), "jwks_max_age": "4"}]
)
async def test_the_lifespan_runs_the_schedule_on_every_instance(
    fresh_keys: None,
    services: Services,
    other: Services,
    engine: AsyncEngine,
    clock: Clock,
) -> None:
    before = services.keys.ring.signing.kid
    clock.advance(HOUR)

    with anyio.fail_after(10):
        while (await key_states(engine))["retired"] == 0:
            await anyio.sleep(0.1)
        # Both instances sign with the new key: one rotated, the other reloads.
        while before in (services.keys.ring.signing.kid, other.keys.ring.signing.kid):
            await anyio.sleep(0.1)

    await anyio.sleep(2.5)  # a couple more ticks of both schedules: nothing more happens
    assert await key_states(engine) == Counter({"active": 1, "next": 1, "retired": 1})
    assert await activations(engine) == ["system", "scheduler"]


async def test_off_means_no_schedule(fresh_keys: None, services: Services, clock: Clock) -> None:
    clock.advance(10 * 365 * 86400)
    assert not await services.keys.rotate_if_due()
