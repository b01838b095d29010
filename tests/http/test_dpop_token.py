"""POST /token with DPoP (RFC 9449 §5): every grant binds the access token to the proof's key,
a public client's refresh tokens are bound to it and still rotate, a client may require it."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.audit import AuditEvent
from authserver.clients import Client, hash_secret, new_secret
from authserver.services import Services
from authserver.tokens.resources import Resource
from tests._dpop import DPoPKey, claims_of
from tests.conftest import Registry, assert_oauth_error, password_login
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    Flow,
    admin_headers,
    code_for,
    web_client,
)


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return dict(INSECURE_COOKIES)


async def dpop_login(http: httpx.AsyncClient, key: DPoPKey) -> dict[str, str]:
    response = await http.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": "correct horse",
              "client_id": "spa"},
        headers=key.header(),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def refresh(
    http: httpx.AsyncClient, token: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}
    return await http.post("/token", data=data, headers=headers or {})


async def test_a_proof_binds_the_access_token_and_the_refresh_token_which_still_rotates(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    body = await dpop_login(client, key)
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": key.jkt}

    response = await refresh(client, body["refresh_token"], key.header())
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["token_type"] == "DPoP"
    assert rotated["refresh_token"] != body["refresh_token"]  # bound tokens still rotate
    assert claims_of(rotated["access_token"])["cnf"] == {"jkt": key.jkt}


async def test_a_bound_refresh_token_without_a_proof_is_invalid_grant_and_spends_nothing(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    body = await dpop_login(client, key)
    assert_oauth_error(await refresh(client, body["refresh_token"]), 400, "invalid_grant")
    # Its holder refreshes it as before.
    response = await refresh(client, body["refresh_token"], key.header())
    assert response.status_code == 200, response.text


async def test_a_bound_refresh_token_with_another_keys_proof_is_reuse_and_the_family_dies(
    client: httpx.AsyncClient, registry: Registry, spa: str, engine: AsyncEngine
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    body = await dpop_login(client, key)
    stolen = await refresh(client, body["refresh_token"], DPoPKey().header())
    assert_oauth_error(stolen, 400, "invalid_grant")
    # The family is revoked: not even the key's holder refreshes it any more.
    after = await refresh(client, body["refresh_token"], key.header())
    assert_oauth_error(after, 400, "invalid_grant")
    async with engine.connect() as conn:
        reason = await conn.scalar(text("SELECT revoked_reason FROM refresh_families"))
    assert reason == "reuse"


async def test_without_a_proof_tokens_stay_bearer_tokens(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    response = await password_login(client)
    body = response.json()
    assert body["token_type"] == "Bearer" and "cnf" not in claims_of(body["access_token"])
    assert (await refresh(client, body["refresh_token"])).json()["token_type"] == "Bearer"


async def test_a_proof_is_accepted_once(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    headers = key.header()
    data = {"grant_type": "password", "username": "alice", "password": "correct horse",
            "client_id": "spa"}  # fmt: skip
    assert (await client.post("/token", data=data, headers=headers)).status_code == 200
    again = await client.post("/token", data=data, headers=headers)
    assert_oauth_error(again, 400, "invalid_dpop_proof")


async def test_bad_proofs_are_invalid_dpop_proof(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    data = {"grant_type": "password", "username": "alice", "password": "correct horse",
            "client_id": "spa"}  # fmt: skip
    bad = {
        # The address this instance is reached at is not the issuer's URL.
        "instance address": {"DPoP": key.proof(htu="http://testserver/token")},
        "another endpoint": {"DPoP": key.proof("/userinfo")},
        "GET": {"DPoP": key.proof(method="GET")},
        "not a JWT": {"DPoP": "not-a-jwt"},
        "empty": {"DPoP": ""},
    }
    for name, headers in bad.items():
        response = await client.post("/token", data=data, headers=headers)
        assert_oauth_error(response, 400, "invalid_dpop_proof"), name
    two = [("DPoP", key.proof()), ("DPoP", key.proof())]
    response = await client.post("/token", data=data, headers=two)
    assert_oauth_error(response, 400, "invalid_dpop_proof")


async def test_client_credentials_with_a_proof_is_bound(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    secret = await registry.client("svc")
    assert secret is not None
    key = DPoPKey()
    response = await client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("svc", secret),
        headers=key.header(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    assert claims_of(response.json()["access_token"])["cnf"]["jkt"] == key.jkt


async def test_a_client_that_requires_dpop_is_refused_without_a_proof(
    client: httpx.AsyncClient, services: Services
) -> None:
    secret = new_secret()
    svc = Client("svc", hash_secret(secret), ("client_credentials",), ("profile",))
    assert await services.clients.create(replace(svc, dpop_bound_access_tokens=True), 0)
    data = {"grant_type": "client_credentials"}
    response = await client.post("/token", data=data, auth=("svc", secret))
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    response = await client.post(
        "/token", data=data, auth=("svc", secret), headers=DPoPKey().header()
    )
    assert response.status_code == 200, response.text


async def test_a_code_exchange_with_a_proof_binds_the_family(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await registry.user("alice", "correct horse")
    await web_client(registry)
    flow = Flow.new()
    code = await code_for(client, flow)
    key = DPoPKey()
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
              "code_verifier": flow.verifier, "client_id": "web"}  # fmt: skip
    response = await client.post("/token", data=fields, headers=key.header())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP" and claims_of(body["access_token"])["cnf"]["jkt"] == key.jkt
    data = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
            "client_id": "web"}  # fmt: skip
    assert_oauth_error(await client.post("/token", data=data), 400, "invalid_grant")
    response = await client.post("/token", data=data, headers=key.header())
    assert response.status_code == 200, response.text


async def test_the_admin_api_sets_and_shows_dpop_bound_access_tokens(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    root = await admin_headers(client, registry)
    body = {"client_id": "svc", "grant_types": ["client_credentials"], "scopes": ["profile"],
            "dpop_bound_access_tokens": True}  # fmt: skip
    created = await client.post("/admin/clients", json=body, headers=root)
    assert created.status_code == 201, created.text
    secret = created.json()["client_secret"]
    shown = await client.get("/admin/clients/svc", headers=root)
    assert shown.json()["dpop_bound_access_tokens"] is True
    data = {"grant_type": "client_credentials"}
    refused = await client.post("/token", data=data, auth=("svc", secret))
    assert_oauth_error(refused, 400, "invalid_dpop_proof")

    patch = {"dpop_bound_access_tokens": False}
    changed = await client.patch("/admin/clients/svc", json=patch, headers=root)
    assert changed.status_code == 200 and changed.json()["dpop_bound_access_tokens"] is False
    bad = await client.patch("/admin/clients/svc", json={"dpop_bound_access_tokens": "yes"},
                             headers=root)  # fmt: skip
    assert_oauth_error(bad, 400, "invalid_request")


async def test_a_resource_and_a_proof_together_bind_a_token_for_that_resource(
    client: httpx.AsyncClient, registry: Registry, services: Services
) -> None:
    """RFC 8707 and RFC 9449 at once: the token is for the resource and bound to the key, and so
    is its refresh."""
    api = Resource("https://api.example/", ("profile",), 300, 0)
    assert await services.resources.create(api, AuditEvent(0, "test", "resource.created", "api"))
    await registry.user("alice", "correct horse")
    await registry.client(
        "spa", public=True, grant_types=("password", "refresh_token"), scopes=("profile",)
    )
    key = DPoPKey()
    data = {"grant_type": "password", "username": "alice", "password": "correct horse",
            "client_id": "spa", "resource": api.resource}  # fmt: skip
    response = await client.post("/token", data=data, headers=key.header())
    assert response.status_code == 200, response.text
    body = response.json()
    claims = claims_of(body["access_token"])
    assert claims["aud"] == api.resource and claims["cnf"] == {"jkt": key.jkt}
    assert body["token_type"] == "DPoP" and body["expires_in"] == 300

    again = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
             "client_id": "spa", "resource": api.resource}  # fmt: skip
    refreshed = await client.post("/token", data=again, headers=key.header())
    assert refreshed.status_code == 200, refreshed.text
    claims = claims_of(refreshed.json()["access_token"])
    assert claims["aud"] == api.resource and claims["cnf"] == {"jkt": key.jkt}
