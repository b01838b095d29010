"""The admin API: keys, users and clients, guarded by scope admin, every action audited.

These tests rotate and revoke keys, so each starts and ends with an empty key table (other
tests keep the keys the first app made) and its own audit rows.
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.config import Settings
from authserver.keys.manager import publication_lag
from authserver.services import Services
from tests.conftest import Clock, Registry, assert_oauth_error, password_login

# Every test here makes, rotates or revokes keys: start each from none (see conftest).
pytestmark = pytest.mark.usefixtures("fresh_keys")

Credentials = tuple[str, str]


async def login_token(client: httpx.AsyncClient, username: str, **extra: str) -> str:
    response = await password_login(client, username, **extra)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture
async def root(client: httpx.AsyncClient, registry: Registry, spa: str) -> dict[str, str]:
    """Headers of an admin user's token (scope admin asked for by name)."""
    await registry.user("root", "correct horse", admin=True)
    return {"Authorization": f"Bearer {await login_token(client, 'root', scope='admin')}"}


@pytest.fixture
async def rs(registry: Registry) -> Credentials:
    """A resource server that introspects."""
    secret = await registry.client("rs", grant_types=("client_credentials",))
    assert secret is not None
    return ("rs", secret)


async def introspect(client: httpx.AsyncClient, rs: Credentials, token: str) -> bool:
    response = await client.post("/introspect", data={"token": token}, auth=rs)
    assert response.status_code == 200
    active: bool = response.json()["active"]
    return active


