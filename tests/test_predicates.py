"""db/predicates.py: each shared condition, in every statement it is spliced into.

Each row is changed behind the server's back (plain SQL: nothing revoked, nothing ended, no
instance told), as a disable or an /end-session committing on another instance a moment before
would leave it. So the statement's own condition is all that refuses: a fragment made always
true fails every test below of the statements it is in. The Postgres statements differ from
SQLite's (one CTE each for the rotation and the exchange), so everything runs on both.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.login_sessions import hash_session_token, start_login_session
from authserver.errors import InvalidGrant
from authserver.services import Services
from authserver.tokens.authorization_codes import AuthorizationCode
from authserver.tokens.refresh import Family, hash_token, new_family_id, parse_refresh_token
from tests.conftest import ISSUER, Clock, Login, Registry
from tests.http.signin import CALLBACK, INSECURE_COOKIES, WEB, Flow, code_for, exchange, web_client

GRACE = 10
SESSION_TTL = 3600


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {**INSECURE_COOKIES, "refresh_reuse_grace": str(GRACE)}


async def behind_the_back(engine: AsyncEngine, sql: str | None, **params: Any) -> None:
    """Changes the database alone (None: nothing), as a commit on another instance would."""
    if sql is None:
        return
    async with engine.begin() as conn:
        await conn.execute(text(sql), params)


DISABLE_USER = "UPDATE users SET disabled = true WHERE username = 'alice'"
# What makes the family's client unfit to rotate it (client_enabled, client_may_refresh).
CLIENT_CHANGES = {
    "none": None,
    "user disabled": DISABLE_USER,
    "client disabled": "UPDATE clients SET disabled = true WHERE client_id = 'spa'",
    "refresh grant dropped": "UPDATE clients SET grant_types = 'password' WHERE client_id = 'spa'",
}
# A family starts whatever grants the client holds (the password grant starts it).
START_CHANGES = {k: CLIENT_CHANGES[k] for k in ("none", "user disabled", "client disabled")}
# login_session_live: ended (as /end-session does) or over (its absolute end reached).
SESSION_ENDS = {
    "ended": "UPDATE login_sessions SET revoked_at = :now",
    "over": "UPDATE login_sessions SET expires_at = :now",
}
ISSUE_CHANGES = {"none": None, "user disabled": DISABLE_USER, **SESSION_ENDS}


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/refresh", data={"refresh_token": token, "client_id": "spa"})


# user_enabled ----------------------------------------------------------------------------


async def test_a_disabled_user_s_refresh_token_does_not_rotate(
    client: httpx.AsyncClient, login: Login, engine: AsyncEngine
) -> None:
    await behind_the_back(engine, DISABLE_USER)
    assert_invalid_grant(await refresh(client, login.refresh_token))


async def test_a_disabled_user_s_grace_retry_gets_nothing(
    client: httpx.AsyncClient, login: Login, engine: AsyncEngine
) -> None:
    """The retry of a just-rotated token, within the grace, rotates by another statement."""
    rotated = await refresh(client, login.refresh_token)
    assert rotated.status_code == 200, rotated.text
    await behind_the_back(engine, DISABLE_USER)
    assert_invalid_grant(await refresh(client, login.refresh_token))


async def test_a_disabled_user_starts_no_login_session(
    registry: Registry, services: Services, engine: AsyncEngine
) -> None:
    sub = await registry.user("alice")
    await behind_the_back(engine, DISABLE_USER)
    with pytest.raises(InvalidGrant):
        await start_login_session(services.login_sessions, sub, services.clock(), SESSION_TTL, WEB)


async def test_a_disabled_user_s_login_session_is_not_touched(
    registry: Registry, services: Services, engine: AsyncEngine
) -> None:
    sub = await registry.user("alice")
    now = services.clock()
    _, token = await start_login_session(services.login_sessions, sub, now, SESSION_TTL, WEB)
    assert await services.login_sessions.touch(hash_session_token(token), now, 600) is not None
    await behind_the_back(engine, DISABLE_USER)
    assert await services.login_sessions.touch(hash_session_token(token), now, 600) is None


async def test_a_disabled_user_s_code_is_not_exchanged(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.user("alice")
    await web_client(registry)
    flow = Flow.new(WEB)
    code = await code_for(client, flow)
    await behind_the_back(engine, DISABLE_USER)
    assert_invalid_grant(await exchange(client, code, flow))


# client_enabled, client_may_refresh (with user_enabled) -----------------------------------


@pytest.mark.parametrize("change", CLIENT_CHANGES, ids=list(CLIENT_CHANGES))
async def test_only_a_fit_client_and_user_rotate_a_token(
    client: httpx.AsyncClient, login: Login, services: Services, engine: AsyncEngine, change: str
) -> None:
    """The store itself: /refresh may refuse a disabled client before (the client cache)."""
    await behind_the_back(engine, CLIENT_CHANGES[change])
    now = services.clock()
    spent = await services.families.spend(
        parse_refresh_token(login.refresh_token), "spa", now, hash_token("next"), now + 3600
    )
    assert (spent is not None) == (change == "none")


@pytest.mark.parametrize("change", CLIENT_CHANGES, ids=list(CLIENT_CHANGES))
async def test_only_a_fit_client_and_user_rotate_a_grace_retry(
    client: httpx.AsyncClient, login: Login, services: Services, engine: AsyncEngine, change: str
) -> None:
    rotated = await refresh(client, login.refresh_token)
    assert rotated.status_code == 200, rotated.text
    await behind_the_back(engine, CLIENT_CHANGES[change])
    now = services.clock()
    spent = await services.families.spend_successor(
        parse_refresh_token(login.refresh_token),
        "spa",
        now,
        now - GRACE,
        hash_token("next"),
        now + 3600,
    )
    assert (spent is not None) == (change == "none")


@pytest.mark.parametrize("change", START_CHANGES, ids=list(START_CHANGES))
async def test_only_an_enabled_user_and_client_start_a_family(
    registry: Registry, spa: str, services: Services, engine: AsyncEngine, change: str
) -> None:
    """The password grant's last word, where its row locks settle a racing disable."""
    sub = await registry.user("alice")
    await behind_the_back(engine, START_CHANGES[change])
    now = services.clock()
    family = Family(new_family_id(), sub, spa, "profile", now, now + 3600)
    started = await services.families.start(family, hash_token("refresh"), now + 60)
    assert started == (change == "none")


