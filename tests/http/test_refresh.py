"""Refresh-token rotation through POST /refresh and grant_type=refresh_token on POST /token.

Every use spends the presented token and issues the next one in the same family; a spent token
presented again is theft and kills the family, committed before `invalid_grant` is answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.tokens.refresh import new_refresh_token
from tests._refresh_rows import spent_at
from tests.conftest import Clock, Login, Registry, assert_oauth_error, password_login

REFRESH_TTL = 1_209_600  # the default AUTHSERVER_REFRESH_TOKEN_TTL
GRACE = {"refresh_reuse_grace": "10"}


class Refresh(Protocol):
    async def __call__(
        self, token: str, client_id: str = "spa", **extra: str
    ) -> httpx.Response: ...


@pytest.fixture(params=["/refresh", "/token"])
def refresh(request: pytest.FixtureRequest, client: httpx.AsyncClient) -> Refresh:
    """Presents a refresh token on one of the two endpoints that rotate it."""
    path: str = request.param

    async def call(token: str, client_id: str = "spa", **extra: str) -> httpx.Response:
        data = {"refresh_token": token, "client_id": client_id, **extra}
        if path == "/token":
            data["grant_type"] = "refresh_token"
        return await client.post(path, data=data)

    return call


@pytest.fixture
async def introspect(
    client: httpx.AsyncClient, registry: Registry
) -> Callable[[str], Awaitable[dict[str, Any]]]:
    """RFC 7662 as a resource server would ask: authenticated as a confidential client."""
    secret = await registry.client("resource-server")
    assert secret is not None

    async def call(token: str) -> dict[str, Any]:
        response = await client.post(
            "/introspect", data={"token": token}, auth=("resource-server", secret)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return call


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"]
    return body


def sid_of(access_token: str) -> str:
    sid: str = jwt.decode(access_token, options={"verify_signature": False})["sid"]
    return sid


async def family_row(engine: AsyncEngine, sid: str) -> Any:
    """The family as committed, read on a connection of its own (not the app's)."""
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT revoked_at, revoked_reason FROM refresh_families WHERE id = :id"),
                {"id": sid},
            )
        ).one()


# --- rotation -------------------------------------------------------------------------------


async def test_every_use_rotates_within_the_family(
    refresh: Refresh, login: Login, engine: AsyncEngine, clock: Clock
) -> None:
    sid = sid_of(login.access_token)
    seen = {login.refresh_token}
    token = login.refresh_token
    for _ in range(3):
        clock.advance(1)
        body = ok(await refresh(token))
        assert body["refresh_token"] not in seen
        assert body["access_token"] != login.access_token
        assert body["scope"] == "profile"
        assert body["expires_in"] == 900
        assert sid_of(body["access_token"]) == sid
        assert await spent_at(engine, token) == clock.now
        assert await spent_at(engine, body["refresh_token"]) is None
        seen.add(body["refresh_token"])
        token = body["refresh_token"]


@pytest.mark.parametrize("generation", ["parent", "grandparent"])
async def test_reusing_a_spent_token_revokes_the_whole_family(
    refresh: Refresh,
    login: Login,
    engine: AsyncEngine,
    clock: Clock,
    introspect: Callable[[str], Awaitable[dict[str, Any]]],
    generation: str,
) -> None:
    first = ok(await refresh(login.refresh_token))
    second = ok(await refresh(first["refresh_token"]))
    assert (await introspect(second["access_token"]))["active"] is True
    stolen = login.refresh_token if generation == "grandparent" else first["refresh_token"]

    clock.advance(3)
    assert_oauth_error(await refresh(stolen), 400, "invalid_grant")

    # The newest token of the family stops working, and every access token goes inactive.
    assert_oauth_error(await refresh(second["refresh_token"]), 400, "invalid_grant")
    for access in (login.access_token, first["access_token"], second["access_token"]):
        assert await introspect(access) == {"active": False}
    # Committed before the answer: another connection sees it.
    row = await family_row(engine, sid_of(login.access_token))
    assert row.revoked_reason == "reuse"
    assert row.revoked_at == clock.now


