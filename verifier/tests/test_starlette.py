"""The Starlette glue: claims on the request, RFC 6750 challenges, scope checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authserver_verify import Verifier
from authserver_verify.starlette import BearerAuthMiddleware, require_scope
from test_verifier import FakeIssuer, Monotonic, make_verifier


async def whoami(request: Request) -> Response:
    return JSONResponse({"sub": request.state.claims["sub"]})


@require_scope("orders:write")
async def write(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def health(request: Request) -> Response:
    return JSONResponse({"claims": hasattr(request.state, "claims")})


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def verifier(issuer: FakeIssuer) -> Verifier:
    return make_verifier(issuer, Monotonic())


@pytest.fixture
async def http(verifier: Verifier) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[
            Route("/me", whoami),
            Route("/orders", write, methods=["POST"]),
            Route("/health", health),
        ],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier, exempt={"/health"})],
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service.test"
    ) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_puts_its_claims_on_the_request(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    response = await http.get("/me", headers=bearer(issuer.token()))
    assert response.status_code == 200
    assert response.json() == {"sub": "user-1"}


async def test_no_token_is_a_bare_challenge(http: httpx.AsyncClient) -> None:
    response = await http.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_invalid_token_is_invalid_token(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.token(aud="billing")
    response = await http.get("/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"] == "invalid_token"
    assert token.split(".")[1] not in response.text


async def test_a_missing_scope_is_insufficient_scope(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    denied = await http.post("/orders", headers=bearer(issuer.token(scope="profile")))
    allowed = await http.post("/orders", headers=bearer(issuer.token(scope="profile orders:write")))

    assert denied.status_code == 403
    assert denied.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="orders:write"'
    )
    assert allowed.status_code == 200


async def test_an_unreachable_issuer_is_a_503_not_a_401(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    issuer.down = True
    response = await http.get("/me", headers=bearer(issuer.token()))
    assert response.status_code == 503


async def test_exempt_paths_pass_without_a_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"claims": False}
