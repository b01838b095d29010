"""Operator changes racing a login: the login checked the password (argon2, ~50 ms here) with
the user and client as they were; the operator deletes the user, changes the password with
revoke_sessions, or disables the client in that window. Whatever the interleaving, no session
may live afterwards: either the login is refused, or the session it started was revoked with
the others. The database decides (the session's start re-checks user, password hash and
client as it commits), so each race is run for real, on both databases, several times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Registry, password_login
from tests.races.test_disable_race import SLOW_ARGON2

TRIES = 8
Change = Callable[[httpx.AsyncClient, dict[str, str], str, str], Awaitable[httpx.Response]]


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return SLOW_ARGON2


@pytest.fixture
async def admin(client: httpx.AsyncClient, registry: Registry) -> dict[str, str]:
    """A client_credentials admin token: it survives the spa client's disabling."""
    secret = await registry.client("ops", scopes=("admin",))
    assert secret is not None
    response = await client.post(
        "/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=("ops", secret)
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def delete_user(
    http: httpx.AsyncClient, admin: dict[str, str], sub: str, client_id: str
) -> httpx.Response:
    return await http.delete(f"/admin/users/{sub}", headers=admin)


async def set_password(
    http: httpx.AsyncClient, admin: dict[str, str], sub: str, client_id: str
) -> httpx.Response:
    body = {"password": "a brand new passphrase", "revoke_sessions": True}
    return await http.put(f"/admin/users/{sub}/password", json=body, headers=admin)


async def disable_client(
    http: httpx.AsyncClient, admin: dict[str, str], sub: str, client_id: str
) -> httpx.Response:
    return await http.patch(f"/admin/clients/{client_id}", json={"disabled": True}, headers=admin)


@pytest.mark.parametrize("change", [delete_user, set_password, disable_client])
async def test_a_login_racing_an_operator_change_leaves_no_live_session(
    client: httpx.AsyncClient,
    registry: Registry,
    admin: dict[str, str],
    change: Change,
    engine: AsyncEngine,
) -> None:
    survivors = []
    for i in range(TRIES):
        sub = await registry.user(f"user{i}", "correct horse")
        spa = f"spa{i}"  # a client of its own: disabling one leaves the next try's alone
        await registry.client(spa, public=True, grant_types=("password", "refresh_token"))
        login = asyncio.create_task(password_login(client, f"user{i}", client_id=spa))
        await asyncio.sleep(0.01 * (i % 4))  # before, during and after the login's argon2
        changed = await change(client, admin, sub, spa)
        assert changed.status_code in (200, 204), changed.text
        answer = await login
        assert answer.status_code in (200, 400, 401), answer.text
        if answer.status_code != 200:
            continue
        refreshed = await client.post(
            "/refresh", data={"refresh_token": answer.json()["refresh_token"], "client_id": spa}
        )
        if refreshed.status_code == 200:
            survivors.append(i)
    assert survivors == []
    # Not only refused by the rotation's own checks: no such family is left unrevoked.
    async with engine.connect() as conn:
        live = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM refresh_families AS f"
                    " JOIN users AS u ON u.id = f.user_id"
                    " JOIN clients AS c ON c.client_id = f.client_id"
                    " WHERE (u.disabled OR c.disabled) AND f.revoked_at IS NULL"
                )
            )
        ).scalar_one()
    assert live == 0