async def test_reuse_does_not_touch_other_sessions_of_the_user(
    refresh: Refresh,
    client: httpx.AsyncClient,
    login: Login,
    introspect: Callable[[str], Awaitable[dict[str, Any]]],
) -> None:
    other = ok(await password_login(client))
    ok(await refresh(login.refresh_token))
    assert_oauth_error(await refresh(login.refresh_token), 400, "invalid_grant")

    assert (await introspect(other["access_token"]))["active"] is True
    ok(await refresh(other["refresh_token"]))


async def test_every_failure_answers_the_same(
    refresh: Refresh, login: Login, registry: Registry, clock: Clock
) -> None:
    """One code and one message for unknown, spent, other client's and expired tokens."""
    await registry.client("other", public=True, grant_types=("password", "refresh_token"))
    unknown = await refresh("x" * 43)
    other_client = await refresh(login.refresh_token, "other")
    newest = ok(await refresh(login.refresh_token))["refresh_token"]
    reused = await refresh(login.refresh_token)
    revoked = await refresh(newest)
    answers = [unknown, other_client, reused, revoked]
    for response in answers:
        assert_oauth_error(response, 400, "invalid_grant")
    assert len({response.content for response in answers}) == 1


async def test_a_token_forged_for_a_real_family_is_invalid_and_revokes_nothing(
    refresh: Refresh,
    login: Login,
    engine: AsyncEngine,
    introspect: Callable[[str], Awaitable[dict[str, Any]]],
) -> None:
    """A refresh token names its family (`<family id>.<secret>`), and the family id is no
    secret (a token's holder reads it): knowing it must not let anyone end the session.
    Only a token the family itself issued and spent is reuse."""
    family, _, _ = login.refresh_token.partition(".")
    for forged in (
        f"{family}.{new_refresh_token()}",
        f"{family}.",
        f"{family}.{login.refresh_token}",
        f"{family}{login.refresh_token[len(family) :]}x",
    ):
        assert_oauth_error(await refresh(forged), 400, "invalid_grant")
    row = await family_row(engine, sid_of(login.access_token))
    assert row.revoked_at is None
    assert (await introspect(login.access_token))["active"] is True
    assert ok(await refresh(login.refresh_token))["refresh_token"].startswith(f"{family}.")


async def test_refresh_needs_a_refresh_token(client: httpx.AsyncClient, login: Login) -> None:
    for path, data in (
        ("/refresh", {"client_id": "spa"}),
        ("/token", {"grant_type": "refresh_token", "client_id": "spa"}),
        ("/token", {"grant_type": "refresh_token", "client_id": "spa", "refresh_token": ""}),
    ):
        response = await client.post(path, data=data)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"


async def test_refresh_with_a_json_body(client: httpx.AsyncClient, login: Login) -> None:
    response = await client.post(
        "/refresh", json={"refresh_token": login.refresh_token, "client_id": "spa"}
    )
    ok(response)


# --- clients --------------------------------------------------------------------------------


async def test_a_token_presented_by_another_client_is_refused_and_not_spent(
    refresh: Refresh, login: Login, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.client("other", public=True, grant_types=("password", "refresh_token"))

    assert_oauth_error(await refresh(login.refresh_token, "other"), 400, "invalid_grant")

    assert await spent_at(engine, login.refresh_token) is None
    assert (await family_row(engine, sid_of(login.access_token))).revoked_at is None
    ok(await refresh(login.refresh_token))


async def test_a_confidential_client_must_authenticate_to_refresh(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    secret = await registry.client("web", grant_types=("password", "refresh_token"))
    assert secret is not None
    await registry.user("alice", "correct horse")
    login = ok(
        await client.post(
            "/token",
            data={"grant_type": "password", "username": "alice", "password": "correct horse"},
            auth=("web", secret),
        )
    )
    token = login["refresh_token"]

    for secret_field in ({}, {"client_secret": "wrong"}):
        response = await client.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": "web",
                **secret_field,
            },
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
    assert await spent_at(engine, token) is None

    ok(
        await client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=("web", secret),
        )
    )


# --- lifetimes ------------------------------------------------------------------------------


