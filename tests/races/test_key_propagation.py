"""A key change on one instance reaches the others at once (Postgres LISTEN/NOTIFY), not at
their next periodic reload.

Two real `authserver serve` processes on one Postgres, reloading their keys only every 30 s.
The active key is revoked through instance A's admin API; the very next token instance B
issues, asked for as soon as A has answered, is signed by the key that took over.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import build_services
from authserver.config import Settings
from tests.conftest import Registry, reset_keys
from tests.races._instances import Instance, serving

# Reload interval min(300 // 4, 30) = 30 s: only a notification can explain a fast change.
JWKS_MAX_AGE = 300
ROUNDS = 3  # revocations in a row, each followed at once by a token from the other instance
WITHIN = 0.1  # seconds after A's answer by which B's token must already be the new key's


@dataclass(frozen=True)
class Pair:
    a: Instance
    b: Instance
    secret: str  # of "svc": client_credentials with scope admin


@pytest.fixture
async def pair(
    database_url: str, settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[Pair]:
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is Postgres's; the embedded SQLite is one instance")
    await reset_keys(engine)
    secret = await Registry(build_services(settings, engine)).client(
        "svc", scopes=("profile", "admin")
    )
    assert secret is not None
    overrides = {"JWKS_MAX_AGE": str(JWKS_MAX_AGE)}
    try:
        async with serving(2, database_url, settings.keys_dir, tmp_path, overrides) as (a, b):
            yield Pair(a, b, secret)
    finally:
        await reset_keys(engine)


async def token(http: httpx.AsyncClient, at: Instance, pair: Pair, scope: str) -> str:
    response = await http.post(
        f"{at.url}/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=("svc", pair.secret),
    )
    assert response.status_code == 200, response.text
    issued: str = response.json()["access_token"]
    return issued


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


async def test_a_key_revoked_on_one_instance_signs_nothing_more_on_the_other(pair: Pair) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        for _ in range(ROUNDS):
            admin = await token(http, pair.a, pair, "admin")
            revoked = kid_of(await token(http, pair.b, pair, "profile"))
            assert kid_of(admin) == revoked  # both sign with the same active key

            response = await http.post(
                f"{pair.a.url}/admin/keys/{revoked}/revoke",
                headers={"Authorization": f"Bearer {admin}"},
            )
            answered = time.monotonic()
            assert response.status_code == 200, response.text
            asked_after = time.monotonic() - answered
            on_b = await token(http, pair.b, pair, "profile")

            assert asked_after < WITHIN, f"B was asked {asked_after * 1000:.0f} ms after A answered"
            active = [k["kid"] for k in response.json()["keys"] if k["state"] == "active"]
            assert kid_of(on_b) == active[0] != revoked, pair.b.log_tail()
