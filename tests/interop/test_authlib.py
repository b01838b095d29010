"""Interop: Authlib's OAuth 2 client (requests_client.OAuth2Session), written by nobody here,
signs a user in against a live server over real HTTP: an authorization URL with PKCE S256, the
browser step, fetch_token with the verifier, the ID token validated as Authlib's own OpenID
client validates it (joserfc against the JWKS, then authlib.oidc.core.CodeIDToken: iss, aud,
nonce, at_hash), and a refresh. Confidential clients (client_secret_basic and _post) and a
public one, on RS256 and EdDSA keys, on both databases."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.errors import AuthlibBaseError as OAuthError
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from authserver.accounts.users import UserChanges
from authserver.audit import AuditEvent
from authserver.tokens.resources import Resource
from tests.conftest import Registry
from tests.http.test_verify_live import Live
from tests.interop.browser import CALLBACK, INSECURE_COOKIES, browser_sign_in

RP = "rp"
ALICE = {
    "name": "Alice Liddell",
    "given_name": "Alice",
    "family_name": "Liddell",
    "email": "alice@example.org",
    "email_verified": True,
}
# joserfc (which Authlib's OpenID client decodes with) warns that RFC 9864 deprecates the alg
# name "EdDSA"; docs/services.md says why the server still signs with it.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture
def live_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def _discovery(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/.well-known/openid-configuration")
    assert response.status_code == 200, response.text
    metadata: dict[str, Any] = response.json()
    return metadata


def _id_token_claims(
    metadata: dict[str, Any], jwks: dict[str, Any], token: dict[str, Any], nonce: str
) -> CodeIDToken:
    """As Authlib's OpenIDMixin.parse_id_token does it, with the metadata's issuer."""
    decoded = jwt.decode(
        token["id_token"],
        KeySet.import_key_set(jwks),  # type: ignore[arg-type]
        registry=JWSRegistry(algorithms=metadata["id_token_signing_alg_values_supported"]),
    )
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        {"iss": {"essential": True, "value": metadata["issuer"]}},
        {"nonce": nonce, "client_id": RP, "access_token": token["access_token"]},
    )
    claims.validate(leeway=5)
    return claims


@pytest.mark.parametrize("auth", ["client_secret_basic", "client_secret_post", "none"])
async def test_authlib_signs_a_user_in_with_pkce_and_validates_the_id_token(
    live: Live, http: httpx.AsyncClient, auth: str
) -> None:
    registry = Registry(live.services)
    secret = await registry.client(
        RP,
        public=auth == "none",
        grant_types=("authorization_code", "refresh_token"),
        scopes=("openid", "profile", "email"),
        redirect_uris=(CALLBACK,),
    )
    await registry.profile("alice", **ALICE)
    metadata = await _discovery(http)
    assert metadata["issuer"] == live.url
    # Authlib's Starlette client's default scope for OpenID Connect providers.
    assert {"openid", "profile", "email"} <= set(metadata["scopes_supported"])
    session = OAuth2Session(
        RP,
        secret,
        token_endpoint_auth_method=auth,
        scope="openid profile email",
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
    )
    session.trust_env = False
    verifier, nonce = generate_token(64), secrets.token_urlsafe(16)
    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    sent = parse_qs(urlsplit(url).query)
    assert sent["code_challenge_method"] == ["S256"] and sent["code_challenge"][0] != verifier

    callback = await browser_sign_in(url)

    answer = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    assert answer["iss"] == metadata["issuer"]  # RFC 9207, before the code is used
    assert answer["state"] == state
    token = session.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback,
        state=state,
        code_verifier=verifier,
    )
    assert token["token_type"].lower() == "bearer" and "refresh_token" in token
    jwks = (await http.get(metadata["jwks_uri"])).json()
    claims = _id_token_claims(metadata, jwks, token, nonce)
    assert claims["iss"] == metadata["issuer"] and claims["aud"] == RP
    assert claims["nonce"] == nonce and "at_hash" in claims
    assert claims.header["alg"] == live.settings.signing_alg
    # An app greets the user by name, from the ID token alone.
    assert claims["name"] == "Alice Liddell" and claims["preferred_username"] == "alice"
    assert claims["email"] == "alice@example.org" and claims["email_verified"] is True

    refreshed = session.refresh_token(
        metadata["token_endpoint"], refresh_token=token["refresh_token"]
    )

    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != token["refresh_token"]
    userinfo = session.get(metadata["userinfo_endpoint"])
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json() == {"sub": claims["sub"], "preferred_username": "alice", **ALICE}


async def test_authlib_refuses_an_id_token_for_another_nonce(
    live: Live, http: httpx.AsyncClient
) -> None:
    """The control of the validation above: the same path says no to a nonce not sent."""
    await Registry(live.services).client(
        RP,
        public=True,
        grant_types=("authorization_code",),
        scopes=("openid",),
        redirect_uris=(CALLBACK,),
    )
    metadata = await _discovery(http)
    session = OAuth2Session(
        RP, token_endpoint_auth_method="none", scope="openid", redirect_uri=CALLBACK,
        code_challenge_method="S256",
    )  # fmt: skip
    session.trust_env = False
    verifier = generate_token(64)
    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce="sent"
    )
    callback = await browser_sign_in(url)
    token = session.fetch_token(
        metadata["token_endpoint"], authorization_response=callback, state=state,
        code_verifier=verifier,
    )  # fmt: skip
    jwks = (await http.get(metadata["jwks_uri"])).json()

    with pytest.raises(Exception, match="nonce"):
        _id_token_claims(metadata, jwks, token, "another")


async def test_authlib_asks_for_a_resource_at_each_step_and_gets_tokens_for_it_alone(
    live: Live, http: httpx.AsyncClient
) -> None:
    """RFC 8707 as a generic client sends it: Authlib passes `resource` through as an extra
    parameter of the authorization URL, the code exchange and the refresh (the MCP clients'
    way), and reads invalid_target as the OAuth error it is."""
    api, other = "https://mcp.example/mcp", "https://other.example/"
    for resource, scopes in ((api, ("tools",)), (other, ("files",))):
        event = AuditEvent(0, "test", "resource.created", resource)
        assert await live.services.resources.create(Resource(resource, scopes, 300), event)
    await Registry(live.services).client(
        RP,
        public=True,
        grant_types=("authorization_code", "refresh_token"),
        scopes=("openid", "tools", "files"),
        redirect_uris=(CALLBACK,),
    )
    alice = await live.services.users.by_username("alice")
    assert alice is not None
    assert await live.services.users.update(alice.id, UserChanges(("tools", "files")), [])
    metadata = await _discovery(http)
    assert metadata["resource_indicators_supported"] is True
    session = OAuth2Session(
        RP, token_endpoint_auth_method="none", scope="openid tools files", redirect_uri=CALLBACK,
        code_challenge_method="S256",
    )  # fmt: skip
    session.trust_env = False
    verifier = generate_token(64)
    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, resource=api
    )
    assert parse_qs(urlsplit(url).query)["resource"] == [api]
    callback = await browser_sign_in(url)
    token = session.fetch_token(
        metadata["token_endpoint"], authorization_response=callback, state=state,
        code_verifier=verifier, resource=api,
    )  # fmt: skip
    published = (await http.get(metadata["jwks_uri"])).json()
    jwks = KeySet.import_key_set(published)
    algorithms = JWSRegistry(algorithms=metadata["access_token_signing_alg_values_supported"])
    access = jwt.decode(token["access_token"], jwks, registry=algorithms).claims
    assert access["aud"] == api and token["scope"] == "openid tools"  # files: not the API's
    assert token["expires_in"] == 300

    refreshed = session.refresh_token(
        metadata["token_endpoint"], refresh_token=token["refresh_token"], resource=api
    )
    assert jwt.decode(refreshed["access_token"], jwks, registry=algorithms).claims["aud"] == api
    with pytest.raises(OAuthError) as refused:  # never granted: RFC 8707 §2.2
        session.refresh_token(
            metadata["token_endpoint"], refresh_token=refreshed["refresh_token"], resource=other
        )
    assert refused.value.error == "invalid_target"