async def test_an_idle_token_expires_without_revoking_the_family(
    refresh: Refresh, login: Login, clock: Clock, engine: AsyncEngine
) -> None:
    clock.advance(REFRESH_TTL - 1)
    token = ok(await refresh(login.refresh_token))["refresh_token"]

    clock.advance(REFRESH_TTL + 1)
    assert_oauth_error(await refresh(token), 400, "invalid_grant")
    assert_oauth_error(
        await refresh(token), 400, "invalid_grant"
    )  # still just expired, not "reused"

    assert await spent_at(engine, token) is None
    row = await family_row(engine, sid_of(login.access_token))
    assert row.revoked_at is None
    assert row.revoked_reason is None


@pytest.mark.parametrize("settings_overrides", [{"session_ttl": "300", "refresh_token_ttl": "120"}])
async def test_a_family_dies_at_the_session_ttl_however_often_it_rotates(
    refresh: Refresh,
    login: Login,
    clock: Clock,
    engine: AsyncEngine,
    introspect: Callable[[str], Awaitable[dict[str, Any]]],
) -> None:
    token = login.refresh_token
    access = login.access_token
    for step in (100, 100, 90):  # at +100, +200, +290: each within the 120 s idle TTL
        clock.advance(step)
        body = ok(await refresh(token))
        token, access = body["refresh_token"], body["access_token"]
    assert clock.now - login_time(login) == 290
    assert (await introspect(access))["active"] is True
    # The last access token ends with the session, not a full access TTL later.
    assert body["expires_in"] == 10
    assert jwt.decode(access, options={"verify_signature": False})["exp"] == clock.now + 10

    clock.advance(11)  # +301: past the family's end, still within the token's idle TTL
    assert_oauth_error(await refresh(token), 400, "invalid_grant")
    assert await introspect(access) == {"active": False}
    assert (await family_row(engine, sid_of(access))).revoked_at is None


def login_time(login: Login) -> int:
    iat: int = jwt.decode(login.access_token, options={"verify_signature": False})["iat"]
    return iat


# --- scope ----------------------------------------------------------------------------------


@pytest.fixture
async def wide_login(client: httpx.AsyncClient, registry: Registry) -> dict[str, Any]:
    """bob, logged in through a public client with two scopes, holding both."""
    await registry.client(
        "spa", public=True, grant_types=("password", "refresh_token"), scopes=("profile", "email")
    )
    await registry.user("bob", "battery staple", scopes=("profile", "email"))
    body = ok(await password_login(client, "bob", "battery staple"))
    assert body["scope"] == "profile email"
    return body


