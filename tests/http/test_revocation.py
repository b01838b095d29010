"""POST /logout, /logout/all, /revoke (RFC 7009) and /introspect (RFC 7662)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.services import Services
from tests.conftest import Clock, Login, Registry, assert_oauth_error, password_login
from tests.http.hostile import HOSTILE, forge, hostile_token

Credentials = tuple[str, str]


@pytest.fixture
async def rs(registry: Registry) -> Credentials:
    """A resource server: a confidential client that introspects tokens."""
    secret = await registry.client("rs")
    assert secret is not None
    return ("rs", secret)


async def log_in(
    client: httpx.AsyncClient,
    username: str = "alice",
    password: str = "correct horse",
    client_id: str = "spa",
    **extra: str,
) -> Login:
    response = await password_login(client, username, password, client_id, **extra)
    assert response.status_code == 200, response.text
    body = response.json()
    return Login(body["access_token"], body["refresh_token"], body)


async def refresh(
    client: httpx.AsyncClient, refresh_token: str, client_id: str = "spa"
) -> httpx.Response:
    return await client.post(
        "/refresh", data={"refresh_token": refresh_token, "client_id": client_id}
    )


async def introspect(client: httpx.AsyncClient, rs: Credentials, token: str) -> dict[str, Any]:
    response = await client.post("/introspect", data={"token": token}, auth=rs)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def assert_refresh_dead(client: httpx.AsyncClient, refresh_token: str) -> None:
    response = await refresh(client, refresh_token)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


async def assert_refresh_alive(client: httpx.AsyncClient, refresh_token: str) -> str:
    """Spends the token (it rotates) and returns its successor."""
    response = await refresh(client, refresh_token)
    assert response.status_code == 200, response.text
    successor: str = response.json()["refresh_token"]
    return successor


def assert_invalid_token(response: httpx.Response) -> None:
    assert_oauth_error(response, 401, "invalid_token")
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- POST /logout ---------------------------------------------------------------------------


async def test_logout_with_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient, login: Login, rs: Credentials
) -> None:
    rotated = await refresh(client, login.refresh_token)
    assert rotated.status_code == 200
    newest_refresh, newest_access = rotated.json()["refresh_token"], rotated.json()["access_token"]

    response = await client.post("/logout", data={"refresh_token": newest_refresh})

    assert response.status_code == 204
    assert response.content == b""
    await assert_refresh_dead(client, newest_refresh)
    # Every access token of the family goes with it, the older one included.
    assert await introspect(client, rs, login.access_token) == {"active": False}
    assert await introspect(client, rs, newest_access) == {"active": False}


async def test_logout_accepts_a_json_body(
    client: httpx.AsyncClient, login: Login, rs: Credentials
) -> None:
    response = await client.post("/logout", json={"refresh_token": login.refresh_token})

    assert response.status_code == 204
    await assert_refresh_dead(client, login.refresh_token)


async def test_logout_with_bearer_only_denies_that_access_token(
    client: httpx.AsyncClient, login: Login, rs: Credentials
) -> None:
    response = await client.post("/logout", headers=bearer(login.access_token))

    assert response.status_code == 204
    assert await introspect(client, rs, login.access_token) == {"active": False}
    # Only that jti: the session itself goes on, and its next access token is live.
    rotated = await refresh(client, login.refresh_token)
    assert rotated.status_code == 200
    assert (await introspect(client, rs, rotated.json()["access_token"]))["active"] is True


async def test_logout_with_refresh_token_and_bearer_ends_both(
    client: httpx.AsyncClient, login: Login, rs: Credentials, registry: Registry
) -> None:
    await registry.user("bob", "bob's password")
    bob = await log_in(client, "bob", "bob's password")

    response = await client.post(
        "/logout", data={"refresh_token": login.refresh_token}, headers=bearer(login.access_token)
    )

    assert response.status_code == 204
    await assert_refresh_dead(client, login.refresh_token)
    assert await introspect(client, rs, login.access_token) == {"active": False}
    # Someone else's session is untouched.
    assert (await introspect(client, rs, bob.access_token))["active"] is True
    await assert_refresh_alive(client, bob.refresh_token)


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        pytest.param({"refresh_token": "never-issued"}, {}, id="unknown-refresh-token"),
        pytest.param({}, bearer("not.a.jwt"), id="garbage-bearer"),
        pytest.param({}, bearer("garbage"), id="garbage-bearer-no-dots"),
        pytest.param({}, {}, id="nothing"),
    ],
)
async def test_logout_answers_204_for_unknown_tokens(
    client: httpx.AsyncClient, login: Login, data: dict[str, str], headers: dict[str, str]
) -> None:
    response = await client.post("/logout", data=data, headers=headers)

    assert response.status_code == 204
    # Nothing of alice's was touched on the way.
    await assert_refresh_alive(client, login.refresh_token)


async def test_logout_answers_204_when_the_tokens_are_already_dead(
    client: httpx.AsyncClient, login: Login, services: Services
) -> None:
    data, headers = {"refresh_token": login.refresh_token}, bearer(login.access_token)
    first = await client.post("/logout", data=data, headers=headers)
    again = await client.post("/logout", data=data, headers=headers)
    expired = await client.post(
        "/logout", headers=bearer(hostile_token("expired", services, login.access_token))
    )

    assert (first.status_code, again.status_code, expired.status_code) == (204, 204, 204)


async def denied_jtis(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT jti FROM denied_access_tokens"))
        return {row.jti for row in rows}


def jti(services: Services, token: str) -> str:
    found: str = services.verify(token)["jti"]
    return found


async def test_denied_tokens_are_forgotten_once_no_verifier_could_accept_them(
    client: httpx.AsyncClient,
    login: Login,
    rs: Credentials,
    services: Services,
    engine: AsyncEngine,
    clock: Clock,
) -> None:
    ttl, leeway = services.settings.access_token_ttl, services.settings.clock_leeway
    first = login.access_token
    await client.post("/logout", headers=bearer(first))
    assert await denied_jtis(engine) == {jti(services, first)}

    # Past exp but inside the leeway the server itself grants: the first token would still
    # verify, so a second denial must not sweep its row away.
    clock.advance(ttl + leeway // 2)
    second = await log_in(client)
    await client.post("/logout", headers=bearer(second.access_token))
    assert await introspect(client, rs, first) == {"active": False}
    assert jti(services, first) in await denied_jtis(engine)

    clock.advance(leeway)
    third = await log_in(client)
    await client.post("/logout", headers=bearer(third.access_token))
    assert await denied_jtis(engine) == {
        jti(services, second.access_token),
        jti(services, third.access_token),
    }


# --- POST /logout/all -----------------------------------------------------------------------


async def test_logout_all_revokes_every_family_of_the_user(
    client: httpx.AsyncClient, login: Login, rs: Credentials, registry: Registry
) -> None:
    laptop = login
    phone = await log_in(client)
    await registry.user("bob", "bob's password")
    bob = await log_in(client, "bob", "bob's password")

    response = await client.post("/logout/all", headers=bearer(laptop.access_token))

    assert response.status_code == 204
    assert response.content == b""
    await assert_refresh_dead(client, laptop.refresh_token)
    await assert_refresh_dead(client, phone.refresh_token)
    assert await introspect(client, rs, phone.access_token) == {"active": False}
    assert await introspect(client, rs, laptop.access_token) == {"active": False}
    await assert_refresh_alive(client, bob.refresh_token)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-authorization"),
        pytest.param({"Authorization": "Bearer"}, id="empty-bearer"),
        pytest.param({"Authorization": "Bearer garbage"}, id="garbage"),
        pytest.param({"Authorization": "Basic c3BhOg=="}, id="basic-scheme"),
    ],
)
async def test_logout_all_requires_a_bearer_access_token(
    client: httpx.AsyncClient, login: Login, headers: dict[str, str]
) -> None:
    response = await client.post("/logout/all", headers=headers)

    assert_invalid_token(response)
    await assert_refresh_alive(client, login.refresh_token)


async def test_logout_all_refuses_the_refresh_token_as_bearer(
    client: httpx.AsyncClient, login: Login
) -> None:
    response = await client.post("/logout/all", headers=bearer(login.refresh_token))

    assert_invalid_token(response)
    await assert_refresh_alive(client, login.refresh_token)


@pytest.mark.parametrize("kind", HOSTILE)
async def test_logout_all_refuses_hostile_tokens(
    client: httpx.AsyncClient, login: Login, services: Services, kind: str
) -> None:
    other_session = await log_in(client)
    token = hostile_token(kind, services, login.access_token)

    response = await client.post("/logout/all", headers=bearer(token))

    assert_invalid_token(response)
    await assert_refresh_alive(client, login.refresh_token)
    await assert_refresh_alive(client, other_session.refresh_token)


async def test_logout_all_accepts_the_forging_control(
    client: httpx.AsyncClient, login: Login, services: Services
) -> None:
    # The hostile cases are built like this one; it must pass, or their refusals prove nothing.
    response = await client.post("/logout/all", headers=bearer(forge(services, login.access_token)))

    assert response.status_code == 204
    await assert_refresh_dead(client, login.refresh_token)


async def test_logout_all_refuses_a_token_of_a_revoked_family(
    client: httpx.AsyncClient, login: Login
) -> None:
    other_session = await log_in(client)
    await client.post("/logout", data={"refresh_token": login.refresh_token})

    response = await client.post("/logout/all", headers=bearer(login.access_token))

    assert_invalid_token(response)
    await assert_refresh_alive(client, other_session.refresh_token)


async def test_logout_all_refuses_a_denied_token(client: httpx.AsyncClient, login: Login) -> None:
    await client.post("/logout", headers=bearer(login.access_token))

    response = await client.post("/logout/all", headers=bearer(login.access_token))

    assert_invalid_token(response)
    await assert_refresh_alive(client, login.refresh_token)


# --- POST /revoke (RFC 7009) ----------------------------------------------------------------


@pytest.fixture
async def service(registry: Registry) -> Credentials:
    """A confidential client with an access token of its own (client_credentials)."""
    secret = await registry.client("svc", scopes=("profile",))
    assert secret is not None
    return ("svc", secret)


async def service_token(client: httpx.AsyncClient, service: Credentials) -> str:
    response = await client.post("/token", data={"grant_type": "client_credentials"}, auth=service)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_revoke_refresh_token_revokes_its_family(
    client: httpx.AsyncClient, login: Login, rs: Credentials
) -> None:
    response = await client.post(
        "/revoke",
        data={
            "token": login.refresh_token,
            "token_type_hint": "refresh_token",
            "client_id": "spa",
        },
    )

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    await assert_refresh_dead(client, login.refresh_token)
    assert await introspect(client, rs, login.access_token) == {"active": False}


async def test_revoke_access_token_denies_it_but_keeps_the_session(
    client: httpx.AsyncClient, login: Login, rs: Credentials
) -> None:
    response = await client.post("/revoke", data={"token": login.access_token, "client_id": "spa"})

    assert response.status_code == 200
    assert await introspect(client, rs, login.access_token) == {"active": False}
    assert_invalid_token(await client.post("/logout/all", headers=bearer(login.access_token)))
    await assert_refresh_alive(client, login.refresh_token)


async def test_revoke_ignores_a_wrong_token_type_hint(
    client: httpx.AsyncClient, login: Login, rs: Credentials
) -> None:
    # RFC 7009 §2.1: a wrong hint makes the server extend its search, not fail.
    response = await client.post(
        "/revoke",
        data={"token": login.refresh_token, "token_type_hint": "access_token", "client_id": "spa"},
    )

    assert response.status_code == 200
    await assert_refresh_dead(client, login.refresh_token)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("never-issued-" + secrets.token_urlsafe(16), id="opaque"),
        pytest.param("eyJhbGciOiJSUzI1NiJ9.e30.c2ln", id="jwt-shaped"),
    ],
)
async def test_revoke_answers_200_for_unknown_tokens(
    client: httpx.AsyncClient, spa: str, token: str
) -> None:
    response = await client.post("/revoke", data={"token": token, "client_id": spa})

    assert response.status_code == 200


async def test_revoke_answers_200_for_already_revoked_tokens(
    client: httpx.AsyncClient, login: Login
) -> None:
    for token in (login.refresh_token, login.access_token):
        for _ in range(2):
            response = await client.post("/revoke", data={"token": token, "client_id": "spa"})
            assert response.status_code == 200, response.text


async def test_revoke_answers_200_for_an_expired_access_token(
    client: httpx.AsyncClient, login: Login, services: Services
) -> None:
    expired = hostile_token("expired", services, login.access_token)

    response = await client.post("/revoke", data={"token": expired, "client_id": "spa"})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("auth", "data"),
    [
        pytest.param(("svc", "wrong secret"), {}, id="basic-wrong-secret"),
        pytest.param(None, {"client_id": "svc", "client_secret": "wrong"}, id="post-wrong-secret"),
        pytest.param(None, {"client_id": "svc"}, id="no-secret"),
        pytest.param(None, {}, id="no-client"),
        pytest.param(("nobody", "secret"), {}, id="unknown-client"),
    ],
)
async def test_revoke_requires_confidential_clients_to_authenticate(
    client: httpx.AsyncClient,
    service: Credentials,
    rs: Credentials,
    auth: tuple[str, str] | None,
    data: dict[str, str],
) -> None:
    token = await service_token(client, service)

    response = await client.post(
        "/revoke", data={"token": token, **data}, auth=auth or httpx.USE_CLIENT_DEFAULT
    )

    assert_oauth_error(response, 401, "invalid_client")
    assert (await introspect(client, rs, token))["active"] is True


@pytest.mark.parametrize("method", ["basic", "post"])
async def test_revoke_by_an_authenticated_confidential_client(
    client: httpx.AsyncClient, service: Credentials, rs: Credentials, method: str
) -> None:
    token = await service_token(client, service)
    if method == "basic":
        response = await client.post("/revoke", data={"token": token}, auth=service)
    else:
        client_id, secret = service
        response = await client.post(
            "/revoke", data={"token": token, "client_id": client_id, "client_secret": secret}
        )

    assert response.status_code == 200, response.text
    assert await introspect(client, rs, token) == {"active": False}


async def test_revoke_by_a_public_client_needs_its_client_id(
    client: httpx.AsyncClient, login: Login
) -> None:
    response = await client.post("/revoke", data={"token": login.refresh_token})

    assert_oauth_error(response, 401, "invalid_client")
    await assert_refresh_alive(client, login.refresh_token)


async def test_a_client_cannot_revoke_another_clients_tokens(
    client: httpx.AsyncClient,
    login: Login,
    service: Credentials,
    rs: Credentials,
    registry: Registry,
) -> None:
    await registry.client("other-spa", public=True, grant_types=("password", "refresh_token"))
    service_access = await service_token(client, service)
    attempts = [
        ({"token": login.refresh_token}, service),
        ({"token": login.access_token}, service),
        ({"token": login.refresh_token, "client_id": "other-spa"}, None),
        ({"token": login.access_token, "client_id": "other-spa"}, None),
        ({"token": service_access, "client_id": "spa"}, None),
    ]
    for data, auth in attempts:
        response = await client.post("/revoke", data=data, auth=auth or httpx.USE_CLIENT_DEFAULT)
        # RFC 7009 §2.2: answered like an unknown token. An error here would tell the caller
        # that the token is live and someone else's.
        assert response.status_code == 200, response.text
        assert response.json() == {}
        assert response.headers["cache-control"] == "no-store"

    assert (await introspect(client, rs, login.access_token))["active"] is True
    assert (await introspect(client, rs, service_access))["active"] is True
    await assert_refresh_alive(client, login.refresh_token)


@pytest.mark.parametrize("data", [{}, {"token": ""}], ids=["absent", "empty"])
async def test_revoke_without_a_token_is_invalid_request(
    client: httpx.AsyncClient, spa: str, data: dict[str, str]
) -> None:
    response = await client.post("/revoke", data={"client_id": spa, **data})

    assert_oauth_error(response, 400, "invalid_request")


# --- POST /introspect (RFC 7662) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "data"),
    [
        pytest.param(None, {}, id="no-client"),
        pytest.param(None, {"client_id": "spa"}, id="public-client"),
        pytest.param(("rs", "wrong secret"), {}, id="basic-wrong-secret"),
        pytest.param(None, {"client_id": "rs", "client_secret": "wrong"}, id="post-wrong-secret"),
        pytest.param(None, {"client_id": "rs"}, id="confidential-without-secret"),
        pytest.param(("nobody", "secret"), {}, id="unknown-client"),
    ],
)
async def test_introspect_requires_an_authenticated_confidential_client(
    client: httpx.AsyncClient,
    login: Login,
    rs: Credentials,
    auth: tuple[str, str] | None,
    data: dict[str, str],
) -> None:
    response = await client.post(
        "/introspect",
        data={"token": login.access_token, **data},
        auth=auth or httpx.USE_CLIENT_DEFAULT,
    )

    assert_oauth_error(response, 401, "invalid_client")
    assert "active" not in response.json()


async def test_introspect_accepts_client_secret_post(
    client: httpx.AsyncClient, login: Login, rs: Credentials
) -> None:
    client_id, secret = rs
    response = await client.post(
        "/introspect",
        data={"token": login.access_token, "client_id": client_id, "client_secret": secret},
    )

    assert response.status_code == 200
    assert response.json()["active"] is True


async def test_introspect_active_access_token(
    client: httpx.AsyncClient, login: Login, rs: Credentials, services: Services, clock: Clock
) -> None:
    body = await introspect(client, rs, login.access_token)

    assert body["active"] is True
    assert body["sub"] == (await services.users.by_username("alice")).id  # type: ignore[union-attr]
    assert body["client_id"] == "spa"
    assert body["scope"] == login.body["scope"]
    assert body["iss"] == services.settings.issuer
    assert body["aud"] == services.settings.audience
    assert body["iat"] == clock.now
    assert body["exp"] == clock.now + services.settings.access_token_ttl
    assert isinstance(body["jti"], str) and len(body["jti"]) >= 22  # >= 128 bits, base64url
    assert body["token_type"] == "Bearer"


async def test_introspect_refresh_token_of_the_asking_client(
    client: httpx.AsyncClient, registry: Registry, services: Services, clock: Clock
) -> None:
    secret = await registry.client("webapp", grant_types=("password", "refresh_token"))
    assert secret is not None
    user_id = await registry.user("alice", "correct horse")
    session = await log_in(client, client_id="webapp", client_secret=secret)

    body = await introspect(client, ("webapp", secret), session.refresh_token)

    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["sub"] == user_id
    assert body["client_id"] == "webapp"
    assert body["scope"] == session.body["scope"]
    assert body["iat"] == clock.now
    assert body["exp"] > clock.now


async def test_introspect_access_token_expires_by_the_server_clock(
    client: httpx.AsyncClient, login: Login, rs: Credentials, services: Services, clock: Clock
) -> None:
    ttl, leeway = services.settings.access_token_ttl, services.settings.clock_leeway

    clock.advance(ttl - 1)
    assert (await introspect(client, rs, login.access_token))["active"] is True
    clock.advance(1 + leeway)
    assert await introspect(client, rs, login.access_token) == {"active": False}


async def test_introspect_another_clients_refresh_token_is_inactive(
    client: httpx.AsyncClient, login: Login, rs: Credentials
) -> None:
    assert await introspect(client, rs, login.refresh_token) == {"active": False}
    await assert_refresh_alive(client, login.refresh_token)


async def test_introspect_spent_and_idle_expired_refresh_tokens_are_inactive(
    client: httpx.AsyncClient, registry: Registry, services: Services, clock: Clock
) -> None:
    secret = await registry.client("webapp", grant_types=("password", "refresh_token"))
    assert secret is not None
    await registry.user("alice", "correct horse")
    session = await log_in(client, client_id="webapp", client_secret=secret)
    webapp = ("webapp", secret)
    rotated = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": session.refresh_token},
        auth=webapp,
    )
    assert rotated.status_code == 200, rotated.text
    successor = rotated.json()["refresh_token"]

    assert await introspect(client, webapp, session.refresh_token) == {"active": False}
    assert (await introspect(client, webapp, successor))["active"] is True
    clock.advance(services.settings.refresh_token_ttl)
    assert await introspect(client, webapp, successor) == {"active": False}


async def test_introspect_revoked_family_and_denied_jti_are_inactive(
    client: httpx.AsyncClient, login: Login, rs: Credentials
) -> None:
    other = await log_in(client)
    await client.post("/revoke", data={"token": login.refresh_token, "client_id": "spa"})
    await client.post("/revoke", data={"token": other.access_token, "client_id": "spa"})

    assert await introspect(client, rs, login.access_token) == {"active": False}
    assert await introspect(client, rs, other.access_token) == {"active": False}


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "...",
        "eyJhbGciOiJSUzI1NiJ9.e30.",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
        "%%%.%%%.%%%",
        "x" * 4000,
    ],
    ids=["word", "three-letters", "dots", "no-signature", "payload-not-json", "bad-b64", "long"],
)
async def test_introspect_malformed_tokens_are_inactive(
    client: httpx.AsyncClient, rs: Credentials, token: str
) -> None:
    assert await introspect(client, rs, token) == {"active": False}


@pytest.mark.parametrize(
    "data",
    [{"token_type_hint": "access_token"}, {"token": ""}],
    ids=["absent", "empty"],
)
async def test_introspect_without_a_token_is_invalid_request(
    client: httpx.AsyncClient, rs: Credentials, data: dict[str, str]
) -> None:
    response = await client.post("/introspect", data=data, auth=rs)

    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("kind", HOSTILE)
async def test_introspect_hostile_tokens_are_inactive(
    client: httpx.AsyncClient, login: Login, rs: Credentials, services: Services, kind: str
) -> None:
    token = hostile_token(kind, services, login.access_token)

    assert await introspect(client, rs, token) == {"active": False}


async def test_introspect_accepts_the_forging_control(
    client: httpx.AsyncClient, login: Login, rs: Credentials, services: Services
) -> None:
    body = await introspect(client, rs, forge(services, login.access_token))

    assert body["active"] is True
