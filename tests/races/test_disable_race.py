"""A user disabled while their login is verifying the password must not end up signed in.

argon2 takes a while (here ~50 ms), and the login read the user before it started. The admin
disables the user in that window; the login then finishes. Whatever the interleaving, no
family of the disabled user may live: either the login is refused, or the family it started
was revoked with the others. The decision is the database's (the family's insert locks the
user row it checks), so the race is run for real, on both databases, many times.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Registry, password_login

TRIES = 10
# Slow enough that the admin's disable lands while the login's argon2 is running.
SLOW_ARGON2 = {"argon2_time_cost": "2", "argon2_memory_kib": "32768"}


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return SLOW_ARGON2


async def admin_token(client: httpx.AsyncClient, registry: Registry) -> str:
    await registry.user("root", "root password", scopes=(), admin=True)
    response = await password_login(client, "root", "root password", scope="admin")
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_a_login_racing_the_disable_leaves_no_live_session(
    client: httpx.AsyncClient, registry: Registry, spa: str, engine: AsyncEngine
) -> None:
    admin = await admin_token(client, registry)
    survivors = []
    for i in range(TRIES):
        sub = await registry.user(f"user{i}", "correct horse")
        login = asyncio.create_task(password_login(client, f"user{i}", "correct horse"))
        await asyncio.sleep(0.01)  # the login is past its reads, inside argon2
        disabled = await client.post(
            f"/admin/users/{sub}/disable", headers={"Authorization": f"Bearer {admin}"}
        )
        assert disabled.status_code == 204, disabled.text
        answer = await login
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 400:
            assert answer.json()["error"] == "invalid_grant"
            continue
        refreshed = await client.post(
            "/refresh", data={"refresh_token": answer.json()["refresh_token"], "client_id": spa}
        )
        if refreshed.status_code != 400:
            survivors.append((i, refreshed.status_code))
    assert survivors == []
    async with engine.connect() as conn:
        live = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM refresh_families AS f JOIN users AS u"
                    " ON u.id = f.user_id WHERE u.disabled AND f.revoked_at IS NULL"
                )
            )
        ).scalar_one()
    assert live == 0


async def test_a_disabled_user_cannot_rotate_even_a_family_left_alive(
    client: httpx.AsyncClient, registry: Registry, spa: str, engine: AsyncEngine
) -> None:
    """The rotation itself refuses a disabled user's token, in its own statement: a family
    that escaped revocation (by any path) still cannot rotate."""
    sub = await registry.user("alice", "correct horse")
    login = await password_login(client)
    assert login.status_code == 200, login.text
    async with engine.begin() as conn:  # disabled behind the server's back: no revocation
        await conn.execute(text("UPDATE users SET disabled = true WHERE id = :id"), {"id": sub})
    refreshed = await client.post(
        "/refresh", data={"refresh_token": login.json()["refresh_token"], "client_id": spa}
    )
    assert refreshed.status_code == 400, refreshed.text
    assert refreshed.json()["error"] == "invalid_grant"
