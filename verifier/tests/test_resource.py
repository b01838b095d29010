"""A declared protected resource (RFC 9728): its metadata document, `resource_metadata` in every
401 challenge (§5.1), and tokens for another audience refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from authserver_verify import Introspector, ProtectedResource, Verifier
from authserver_verify.dpop import access_token_hash, jwk_thumbprint
from authserver_verify.starlette import BearerAuthMiddleware, authenticate, require_active
from test_dpop import EC_KEY, make_proof, public_jwk
from test_starlette import health, pay, whoami, write
from test_verifier import ISSUER, NOW, FakeIssuer, Monotonic, make_verifier

RESOURCE = "https://mcp.example/mcp"
METADATA_URL = "https://mcp.example/.well-known/oauth-protected-resource/mcp"
NAMED = f'resource_metadata="{METADATA_URL}"'
JKT = jwk_thumbprint(public_jwk(EC_KEY))


def declared(**options: Any) -> ProtectedResource:
    return ProtectedResource(
        RESOURCE,
        ISSUER,
        scopes_supported=("tools.call", "payments:write"),
        resource_name="Example tools",
        **options,
    )


# An issuer whose /introspect says every token is revoked.
REVOKED = Introspector(
    "https://issuer.test/introspect", "svc", "s", post=lambda url, form, headers: {"active": False}
)


@require_active(REVOKED)
async def instant(request: Request) -> Response:
    return Response("never")


def resource_verifier(issuer: FakeIssuer) -> Verifier:
    """The Verifier the declaration makes, on the fake issuer's keys."""
    verifier = make_verifier(issuer, Monotonic())
    verifier.audience = declared().verifier().audience
    return verifier


def service(issuer: FakeIssuer, resource: ProtectedResource) -> httpx.AsyncClient:
    middleware = Middleware(
        BearerAuthMiddleware,
        verifier=resource_verifier(issuer),
        resource=resource,
        exempt={"/health"},
        public_url="https://mcp.example",
    )
    app = Starlette(
        routes=[
            Route("/me", whoami),
            Route("/orders", write, methods=["POST"]),
            Route("/payments", pay, methods=["POST"]),
            Route("/health", health),
            Route("/instant", instant),
        ],
        middleware=[middleware],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://10.0.0.7")


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
async def http(issuer: FakeIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with service(issuer, declared()) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_metadata_document_is_served_without_a_token(http: httpx.AsyncClient) -> None:
    expected = {
        "resource": RESOURCE,
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["tools.call", "payments:write"],
        "resource_name": "Example tools",
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
        "dpop_bound_access_tokens_required": False,
    }
    # RFC 9728 §3.1 (path-suffixed) and §3 (bare, for clients that drop the path).
    for path in (urlsplit(METADATA_URL).path, "/.well-known/oauth-protected-resource"):
        response = await http.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "application/json"
        assert response.json() == expected
    assert (await http.post("/.well-known/oauth-protected-resource/mcp")).status_code == 405


async def test_any_origin_may_read_the_metadata_and_its_preflight_is_answered(
    http: httpx.AsyncClient,
) -> None:
    """A browser-based MCP client reads the document from its own origin; the MCP SDKs send
    MCP-Protocol-Version with it, so the browser asks first (OPTIONS, no token)."""
    origin = {"Origin": "https://inspector.example"}
    for path in (urlsplit(METADATA_URL).path, "/.well-known/oauth-protected-resource"):
        read = await http.get(path, headers=origin)
        assert read.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in read.headers
        asked = await http.options(
            path,
            headers={
                **origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "mcp-protocol-version",
            },
        )
        assert asked.status_code == 204, path
        assert asked.headers["access-control-allow-origin"] == "*"
        assert "GET" in asked.headers["access-control-allow-methods"]
        allowed = asked.headers["access-control-allow-headers"].lower()
        assert "mcp-protocol-version" in allowed


async def test_required_scopes_are_checked_for_every_request(issuer: FakeIssuer) -> None:
    """`required_scopes` on the middleware: for an app whose routes are not the service's own
    to decorate (an MCP SDK's transport)."""
    app = Starlette(routes=[Route("/me", whoami)])
    middleware = BearerAuthMiddleware(
        app,
        verifier=resource_verifier(issuer),
        resource=declared(),
        required_scopes=("tools.call",),
    )
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="https://mcp.example") as http:
        lacking = await http.get("/me", headers=bearer(issuer.token(aud=RESOURCE, scope="x")))
        assert lacking.status_code == 403
        assert lacking.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", scope="tools.call"'
        )
        token = issuer.token(aud=RESOURCE, scope="x tools.call")
        assert (await http.get("/me", headers=bearer(token))).status_code == 200
        # The metadata stays public, and a missing token is still a 401 naming it.
        assert (await http.get(urlsplit(METADATA_URL).path)).status_code == 200
        missing = await http.get("/me")
        assert missing.headers["www-authenticate"] == f"Bearer {NAMED}"


def test_the_metadata_url_inserts_the_well_known_string_before_the_path() -> None:
    bare = ProtectedResource("https://api.example", ISSUER)
    slash = ProtectedResource("https://api.example/", ISSUER)
    assert bare.metadata_url == "https://api.example/.well-known/oauth-protected-resource"
    assert slash.metadata_url == bare.metadata_url
    assert bare.well_known_paths() == ("/.well-known/oauth-protected-resource",)
    assert declared().metadata_url == METADATA_URL
    plain = ProtectedResource("https://api.example", ISSUER, dpop=False).metadata()
    assert "dpop_signing_alg_values_supported" not in plain
    assert "scopes_supported" not in plain and "resource_name" not in plain
    assert ProtectedResource(RESOURCE, ISSUER, authorization_servers=("a", "b")).metadata()[
        "authorization_servers"
    ] == ["a", "b"]


