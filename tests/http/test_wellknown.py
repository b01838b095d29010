"""GET /.well-known/jwks.json (RFC 7517) and the RFC 8414 metadata documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import create_app
from authserver.config import Settings
from authserver.http.fast_path import JwksShortcut
from authserver.services import Services
from tests.conftest import ISSUER, Clock, Login, Registry, assert_oauth_error, password_login

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
METADATA_PATHS = ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]


async def stored_keys(engine: AsyncEngine) -> dict[str, str]:
    """kid → state, as the database has them."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT kid, state FROM signing_keys"))
        return {row.kid: row.state for row in rows}


async def delete_signing_keys(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM signing_keys"))


async def jwks(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    keys: list[dict[str, Any]] = response.json()["keys"]
    return keys


def assert_public_jwk(key: dict[str, Any]) -> None:
    assert key["use"] == "sig"
    assert isinstance(key["kid"], str) and key["kid"]
    assert not PRIVATE_MEMBERS & key.keys(), sorted(key)
    if key["kty"] == "RSA":
        assert key["alg"] == "RS256"
        assert set(key) == {"kty", "kid", "use", "alg", "n", "e"}
    else:
        assert (key["kty"], key["crv"], key["alg"]) == ("OKP", "Ed25519", "EdDSA")
        assert set(key) == {"kty", "kid", "use", "alg", "crv", "x"}


# --- JWKS -----------------------------------------------------------------------------------


async def test_jwks_publishes_the_active_and_next_keys_public_parts_only(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] in (
        "application/jwk-set+json",
        "application/json",
    )
    keys = response.json()["keys"]
    published = {key["kid"] for key in keys}
    states = await stored_keys(engine)
    active = [kid for kid, state in states.items() if state == "active"]
    upcoming = [kid for kid, state in states.items() if state == "next"]
    assert len(active) == 1 and len(upcoming) == 1
    assert {*active, *upcoming} <= published
    assert all(states.get(kid) != "revoked" for kid in published)
    assert len(published) == len(keys)  # no kid twice
    for key in keys:
        assert_public_jwk(key)


async def test_jwks_verifies_the_access_tokens_the_server_issues(
    client: httpx.AsyncClient, login: Login, settings: Settings
) -> None:
    kid = jwt.get_unverified_header(login.access_token)["kid"]
    (key,) = [key for key in await jwks(client) if key["kid"] == kid]

    claims = jwt.decode(
        login.access_token,
        jwt.PyJWK(key).key,
        algorithms=[key["alg"]],
        audience=settings.audience,
        issuer=ISSUER,
    )

    assert claims["client_id"] == "spa"


async def test_jwks_is_cacheable_for_the_default_five_minutes(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")

    assert response.headers["cache-control"] == "public, max-age=300"


@pytest.mark.parametrize("settings_overrides", [{"jwks_max_age": "60"}])
async def test_jwks_cache_lifetime_follows_the_setting(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")

    assert response.headers["cache-control"] == "public, max-age=60"


async def test_jwks_etag_is_stable_and_quoted(client: httpx.AsyncClient) -> None:
    first = await client.get("/.well-known/jwks.json")
    second = await client.get("/.well-known/jwks.json")

    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    assert second.headers["etag"] == etag
    assert second.content == first.content


@pytest.mark.parametrize("origin", [None, "https://elsewhere.example"])
@pytest.mark.parametrize("if_none_match", [None, "current", '"stale"'])
async def test_the_jwks_shortcut_answers_exactly_as_the_route_does(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    if_none_match: str | None,
    origin: str | None,
) -> None:
    """A GET from anywhere is answered by http/fast_path.py; without it, CORS and the router
    take it to http/wellknown.py. Nothing may tell them apart, CORS's `*` included."""
    etag = (await client.get("/.well-known/jwks.json")).headers["etag"]
    headers = {} if if_none_match is None else {"If-None-Match": if_none_match}
    if if_none_match == "current":
        headers["If-None-Match"] = etag
    if origin is not None:
        headers["Origin"] = origin

    short = await client.get("/.well-known/jwks.json", headers=headers)

    async def long_way(self: JwksShortcut, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    monkeypatch.setattr(JwksShortcut, "__call__", long_way)
    routed = await client.get("/.well-known/jwks.json", headers=headers)

    def comparable(response: httpx.Response) -> list[tuple[str, str]]:
        return sorted(
            (name, value)
            for name, value in response.headers.multi_items()
            if name != "x-request-id"
        )

    assert short.status_code == routed.status_code == (304 if if_none_match == "current" else 200)
    assert short.content == routed.content
    assert comparable(short) == comparable(routed)
    assert ("access-control-allow-origin", "*") in comparable(short)


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"something-else", {etag}', '"a",{etag} , "b"', "*"],
    ids=["exact", "weak", "list", "list-no-spaces", "star"],
)
async def test_jwks_answers_304_to_a_matching_if_none_match(
    client: httpx.AsyncClient, if_none_match: str
) -> None:
    etag = (await client.get("/.well-known/jwks.json")).headers["etag"]

    response = await client.get(
        "/.well-known/jwks.json", headers={"If-None-Match": if_none_match.format(etag=etag)}
    )

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "public, max-age=300"


@pytest.mark.parametrize(
    "if_none_match",
    ['"0123456789abcdef"', 'W/"0123456789abcdef"', "{bare}", '"x", "y"', ""],
    ids=["other", "other-weak", "unquoted", "list", "empty"],
)
async def test_jwks_answers_200_to_a_stale_if_none_match(
    client: httpx.AsyncClient, if_none_match: str
) -> None:
    etag = (await client.get("/.well-known/jwks.json")).headers["etag"]

    response = await client.get(
        "/.well-known/jwks.json",
        headers={"If-None-Match": if_none_match.format(bare=etag.strip('"'))},
    )

    assert response.status_code == 200
    assert response.json()["keys"]
    assert response.headers["etag"] == etag


# --- RFC 8414 metadata ----------------------------------------------------------------------


@pytest.mark.parametrize("path", METADATA_PATHS)
async def test_metadata_describes_the_server(
    client: httpx.AsyncClient, spa: str, registry: Registry, path: str
) -> None:
    await registry.client("svc", scopes=("reports:read",))

    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    meta = response.json()
    assert meta["issuer"] == ISSUER
    assert meta["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert meta["token_endpoint"] == f"{ISSUER}/token"
    assert meta["revocation_endpoint"] == f"{ISSUER}/revoke"
    assert meta["introspection_endpoint"] == f"{ISSUER}/introspect"
    assert {"password", "refresh_token", "client_credentials"} <= set(meta["grant_types_supported"])
    assert "authorization_code" in meta["grant_types_supported"]  # the browser sign-in
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    # Introspection needs a confidential client, so "none" must not be offered there.
    assert "none" not in meta.get(
        "introspection_endpoint_auth_methods_supported", ["client_secret_basic"]
    )
    assert isinstance(meta["response_types_supported"], list)
    assert {"profile", "admin", "reports:read"} <= set(meta["scopes_supported"])
    assert meta["access_token_signing_alg_values_supported"] == ["RS256"]


@pytest.mark.parametrize("path", METADATA_PATHS)
async def test_metadata_endpoints_are_served_here(
    client: httpx.AsyncClient, spa: str, path: str
) -> None:
    meta = (await client.get(path)).json()

    for name in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        url = urlsplit(meta[name])
        assert f"{url.scheme}://{url.netloc}" == ISSUER
        response = await client.post(url.path, data={})
        assert response.status_code not in (404, 405), name
    jwks_response = await client.get(urlsplit(meta["jwks_uri"]).path)
    assert jwks_response.status_code == 200
    assert jwks_response.json()["keys"]


# --- EdDSA ----------------------------------------------------------------------------------


@pytest.fixture
async def eddsa_app(
    settings: Settings, engine: AsyncEngine, clock: Clock
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """The app started on an empty key table with signing_alg EdDSA; the keys it makes are
    deleted afterwards so later tests (which keep keys across tests) start afresh."""
    assert settings.signing_alg == "EdDSA"
    await delete_signing_keys(engine)
    try:
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                yield http, app.state.services
    finally:
        await delete_signing_keys(engine)


@pytest.mark.parametrize("settings_overrides", [{"signing_alg": "EdDSA"}])
async def test_eddsa_keys_are_published_advertised_and_used(
    eddsa_app: tuple[httpx.AsyncClient, Services], settings: Settings
) -> None:
    client, services = eddsa_app
    registry = Registry(services)
    await registry.client("spa", public=True, grant_types=("password",))
    await registry.user("alice", "correct horse")

    keys = await jwks(client)
    meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    token = (await password_login(client)).json()["access_token"]

    assert len(keys) == 2
    for key in keys:
        assert_public_jwk(key)
        assert key["kty"] == "OKP"
    assert meta["access_token_signing_alg_values_supported"] == ["EdDSA"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    (key,) = [key for key in keys if key["kid"] == header["kid"]]
    claims = jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["EdDSA"], audience=settings.audience, issuer=ISSUER
    )
    assert claims["client_id"] == "spa"


# --- errors off the map ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nothing-here"),
        ("POST", "/nothing-here"),
        ("GET", "/.well-known/jwks"),
        ("GET", "/.well-known/jwks.json/extra"),
        ("GET", "/admin/../../etc/passwd"),
    ],
)
async def test_unknown_paths_are_404_json(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)

    assert_oauth_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/token", "POST"),
        ("GET", "/introspect", "POST"),
        ("DELETE", "/revoke", "POST"),
        ("POST", "/.well-known/jwks.json", "GET"),
        ("PUT", "/.well-known/openid-configuration", "GET"),
    ],
)
async def test_wrong_methods_are_405_json(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)

    assert_oauth_error(response, 405, "method_not_allowed")
    assert allowed in response.headers["allow"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/login", {"GET", "HEAD", "POST"}),
        ("PUT", "/admin/clients", {"GET", "HEAD", "POST"}),
        ("POST", "/admin/clients/web", {"GET", "HEAD", "PATCH", "DELETE"}),
        ("PUT", "/admin/users/some-sub", {"GET", "HEAD", "PATCH", "DELETE"}),
    ],
)
async def test_405_allows_every_method_of_the_path_not_only_the_first_routes(
    client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    # RFC 9110 §15.5.6: the origin server MUST generate an Allow header field containing a
    # list of the target resource's currently supported methods.
    response = await client.request(method, path)

    assert_oauth_error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == allowed


@pytest.mark.parametrize("path", METADATA_PATHS)
async def test_metadata_says_request_objects_are_not_supported(
    client: httpx.AsyncClient, path: str
) -> None:
    # OpenID Connect Discovery 1.0 §3: request_uri_parameter_supported defaults to true, so
    # leaving it out would claim support (/authorize answers request_uri_not_supported).
    meta = (await client.get(path)).json()
    assert meta["request_uri_parameter_supported"] is False
    assert meta["request_parameter_supported"] is False


@pytest.mark.parametrize("path", METADATA_PATHS)
async def test_metadata_names_the_acr_values_authorize_honours(
    client: httpx.AsyncClient, path: str
) -> None:
    # OpenID Connect Discovery 1.0 §3 acr_values_supported; /authorize steps up for mfa.
    assert (await client.get(path)).json()["acr_values_supported"] == ["pwd", "mfa"]
