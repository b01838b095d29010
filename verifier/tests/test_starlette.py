"""The Starlette glue: claims on the request, RFC 6750 challenges, scope checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authserver_verify import Verifier
from authserver_verify.starlette import (
    BearerAuthMiddleware,
    require_authentication,
    require_role,
    require_scope,
)
from test_verifier import NOW, FakeIssuer, Monotonic, make_verifier


async def whoami(request: Request) -> Response:
    return JSONResponse({"sub": request.state.claims["sub"]})


@require_scope("orders:write")
async def write(request: Request) -> Response:
    return JSONResponse({"ok": True})


@require_role("billing:admin", "auditor")
async def refunds(request: Request) -> Response:
    return JSONResponse({"ok": True})


@require_role("editor", "owner", any_of=True)
async def edit(request: Request) -> Response:
    return JSONResponse({"ok": True})


@require_scope("payments:write")
@require_authentication(acr=("mfa",), max_age=300, clock=lambda: NOW)
async def pay(request: Request) -> Response:
    return JSONResponse({"paid": True})


@require_authentication(max_age=60, clock=lambda: NOW)
async def profile(request: Request) -> Response:
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
            Route("/refunds", refunds, methods=["POST"]),
            Route("/pages", edit, methods=["POST"]),
            Route("/payments", pay, methods=["POST"]),
            Route("/profile", profile),
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


async def test_a_missing_role_is_a_403_insufficient_scope_without_a_scope_attribute(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    # RFC 9068 §2.2.3.1 `roles`; RFC 6750 §3.1 has no error for roles, so the nearest one,
    # insufficient_scope, with no `scope` attribute (no scope would help).
    cases: list[tuple[dict[str, Any], str, int]] = [
        ({}, "/refunds", 403),
        ({"roles": ["billing:admin"]}, "/refunds", 403),
        ({"roles": ["auditor", "billing:admin"]}, "/refunds", 200),
        ({"roles": ["owner"]}, "/pages", 200),
        ({"roles": ["viewer"]}, "/pages", 403),
    ]
    for claims, path, status in cases:
        response = await http.post(path, headers=bearer(issuer.token(**claims)))
        assert response.status_code == status, (claims, path)
        if status == 403:
            assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
            assert response.json()["error"] == "insufficient_scope"
            assert "role" in response.json()["error_description"]


async def test_a_roles_claim_that_is_no_list_of_strings_is_an_invalid_token(
    http: httpx.AsyncClient, issuer: FakeIssuer, verifier: Verifier
) -> None:
    for roles in ("billing:admin", [1], {"billing:admin": True}):
        response = await http.post("/refunds", headers=bearer(issuer.token(roles=roles)))
        assert response.status_code == 401, roles
    claims = verifier.verify(issuer.token(roles=["auditor", "billing:admin"]))
    assert verifier.has_roles(claims, "auditor")
    assert not verifier.has_roles(claims, "auditor", "owner")
    assert verifier.has_roles(claims, "owner", "auditor", any_of=True)
    assert not verifier.has_roles(verifier.verify(issuer.token()), "auditor")


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


async def test_a_weak_or_old_sign_in_is_answered_with_the_rfc_9470_challenge(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    scope = "payments:write"
    mfa: dict[str, Any] = {"acr": "mfa", "amr": ["pwd", "otp", "mfa"], "auth_time": NOW - 10}
    cases: list[tuple[dict[str, Any], str | None]] = [
        # RFC 9470 §3: insufficient_user_authentication with what to ask for.
        ({"acr": "pwd", "amr": ["pwd"], "auth_time": NOW - 10}, 'acr_values="mfa"'),
        ({**mfa, "auth_time": NOW - 301}, 'acr_values="mfa", max_age="300"'),
        ({"acr": "pwd", "auth_time": NOW - 301}, 'acr_values="mfa", max_age="300"'),
        ({}, 'acr_values="mfa", max_age="300"'),  # no sign-in claims at all
        ({**mfa, "auth_time": "yesterday"}, 'acr_values="mfa", max_age="300"'),
        (mfa, None),
        ({**mfa, "auth_time": NOW - 300}, None),
    ]
    for claims, challenge in cases:
        response = await http.post("/payments", headers=bearer(issuer.token(scope=scope, **claims)))
        if challenge is None:
            assert response.status_code == 200, claims
            assert response.json() == {"paid": True}
            continue
        assert response.status_code == 401, claims
        assert response.headers["www-authenticate"] == (
            f'Bearer error="insufficient_user_authentication", {challenge}'
        ), claims
        assert response.json()["error"] == "insufficient_user_authentication"
    # The scope is checked first: a token without it is 403 whatever its sign-in.
    lacking = await http.post("/payments", headers=bearer(issuer.token(**mfa)))
    assert lacking.status_code == 403


async def test_an_age_alone_names_only_max_age(http: httpx.AsyncClient, issuer: FakeIssuer) -> None:
    old = await http.get("/profile", headers=bearer(issuer.token(auth_time=NOW - 61)))
    assert old.status_code == 401
    assert old.headers["www-authenticate"] == (
        'Bearer error="insufficient_user_authentication", max_age="60"'
    )
    fresh = await http.get("/profile", headers=bearer(issuer.token(auth_time=NOW - 60)))
    assert fresh.status_code == 200


def test_a_negative_max_age_is_refused_when_the_route_is_declared() -> None:
    with pytest.raises(ValueError, match="max_age"):
        require_authentication(max_age=-1)