@pytest.mark.parametrize(
    "identifier",
    [
        "http://mcp.example/mcp",
        "https://mcp.example/mcp#x",
        "https://mcp.example/mcp#",
        "https://mcp.example/mcp?a=1",
        "mcp.example",
        "urn:example:mcp",
    ],
)
def test_an_identifier_that_is_no_https_url_is_refused(identifier: str) -> None:
    with pytest.raises(ValueError):
        ProtectedResource(identifier, ISSUER)


def test_loopback_http_is_allowed_for_development() -> None:
    assert ProtectedResource("http://127.0.0.1:8002/mcp", ISSUER).metadata_url == (
        "http://127.0.0.1:8002/.well-known/oauth-protected-resource/mcp"
    )


def test_the_declaration_sets_the_audience_and_the_middleware_insists(
    issuer: FakeIssuer,
) -> None:
    made = declared().verifier()
    assert (made.issuer, made.audience) == (ISSUER, RESOURCE)
    with pytest.raises(ValueError, match="audience"):
        BearerAuthMiddleware(
            Starlette(), verifier=make_verifier(issuer, Monotonic()), resource=declared()
        )
    assert BearerAuthMiddleware(Starlette(), resource=declared()).verifier.audience == RESOURCE


async def test_every_401_challenge_names_the_metadata(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    missing = await http.get("/me")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == f"Bearer {NAMED}"
    garbage = await http.get("/me", headers=bearer("not.a.token"))
    assert garbage.headers["www-authenticate"] == f'Bearer error="invalid_token", {NAMED}'
    # RFC 9470 step-up, from the decorator behind the middleware.
    weak = issuer.token(aud=RESOURCE, scope="payments:write", acr="pwd", auth_time=NOW - 10)
    step_up = await http.post("/payments", headers=bearer(weak))
    assert step_up.status_code == 401
    assert step_up.headers["www-authenticate"] == (
        f'Bearer error="insufficient_user_authentication", acr_values="mfa", {NAMED}'
    )
    # DPoP (RFC 9449 §7.1): a bound token sent as Bearer.
    bound = issuer.token(aud=RESOURCE, cnf={"jkt": JKT})
    as_bearer = await http.get("/me", headers=bearer(bound))
    assert as_bearer.headers["www-authenticate"] == (
        f'DPoP error="invalid_token", algs="ES256 EdDSA", {NAMED}'
    )
    # require_active: the issuer's introspection says the token is no longer active.
    revoked = await http.get("/instant", headers=bearer(issuer.token(aud=RESOURCE)))
    assert revoked.status_code == 401
    assert revoked.headers["www-authenticate"] == f'Bearer error="invalid_token", {NAMED}'
    # A 403 is no authentication challenge: unchanged.
    lacking = await http.post("/orders", headers=bearer(issuer.token(aud=RESOURCE)))
    assert lacking.status_code == 403
    assert "resource_metadata" not in lacking.headers["www-authenticate"]


async def test_a_token_for_another_audience_is_refused(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    for aud in ("orders", "https://other.example/mcp", "https://mcp.example/mcp/", [ISSUER]):
        response = await http.get("/me", headers=bearer(issuer.token(aud=aud)))
        assert response.status_code == 401, aud
        assert response.headers["www-authenticate"] == f'Bearer error="invalid_token", {NAMED}'
    ok = await http.get("/me", headers=bearer(issuer.token(aud=RESOURCE)))
    assert ok.status_code == 200
    assert ok.json() == {"sub": "user-1"}


async def test_a_resource_requiring_dpop_refuses_unbound_tokens(issuer: FakeIssuer) -> None:
    async with service(issuer, declared(dpop_bound_access_tokens_required=True)) as http:
        document = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        assert document["dpop_bound_access_tokens_required"] is True
        unbound = await http.get("/me", headers=bearer(issuer.token(aud=RESOURCE)))
        assert unbound.status_code == 401
        assert unbound.headers["www-authenticate"] == (
            f'DPoP error="invalid_token", algs="ES256 EdDSA", {NAMED}'
        )
        token = issuer.token(aud=RESOURCE, cnf={"jkt": JKT})
        proof = make_proof(
            EC_KEY, htm="GET", htu="https://mcp.example/me", ath=access_token_hash(token)
        )
        bound = await http.get("/me", headers={"Authorization": f"DPoP {token}", "DPoP": proof})
        assert bound.status_code == 200, bound.text


async def test_authenticate_without_the_middleware_names_the_metadata(issuer: FakeIssuer) -> None:
    resource, verifier = declared(), resource_verifier(issuer)

    async def endpoint(request: Request) -> Response:
        outcome = await authenticate(request, verifier, resource=resource)
        return outcome if isinstance(outcome, Response) else Response("ok")

    app = Starlette(routes=[Route("/one", endpoint)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        missing = await http.get("/one")
        assert missing.headers["www-authenticate"] == f"Bearer {NAMED}"
        other = await http.get("/one", headers=bearer(issuer.token()))
        assert other.headers["www-authenticate"] == f'Bearer error="invalid_token", {NAMED}'
        assert (await http.get("/one", headers=bearer(issuer.token(aud=RESOURCE)))).text == "ok"