async def keys(client: httpx.AsyncClient, root: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/admin/keys", headers=root)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["keys"]
    return found


def kid_in(keys: list[dict[str, Any]], state: str) -> str:
    (kid,) = [k["kid"] for k in keys if k["state"] == state]
    return str(kid)


async def jwks_kids(client: httpx.AsyncClient) -> set[str]:
    return {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}


async def audit(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    """Admin and key events; the session events (logins, revocations) are test_audit_trail's."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT actor, action, target FROM audit_events"
                " WHERE family_id IS NULL AND action NOT LIKE 'login.%' ORDER BY id"
            )
        )
        return [(row.actor, row.action, row.target) for row in rows]


# --- the guard -----------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/admin/keys"),
    ("POST", "/admin/keys/rotate"),
    ("POST", "/admin/keys/somekid/revoke"),
    ("POST", "/admin/users"),
    ("POST", "/admin/users/some-sub/logout-all"),
    ("POST", "/admin/users/some-sub/disable"),
    ("POST", "/admin/clients"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_admin_endpoints_answer_401_without_a_valid_token_and_403_without_admin(
    client: httpx.AsyncClient, registry: Registry, spa: str, method: str, path: str
) -> None:
    await registry.user("alice", "correct horse", admin=True)
    no_admin = await login_token(client, "alice")  # admin must be asked for by name

    for headers in ({}, {"Authorization": "Bearer not.a.token"}, {"Authorization": "Basic eDp5"}):
        response = await client.request(method, path, headers=headers)
        assert_oauth_error(response, 401, "invalid_token")
        assert response.headers["www-authenticate"].startswith("Bearer")
    response = await client.request(method, path, headers={"Authorization": f"Bearer {no_admin}"})
    assert_oauth_error(response, 403, "insufficient_scope")


async def test_a_revoked_admin_token_is_refused(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    assert (await client.post("/logout/all", headers=root)).status_code == 204
    assert_oauth_error(await client.get("/admin/keys", headers=root), 401, "invalid_token")


async def test_automation_calls_with_a_client_credentials_admin_token(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    secret = await registry.client("ops", scopes=("admin",))
    assert secret is not None
    response = await client.post(
        "/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=("ops", secret)
    )
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    response = await client.post("/admin/keys/rotate", json={"force": True}, headers=headers)

    assert response.status_code == 200, response.text
    assert ("ops", "key.activated") in [(actor, action) for actor, action, _ in await audit(engine)]


# --- keys ----------------------------------------------------------------------------------


async def test_keys_are_listed_without_private_material(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    found = await keys(client, root)

    assert sorted(k["state"] for k in found) == ["active", "next"]
    for key in found:
        assert {"kid", "alg", "state", "created_at", "activated_at", "retired_at"} <= set(key)
        assert not {"d", "p", "q", "sealed_private_key", "private_key"} & set(key)
    assert {k["kid"] for k in found} == await jwks_kids(client)


async def test_a_young_next_key_is_not_promoted(
    client: httpx.AsyncClient, root: dict[str, str], clock: Clock, settings: Settings
) -> None:
    before = await keys(client, root)
    clock.advance(100)

    response = await client.post("/admin/keys/rotate", headers=root)

    assert_oauth_error(response, 409, "key_not_ready")
    wait = settings.jwks_max_age + publication_lag(settings) - 100
    assert response.headers["retry-after"] == str(wait)
    assert await keys(client, root) == before


async def test_rotation_once_the_next_key_is_known_to_every_cache(
    client: httpx.AsyncClient,
    root: dict[str, str],
    clock: Clock,
    settings: Settings,
    rs: Credentials,
    engine: AsyncEngine,
    services: Services,
) -> None:
    before = await keys(client, root)
    old_active, old_next = kid_in(before, "active"), kid_in(before, "next")
    old_token = await login_token(client, "root", scope="admin")
    clock.advance(settings.jwks_max_age + publication_lag(settings))

    response = await client.post("/admin/keys/rotate", headers=root)

    assert response.status_code == 200, response.text
    after = response.json()["keys"]
    assert after == await keys(client, root)
    assert kid_in(after, "active") == old_next
    assert kid_in(after, "retired") == old_active
    new_next = kid_in(after, "next")
    # The retired key stays published for its tokens; the new next key is published now.
    assert await jwks_kids(client) == {old_active, old_next, new_next}
    assert await introspect(client, rs, old_token)
    new_token = await login_token(client, "root", scope="admin")
    assert jwt.get_unverified_header(new_token)["kid"] == old_next
    root_sub = jwt.decode(new_token, options={"verify_signature": False})["sub"]
    assert await audit(engine) == [
        ("system", "key.made", old_active),
        ("system", "key.activated", old_active),
        ("system", "key.made", old_next),
        (root_sub, "key.made", new_next),
        (root_sub, "key.retired", old_active),
        (root_sub, "key.activated", old_next),
    ]
    # Once every token the retired key signed has expired, it leaves the JWKS.
    clock.advance(settings.access_token_ttl + settings.clock_leeway + publication_lag(settings))
    await services.keys.reload()
    assert old_active not in await jwks_kids(client)


async def test_force_promotes_at_once_and_alg_changes_the_new_keys(
    client: httpx.AsyncClient, root: dict[str, str], clock: Clock
) -> None:
    response = await client.post(
        "/admin/keys/rotate", json={"alg": "EdDSA", "force": True}, headers=root
    )
    assert response.status_code == 200, response.text
    next_key = kid_in(response.json()["keys"], "next")
    algs = {k["kid"]: k["alg"] for k in response.json()["keys"]}
    assert algs[next_key] == "EdDSA"

    response = await client.post("/admin/keys/rotate", json={"force": True}, headers=root)
    assert response.status_code == 200, response.text
    token = await login_token(client, "root", scope="admin")
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"]) == ("EdDSA", next_key)


@pytest.mark.parametrize(
    "body",
    [{"alg": "HS256"}, {"alg": 5}, {"force": "yes"}, {"force": 1}],
)
async def test_rotate_refuses_bad_options(
    client: httpx.AsyncClient, root: dict[str, str], body: dict[str, Any]
) -> None:
    assert_oauth_error(
        await client.post("/admin/keys/rotate", json=body, headers=root), 400, "invalid_request"
    )


async def test_rotate_refuses_a_body_that_is_not_json(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    response = await client.post("/admin/keys/rotate", data={"force": "true"}, headers=root)
    assert_oauth_error(response, 415, "invalid_request")
    response = await client.post(
        "/admin/keys/rotate",
        content=b"[1]",
        headers={**root, "Content-Type": "application/json"},
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_revoking_the_active_key_rotates_and_kills_its_tokens_at_once(
    client: httpx.AsyncClient, root: dict[str, str], rs: Credentials, engine: AsyncEngine
) -> None:
    before = await keys(client, root)
    active, nxt = kid_in(before, "active"), kid_in(before, "next")
    token = await login_token(client, "root", scope="admin")
    assert await introspect(client, rs, token)

    response = await client.post(f"/admin/keys/{active}/revoke", headers=root)

    # The admin's own token was signed by the revoked key too: it is dead as well.
    assert response.status_code == 200, response.text
    after = {k["kid"]: k["state"] for k in response.json()["keys"]}
    assert after[active] == "revoked" and after[nxt] == "active"
    assert active not in await jwks_kids(client)
    assert not await introspect(client, rs, token)
    assert_oauth_error(await client.get("/admin/keys", headers=root), 401, "invalid_token")
    fresh = await login_token(client, "root", scope="admin")
    assert jwt.get_unverified_header(fresh)["kid"] == nxt
    assert ("key.revoked", active) in [
        (action, target) for _, action, target in await audit(engine)
    ]


async def test_revoking_the_next_key_publishes_another(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    nxt = kid_in(await keys(client, root), "next")

    response = await client.post(f"/admin/keys/{nxt}/revoke", headers=root)

    assert response.status_code == 200, response.text
    after = response.json()["keys"]
    assert {k["kid"]: k["state"] for k in after}[nxt] == "revoked"
    assert kid_in(after, "next") != nxt
    assert nxt not in await jwks_kids(client)
    assert (await client.post(f"/admin/keys/{nxt}/revoke", headers=root)).json()["keys"] == after


async def test_revoking_an_unknown_kid_is_404(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    assert_oauth_error(await client.post("/admin/keys/nope/revoke", headers=root), 404, "not_found")


# --- users ---------------------------------------------------------------------------------


async def test_admin_creates_a_user_who_can_log_in(
    client: httpx.AsyncClient, root: dict[str, str], engine: AsyncEngine
) -> None:
    body = {"username": "bob", "password": "s3cret passphrase", "scopes": ["profile"]}

    response = await client.post("/admin/users", json=body, headers=root)

    assert response.status_code == 201, response.text
    assert response.json()["username"] == "bob"
    sub = response.json()["sub"]
    assert "password" not in response.text and "s3cret" not in response.text
    token = await login_token(client, "bob", password="s3cret passphrase")
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == sub
    assert (await audit(engine))[-1][1:] == ("user.created", sub)
    again = await client.post("/admin/users", json=body, headers=root)
    assert_oauth_error(again, 409, "conflict")


@pytest.mark.parametrize(
    "body",
    [
        {"password": "long enough passphrase"},
        {"username": "bob"},
        {"username": "bob", "password": "long enough passphrase", "scopes": "profile"},
        {"username": "bob", "password": "long enough passphrase", "scopes": ["bad scope"]},
        {"username": "bob", "password": "long enough passphrase", "admin": "true"},
        {"username": 7, "password": "long enough passphrase"},
    ],
)
async def test_admin_user_creation_refuses_bad_fields(
    client: httpx.AsyncClient, root: dict[str, str], body: dict[str, Any]
) -> None:
    assert_oauth_error(
        await client.post("/admin/users", json=body, headers=root), 400, "invalid_request"
    )


async def test_logout_all_ends_every_session_of_that_user(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry, rs: Credentials
) -> None:
    sub = await registry.user("alice", "correct horse")
    logins = [(await password_login(client)).json() for _ in range(2)]

    response = await client.post(f"/admin/users/{sub}/logout-all", headers=root)

    assert response.status_code == 204
    for login in logins:
        assert not await introspect(client, rs, login["access_token"])
        refreshed = await client.post(
            "/refresh", data={"refresh_token": login["refresh_token"], "client_id": "spa"}
        )
        assert refreshed.status_code == 400
    assert (await password_login(client)).status_code == 200  # still allowed to log in


async def test_disable_stops_logins_and_ends_sessions(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    rs: Credentials,
    engine: AsyncEngine,
) -> None:
    sub = await registry.user("alice", "correct horse")
    login = (await password_login(client)).json()

    response = await client.post(f"/admin/users/{sub}/disable", headers=root)

    assert response.status_code == 204
    assert not await introspect(client, rs, login["access_token"])
    assert_oauth_error(await password_login(client), 400, "invalid_grant")
    assert (await audit(engine))[-1][1:] == ("user.disabled", sub)


@pytest.mark.parametrize("action", ["logout-all", "disable"])
async def test_user_actions_on_an_unknown_sub_are_404(
    client: httpx.AsyncClient, root: dict[str, str], action: str
) -> None:
    response = await client.post(f"/admin/users/no-such-sub/{action}", headers=root)
    assert_oauth_error(response, 404, "not_found")


# --- clients -------------------------------------------------------------------------------


async def test_admin_registers_a_confidential_client_and_shows_its_secret_once(
    client: httpx.AsyncClient, root: dict[str, str], engine: AsyncEngine
) -> None:
    body = {"client_id": "billing", "grant_types": ["client_credentials"], "scopes": ["invoices"]}

    response = await client.post("/admin/clients", json=body, headers=root)

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["client_id"] == "billing" and created["public"] is False
    secret = created["client_secret"]
    token = await client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("billing", secret)
    )
    assert token.status_code == 200 and token.json()["scope"] == "invoices"
    rows = await audit(engine)
    assert rows[-1][1:] == ("client.created", "billing")
    async with engine.connect() as conn:
        detail = (await conn.execute(text("SELECT detail FROM audit_events"))).scalars().all()
    assert not any(secret in d for d in detail)
    assert_oauth_error(
        await client.post("/admin/clients", json=body, headers=root), 409, "conflict"
    )


async def test_admin_registers_a_public_cookie_client_without_a_secret(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    body = {
        "client_id": "web",
        "public": True,
        "grant_types": ["password", "refresh_token"],
        "scopes": ["profile"],
        "refresh_delivery": "cookie",
    }

    response = await client.post("/admin/clients", json=body, headers=root)

    assert response.status_code == 201, response.text
    assert "client_secret" not in response.json()
    assert response.json()["refresh_delivery"] == "cookie"


@pytest.mark.parametrize(
    "body",
    [
        {"public": True},
        {"client_id": "x y"},
        {"client_id": "p", "public": True, "grant_types": ["client_credentials"]},
        {"client_id": "g", "grant_types": ["implicit"]},
        {"client_id": "d", "refresh_delivery": "header"},
        {"client_id": "s", "scopes": ["a b"]},
    ],
)
async def test_admin_client_registration_refuses_bad_fields(
    client: httpx.AsyncClient, root: dict[str, str], body: dict[str, Any]
) -> None:
    assert_oauth_error(
        await client.post("/admin/clients", json=body, headers=root), 400, "invalid_request"
    )


async def test_the_audit_port_reads_back_what_it_wrote_in_order(
    client: httpx.AsyncClient, root: dict[str, str], services: Services
) -> None:
    body = {"username": "bob", "password": "s3cret passphrase"}
    sub = (await client.post("/admin/users", json=body, headers=root)).json()["sub"]
    assert (await client.post(f"/admin/users/{sub}/disable", headers=root)).status_code == 204

    events = await services.audit.recent(limit=2)

    assert [(e.action, e.target) for e in events] == [("user.created", sub), ("user.disabled", sub)]
    assert events[0].detail == {"username": "bob", "scopes": []}
    assert events[1].detail == {"sessions": 0}
    assert events[0].actor == events[1].actor != "system"
