"""OpenID Connect (API.md): ID tokens, /userinfo, /end-session, and the discovery additions."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import jwt
import pytest

from authserver.tokens.id_tokens import at_hash
from tests.conftest import ISSUER, Clock, Registry
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    WEB,
    Flow,
    authorize,
    code_for,
    exchange,
    query,
    web_client,
)

BYE = "https://app.example/bye"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry) -> str:
    return await registry.user("alice", "correct horse", scopes=("profile",))


@pytest.fixture
async def web(registry: Registry) -> str:
    await web_client(registry, post_logout_redirect_uris=(BYE,))
    return WEB


@pytest.fixture
async def rs(registry: Registry) -> tuple[str, str]:
    secret = await registry.client("rs")
    assert secret is not None
    return "rs", secret


async def signed_in(
    client: httpx.AsyncClient, scope: str = "openid profile", **extra: str
) -> dict[str, Any]:
    flow = Flow.new(WEB, scope=scope, **extra)
    response = await exchange(client, await code_for(client, flow), flow)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def verified_id_token(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "JWT"
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    [jwk] = [key for key in keys if key["kid"] == header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        audience=WEB,
        issuer=ISSUER,
        options={"verify_iat": False},  # the server's clock may run ahead in a test
    )
    return claims


async def test_the_code_exchange_returns_an_id_token_with_the_contracts_claims(
    client: httpx.AsyncClient, alice: str, web: str, clock: Clock
) -> None:
    tokens = await signed_in(client, nonce="n-0S6_WzA2Mj")

    claims = await verified_id_token(client, tokens["id_token"])

    assert claims["iss"] == ISSUER and claims["sub"] == alice and claims["aud"] == WEB
    assert claims["iat"] == clock.now and claims["exp"] == clock.now + 300
    assert claims["auth_time"] == clock.now  # signed in just now
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["azp"] == WEB and claims["amr"] == ["pwd"] and claims["acr"] == "pwd"
    digest = hashlib.sha256(tokens["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def test_auth_time_is_when_the_password_was_typed_not_the_exchange(
    client: httpx.AsyncClient, alice: str, web: str, clock: Clock
) -> None:
    typed_at = clock.now
    await signed_in(client)
    clock.advance(600)  # a second client, single sign-on: no password typed
    tokens = await signed_in(client)
    claims = await verified_id_token(client, tokens["id_token"])
    assert claims["auth_time"] == typed_at and claims["iat"] == typed_at + 600
    assert "nonce" not in claims  # none was sent


async def test_no_id_token_without_the_openid_scope(
    client: httpx.AsyncClient, alice: str, web: str
) -> None:
    tokens = await signed_in(client, scope="profile")
    assert "id_token" not in tokens


def test_at_hash_uses_sha512_for_eddsa() -> None:
    token = "an.access.token"
    left = hashlib.sha512(token.encode()).digest()[:32]
    assert at_hash(token, "EdDSA") == base64.urlsafe_b64encode(left).rstrip(b"=").decode()
    left = hashlib.sha256(token.encode()).digest()[:16]
    assert at_hash(token, "RS256") == base64.urlsafe_b64encode(left).rstrip(b"=").decode()


async def test_userinfo_answers_with_the_scopes_claims(
    client: httpx.AsyncClient, alice: str, web: str
) -> None:
    tokens = await signed_in(client)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

    for response in (
        await client.get("/userinfo", headers=bearer),
        await client.post("/userinfo", headers=bearer),
    ):
        assert response.status_code == 200, response.text
        assert response.json() == {"sub": alice, "preferred_username": "alice"}
        assert response.headers["cache-control"] == "no-store"

    only_openid = await signed_in(client, scope="openid")
    response = await client.get(
        "/userinfo", headers={"Authorization": f"Bearer {only_openid['access_token']}"}
    )
    assert response.json() == {"sub": alice}


async def test_userinfo_refuses_as_rfc_6750_says(
    client: httpx.AsyncClient, alice: str, web: str
) -> None:
    missing = await client.get("/userinfo")
    assert missing.status_code == 401
    assert 'error="invalid_token"' in missing.headers["www-authenticate"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    garbage = await client.get("/userinfo", headers={"Authorization": "Bearer x.y.z"})
    assert garbage.status_code == 401

    no_openid = await signed_in(client, scope="profile")
    response = await client.get(
        "/userinfo", headers={"Authorization": f"Bearer {no_openid['access_token']}"}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_end_session_ends_the_login_session_and_every_family_it_started(
    client: httpx.AsyncClient, alice: str, web: str, registry: Registry, rs: tuple[str, str]
) -> None:
    await web_client(registry, "second")
    first = await signed_in(client)
    flow = Flow.new("second")
    second = (await exchange(client, await code_for(client, flow), flow)).json()

    response = await client.get(
        "/end-session",
        params={
            "id_token_hint": first["id_token"],
            "post_logout_redirect_uri": BYE,
            "state": "s 1",
        },
    )

    assert response.status_code == 303, response.text
    assert response.headers["location"] == BYE + "?state=s+1"
    cleared = response.headers.get_list("set-cookie")
    assert any(c.startswith("authserver_session=;") and "Max-Age=0" in c for c in cleared)
    assert any(c.startswith("authserver_rt=;") and "Max-Age=0" in c for c in cleared)
    for tokens, client_id in ((first, WEB), (second, "second")):
        introspected = await client.post(
            "/introspect", data={"token": tokens["access_token"]}, auth=rs
        )
        assert introspected.json() == {"active": False}
        refreshed = await client.post(
            "/refresh", data={"client_id": client_id, "refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 400
    feed = await client.get("/revocations", auth=rs)
    sids = {
        jwt.decode(t["access_token"], options={"verify_signature": False})["sid"]
        for t in (first, second)
    }
    assert sids <= set(feed.json()["sids"])
    again = Flow.new(WEB, prompt="none")
    assert query((await authorize(client, again.params)).headers["location"])["error"] == (
        "login_required"
    )


async def test_end_session_without_a_redirect_shows_the_signed_out_page(
    client: httpx.AsyncClient, alice: str, web: str
) -> None:
    tokens = await signed_in(client)
    stolen = client.cookies["authserver_session"]
    response = await client.post("/end-session", data={"id_token_hint": tokens["id_token"]})
    assert response.status_code == 200
    assert "You are signed out" in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    again = Flow.new(WEB, prompt="none")
    assert "error=login_required" in (await authorize(client, again.params)).headers["location"]
    # Ended on the server, not only forgotten by this browser: the old cookie is dead too.
    client.cookies.set("authserver_session", stolen)
    again = Flow.new(WEB, prompt="none")
    assert "error=login_required" in (await authorize(client, again.params)).headers["location"]


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": WEB, "post_logout_redirect_uri": "https://evil.example/bye"},
        {"client_id": WEB, "post_logout_redirect_uri": BYE + "/"},
        {"client_id": WEB, "post_logout_redirect_uri": CALLBACK},  # a redirect_uri, not this
        {"post_logout_redirect_uri": BYE},  # whose? no client named
        {"client_id": "nobody", "post_logout_redirect_uri": BYE},
        {"id_token_hint": "not.a.token", "post_logout_redirect_uri": BYE},
    ],
)
async def test_an_unregistered_post_logout_uri_is_a_page_and_ends_nothing(
    client: httpx.AsyncClient, alice: str, web: str, params: dict[str, str]
) -> None:
    tokens = await signed_in(client)

    response = await client.get("/end-session", params=params)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in response.headers
    refreshed = await client.post(
        "/refresh", data={"client_id": WEB, "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    again = Flow.new(WEB, prompt="none")
    assert "code=" in (await authorize(client, again.params)).headers["location"]


async def test_an_id_token_hint_of_another_client_is_refused(
    client: httpx.AsyncClient, alice: str, web: str, registry: Registry
) -> None:
    await web_client(registry, "other", post_logout_redirect_uris=(BYE,))
    tokens = await signed_in(client)
    response = await client.get(
        "/end-session",
        params={
            "id_token_hint": tokens["id_token"],
            "client_id": "other",
            "post_logout_redirect_uri": BYE,
        },
    )
    assert response.status_code == 400
    # An access token is no ID token hint either.
    response = await client.get(
        "/end-session",
        params={"id_token_hint": tokens["access_token"], "post_logout_redirect_uri": BYE},
    )
    assert response.status_code == 400


async def test_discovery_describes_the_sign_in(client: httpx.AsyncClient, web: str) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        metadata = (await client.get(path)).json()
        assert metadata["authorization_endpoint"] == f"{ISSUER}/authorize"
        assert metadata["userinfo_endpoint"] == f"{ISSUER}/userinfo"
        assert metadata["end_session_endpoint"] == f"{ISSUER}/end-session"
        assert metadata["response_types_supported"] == ["code"]
        assert metadata["response_modes_supported"] == ["query"]
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert metadata["authorization_response_iss_parameter_supported"] is True
        assert metadata["subject_types_supported"] == ["public"]
        assert metadata["id_token_signing_alg_values_supported"]
        assert {"sub", "auth_time", "nonce", "at_hash", "preferred_username"} <= set(
            metadata["claims_supported"]
        )
        assert "authorization_code" in metadata["grant_types_supported"]
        assert {"openid", "profile"} <= set(metadata["scopes_supported"])