async def test_a_narrower_scope_on_refresh(refresh: Refresh, wide_login: dict[str, Any]) -> None:
    narrow = ok(await refresh(wide_login["refresh_token"], scope="email"))
    assert narrow["scope"] == "email"
    claims = jwt.decode(narrow["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "email"

    # RFC 6749 §6: omitted, the scope is the one originally granted.
    again = ok(await refresh(narrow["refresh_token"]))
    assert again["scope"] == "profile email"


@pytest.mark.parametrize("scope", ["profile email admin", "openid", "profile  email"])
async def test_a_wider_or_malformed_scope_is_refused_and_does_not_spend_the_token(
    refresh: Refresh, wide_login: dict[str, Any], engine: AsyncEngine, scope: str
) -> None:
    response = await refresh(wide_login["refresh_token"], scope=scope)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_scope"

    assert await spent_at(engine, wide_login["refresh_token"]) is None
    body = ok(await refresh(wide_login["refresh_token"]))
    assert body["scope"] == "profile email"


# --- grace ----------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [GRACE])
async def test_within_grace_the_just_spent_parent_gets_a_working_token(
    refresh: Refresh,
    login: Login,
    clock: Clock,
    engine: AsyncEngine,
    introspect: Callable[[str], Awaitable[dict[str, Any]]],
) -> None:
    first = ok(await refresh(login.refresh_token))  # its response "lost"
    clock.advance(5)

    retry = ok(await refresh(login.refresh_token))
    assert retry["refresh_token"] != first["refresh_token"]
    assert sid_of(retry["access_token"]) == sid_of(login.access_token)

    # The family survives: the retried token rotates on, its access tokens are live.
    after = ok(await refresh(retry["refresh_token"]))
    assert (await introspect(after["access_token"]))["active"] is True
    assert (await family_row(engine, sid_of(login.access_token))).revoked_at is None


@pytest.mark.parametrize("settings_overrides", [GRACE])
async def test_after_grace_the_spent_parent_revokes_the_family(
    refresh: Refresh, login: Login, clock: Clock, engine: AsyncEngine
) -> None:
    first = ok(await refresh(login.refresh_token))
    clock.advance(11)

    assert_oauth_error(await refresh(login.refresh_token), 400, "invalid_grant")
    assert_oauth_error(await refresh(first["refresh_token"]), 400, "invalid_grant")
    assert (await family_row(engine, sid_of(login.access_token))).revoked_reason == "reuse"


@pytest.mark.parametrize("settings_overrides", [GRACE])
async def test_within_grace_a_grandparent_still_revokes_the_family(
    refresh: Refresh, login: Login, clock: Clock, engine: AsyncEngine
) -> None:
    first = ok(await refresh(login.refresh_token))
    clock.advance(1)
    second = ok(await refresh(first["refresh_token"]))
    clock.advance(1)

    assert_oauth_error(await refresh(login.refresh_token), 400, "invalid_grant")
    assert_oauth_error(await refresh(second["refresh_token"]), 400, "invalid_grant")
    assert (await family_row(engine, sid_of(login.access_token))).revoked_reason == "reuse"


@pytest.mark.parametrize("settings_overrides", [GRACE])
async def test_within_grace_another_client_gets_nothing(
    refresh: Refresh, login: Login, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.client("other", public=True, grant_types=("password", "refresh_token"))
    first = ok(await refresh(login.refresh_token))

    assert_oauth_error(await refresh(login.refresh_token, "other"), 400, "invalid_grant")
    ok(await refresh(first["refresh_token"]))


async def test_a_spent_token_with_a_wider_scope_is_still_caught_as_reuse(
    refresh: Refresh, wide_login: dict[str, Any], engine: AsyncEngine
) -> None:
    spent = wide_login["refresh_token"]
    newest = ok(await refresh(spent))["refresh_token"]

    # The scope check must not shield a replayed token from reuse detection.
    assert_oauth_error(await refresh(spent, scope="profile email admin"), 400, "invalid_grant")
    assert_oauth_error(await refresh(newest), 400, "invalid_grant")
    row = await family_row(engine, sid_of(wide_login["access_token"]))
    assert row.revoked_reason == "reuse"


@pytest.mark.parametrize("settings_overrides", [GRACE])
@pytest.mark.parametrize("scope", ["admin anything", "admin", "profile admin"])
async def test_within_grace_a_wider_scope_is_refused_and_grants_nothing(
    refresh: Refresh,
    login: Login,
    clock: Clock,
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    scope: str,
) -> None:
    """The attack: alice (scope profile, no admin) through a client that may ask for admin
    re-presents her just-rotated token within the grace window, asking for admin. RFC 6749
    §6: the requested scope MUST NOT include any scope not originally granted — on the
    tolerated path too."""
    first = ok(await refresh(login.refresh_token))
    clock.advance(1)

    response = await refresh(login.refresh_token, scope=scope)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_scope"

    # Nothing was spent: the legitimate newest token rotates on, with the original scope.
    after = ok(await refresh(first["refresh_token"]))
    assert after["scope"] == "profile"
    denied = await client.post(
        "/admin/users",
        json={"username": "mallory", "password": "a long enough password"},
        headers={"Authorization": f"Bearer {after['access_token']}"},
    )
    assert denied.status_code == 403, denied.text
    assert (await family_row(engine, sid_of(login.access_token))).revoked_at is None


@pytest.mark.parametrize("settings_overrides", [GRACE])
async def test_within_grace_a_narrower_scope_is_honoured(
    refresh: Refresh, wide_login: dict[str, Any], clock: Clock
) -> None:
    ok(await refresh(wide_login["refresh_token"]))
    clock.advance(1)
    retry = ok(await refresh(wide_login["refresh_token"], scope="email"))
    assert retry["scope"] == "email"
    claims = jwt.decode(retry["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "email"
