"""Every way to end all of a user's sessions (disable, by its endpoint or PATCH; delete; a new
password; log out everywhere, the admin's and the user's own) goes through
actions/end_sessions.py: the browser's login session and every refresh family end, with one
`family.revoked` each, and a disable writes `user.disabled` whichever way it came."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.services import Services
from tests.conftest import Registry, password_login
from tests.http.signin import (
    INSECURE_COOKIES,
    WEB,
    Flow,
    admin_headers,
    authorize,
    code_for,
    exchange,
    query,
    web_client,
)


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry, spa: str) -> str:
    await web_client(registry)
    return await registry.user("alice", "correct horse", scopes=("profile",))


# (method, path, JSON body, reason of the families' revocation, admin's action or the user's)
WAYS: dict[str, tuple[str, str, dict[str, Any] | None, str]] = {
    "disable": ("POST", "/admin/users/{sub}/disable", None, "disabled"),
    "patch_disabled": ("PATCH", "/admin/users/{sub}", {"disabled": True}, "disabled"),
    "delete": ("DELETE", "/admin/users/{sub}", None, "deleted"),
    "password": (
        "PUT",
        "/admin/users/{sub}/password",
        {"password": "a brand new passphrase"},
        "password_changed",
    ),
    "admin_logout_all": ("POST", "/admin/users/{sub}/logout-all", None, "admin_logout_all"),
    "logout_all": ("POST", "/logout/all", None, "logout_all"),
}


async def live_login_sessions(engine: AsyncEngine, sub: str) -> int:
    async with engine.connect() as conn:
        query = "SELECT count(*) FROM login_sessions WHERE user_id = :u AND revoked_at IS NULL"
        return int((await conn.execute(text(query), {"u": sub})).scalar_one())


@pytest.mark.parametrize("way", list(WAYS))
async def test_every_way_ends_the_login_session_and_every_family(
    client: httpx.AsyncClient,
    services: Services,
    registry: Registry,
    engine: AsyncEngine,
    alice: str,
    way: str,
) -> None:
    method, path, body, reason = WAYS[way]
    flow = Flow.new(WEB)
    browser = (await exchange(client, await code_for(client, flow), flow)).json()
    spa = (await password_login(client, scope="profile")).json()
    assert await live_login_sessions(engine, alice) == 1
    root = await admin_headers(client, registry)
    admin = str(services.verify(root["Authorization"].removeprefix("Bearer "))["sub"])
    headers = (
        root if path.startswith("/admin") else {"Authorization": f"Bearer {spa['access_token']}"}
    )

    response = await client.request(method, path.format(sub=alice), json=body, headers=headers)

    assert response.is_success, response.text
    assert await live_login_sessions(engine, alice) == 0
    silent = Flow.new(WEB, prompt="none")
    assert query((await authorize(client, silent.params)).headers["location"])["error"] == (
        "login_required"
    )
    for tokens, client_id in ((browser, WEB), (spa, "spa")):
        refresh = {"client_id": client_id, "refresh_token": tokens["refresh_token"]}
        assert (await client.post("/refresh", data=refresh)).status_code == 400
        family = await services.families.get(services.verify(tokens["access_token"])["sid"])
        assert family is not None and family.revoked_at is not None
    events = [e for e in await services.audit.recent(limit=100) if e.user == alice]
    actor = admin if path.startswith("/admin") else alice
    revoked = [(e.detail["reason"], e.actor) for e in events if e.action == "family.revoked"]
    assert revoked == [(reason, actor)] * 2
    if reason == "disabled":
        # The endpoint and PATCH write the same event, with how many sessions ended.
        (disabled,) = [e for e in events if e.action == "user.disabled"]
        assert (disabled.actor, disabled.target, disabled.detail) == (admin, alice, {"sessions": 2})
