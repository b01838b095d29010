"""DPoP nonces on two real `authserver serve` processes (AUTHSERVER_DPOP_NONCE=on, one Postgres,
one KEK): a nonce one instance hands out is accepted by the other, both ways, with no shared
state but the KEK. (tests/http/test_dpop_nonce.py moves the clock for rotation, in-process,
on both databases.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import build_services
from authserver.config import Settings
from tests._dpop import DPoPKey
from tests.conftest import Registry, reset_keys
from tests.races._instances import Instance, serving

LOGIN = {"grant_type": "password", "username": "alice", "password": "correct horse",
         "client_id": "app"}  # fmt: skip


@pytest.fixture
async def pair(
    database_url: str, settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[tuple[Instance, Instance]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("instances share a Postgres; the embedded SQLite is one instance")
    await reset_keys(engine)
    registry = Registry(build_services(settings, engine))
    await registry.user("alice", "correct horse")
    await registry.client(
        "app", public=True, grant_types=("password", "refresh_token"), scopes=("profile",)
    )
    try:
        async with serving(2, database_url, settings.keys_dir, tmp_path, {"DPOP_NONCE": "on"}) as (
            a,
            b,
        ):
            yield a, b
    finally:
        await reset_keys(engine)


async def test_a_nonce_from_one_instance_is_accepted_by_the_other(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    key = DPoPKey()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        asked = await http.post(f"{a.url}/token", data=LOGIN, headers=key.header())
        assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce", asked.text
        from_a = asked.headers["dpop-nonce"]
        response = await http.post(f"{b.url}/token", data=LOGIN, headers=key.header(nonce=from_a))
        assert response.status_code == 200, response.text + b.log_tail()
        from_b = response.headers["dpop-nonce"]
        refresh = {"grant_type": "refresh_token", "client_id": "app",
                   "refresh_token": response.json()["refresh_token"]}  # fmt: skip
        again = await http.post(f"{a.url}/token", data=refresh, headers=key.header(nonce=from_b))
        assert again.status_code == 200, again.text + a.log_tail()
        forged = await http.post(f"{a.url}/token", data=LOGIN, headers=key.header(nonce="A" * 32))
        assert forged.status_code == 400 and forged.json()["error"] == "use_dpop_nonce"