# login_session_live ----------------------------------------------------------------------


@pytest.mark.parametrize("end", SESSION_ENDS)
async def test_an_ended_login_session_signs_in_no_more(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine, clock: Clock, end: str
) -> None:
    """Single sign-on: the cookie of an ended session gets the sign-in page, not a code."""
    await registry.user("alice")
    await web_client(registry)
    await code_for(client, Flow.new(WEB))
    await behind_the_back(engine, SESSION_ENDS[end], now=clock())
    again = await client.get("/authorize", params=Flow.new(WEB).params)
    assert again.status_code == 302, again.text
    assert again.headers["location"].startswith(f"{ISSUER}/login"), again.headers["location"]


@pytest.mark.parametrize("change", ISSUE_CHANGES, ids=list(ISSUE_CHANGES))
async def test_only_a_live_login_session_of_an_enabled_user_is_issued_a_code(
    client: httpx.AsyncClient,
    registry: Registry,
    services: Services,
    engine: AsyncEngine,
    change: str,
) -> None:
    """The store itself: /authorize looks at the user before (users.by_id)."""
    await registry.user("alice")
    await web_client(registry)
    await code_for(client, Flow.new(WEB))  # signs in: a live login session
    now = services.clock()
    await behind_the_back(engine, ISSUE_CHANGES[change], now=now)
    issued = await services.codes.issue(hash_token("code"), await _code(engine, services), now)
    assert issued == (change == "none")


@pytest.mark.parametrize("end", SESSION_ENDS)
async def test_the_code_of_an_ended_login_session_is_not_exchanged(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine, clock: Clock, end: str
) -> None:
    await registry.user("alice")
    await web_client(registry)
    flow = Flow.new(WEB)
    code = await code_for(client, flow)
    await behind_the_back(engine, SESSION_ENDS[end], now=clock())
    assert_invalid_grant(await exchange(client, code, flow))


async def _code(engine: AsyncEngine, services: Services) -> AuthorizationCode:
    """A code for alice's one login session, as /authorize would make it."""
    async with engine.connect() as conn:
        session = (await conn.execute(text("SELECT id, user_id FROM login_sessions"))).one()
    now = services.clock()
    return AuthorizationCode(
        client_id=WEB,
        user_id=session.user_id,
        login_session_id=session.id,
        redirect_uri=CALLBACK,
        redirect_uri_given=True,
        code_challenge="c" * 43,
        scope="openid",
        nonce=None,
        auth_time=now,
        expires_at=now + 60,
    )
