"""A revoked key kills its tokens on every instance at once, not at that instance's reload.

Instance B still holds the revoked key in its ring (it reloads only every interval), yet its
/introspect, /logout/all and admin guard refuse the key's tokens on the very next request:
the revocation check reads the key's state in the same query as the jti and the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from starlette.applications import Starlette

from authserver.app import create_app
from authserver.config import Settings
from authserver.services import Services
from tests.conftest import ISSUER, Clock, Registry, password_login

# Every test here makes, rotates or revokes keys: start each from none (see conftest).
pytestmark = pytest.mark.usefixtures("fresh_keys")


@pytest.fixture
async def other(
    app: Starlette, settings: Settings, clock: Clock
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    second = create_app(settings, clock=clock)
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            yield http, second.state.services


async def access_token(http: httpx.AsyncClient, username: str, **extra: str) -> str:
    response = await password_login(http, username, **extra)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_a_key_revoked_on_one_instance_is_dead_on_the_other_at_once(
    client: httpx.AsyncClient,
    other: tuple[httpx.AsyncClient, Services],
    registry: Registry,
    spa: str,
) -> None:
    other_client, other_services = other
    await registry.user("root", "correct horse", admin=True)
    await registry.user("alice", "correct horse")
    rs_secret = await registry.client("rs", grant_types=("client_credentials",), scopes=("admin",))
    assert rs_secret is not None
    rs = ("rs", rs_secret)
    # Minted on B: a session token, an admin token, and one without a session.
    session_token = await access_token(other_client, "alice")
    admin_token = await access_token(other_client, "root", scope="admin")
    response = await other_client.post(
        "/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=rs
    )
    assert response.status_code == 200, response.text
    sessionless = response.json()["access_token"]
    assert "sid" not in jwt.decode(sessionless, options={"verify_signature": False})
    kid = jwt.get_unverified_header(session_token)["kid"]
    for token in (session_token, admin_token, sessionless):
        response = await other_client.post("/introspect", data={"token": token}, auth=rs)
        assert response.json()["active"] is True
    # A's own admin token (A signs with the same key, so revoke with a token from A first).
    root = {"Authorization": f"Bearer {await access_token(client, 'root', scope='admin')}"}

    response = await client.post(f"/admin/keys/{kid}/revoke", headers=root)

    assert response.status_code == 200, response.text
    assert kid in other_services.keys.ring.verification  # B has not reloaded
    for token in (session_token, admin_token, sessionless):
        response = await other_client.post("/introspect", data={"token": token}, auth=rs)
        assert response.json() == {"active": False}
    bearer = {"Authorization": f"Bearer {admin_token}"}
    assert (await other_client.get("/admin/keys", headers=bearer)).status_code == 401
    assert (await other_client.post("/logout/all", headers=bearer)).status_code == 401
    bearer = {"Authorization": f"Bearer {sessionless}"}
    assert (await other_client.get("/admin/keys", headers=bearer)).status_code == 401
