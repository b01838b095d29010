"""Security headers on every response: successes, errors and CORS preflights alike."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import Login

APP = "https://app.example"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {"allowed_origins": APP}


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert len(response.headers.get_list("x-content-type-options")) == 1


REQUESTS = [
    ("GET", "/.well-known/jwks.json", {}, None),
    ("GET", "/.well-known/openid-configuration", {}, None),
    ("GET", "/healthz", {}, None),
    ("GET", "/readyz", {}, None),
    ("GET", "/nowhere", {}, None),  # 404
    ("GET", "/token", {}, None),  # 405
    ("POST", "/token", {}, {"grant_type": "password"}),  # 400
    ("POST", "/token", {"Content-Type": "text/plain"}, "x"),  # 415
    ("POST", "/introspect", {}, {"token": "x"}),  # 401
    ("POST", "/logout/all", {}, None),  # 401 with a Bearer challenge
    ("POST", "/refresh", {"Cookie": "__Host-authserver_rt=x"}, None),  # 403
    ("OPTIONS", "/token", {"Origin": APP, "Access-Control-Request-Method": "POST"}, None),
    (
        "OPTIONS",
        "/token",
        {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        None,
    ),
]


@pytest.mark.parametrize(("method", "path", "headers", "data"), REQUESTS)
async def test_every_answer_carries_the_security_headers(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    data: dict[str, str] | str | None,
) -> None:
    if isinstance(data, str):
        response = await client.request(method, path, headers=headers, content=data)
    else:
        response = await client.request(method, path, headers=headers, data=data)
    assert_security_headers(response)
    assert "strict-transport-security" not in response.headers  # the issuer is plain http
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"


async def test_token_answers_are_never_stored(login: Login, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/refresh", data={"client_id": "spa", "refresh_token": login.refresh_token}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert_security_headers(response)


async def test_the_jwks_keeps_its_own_caching(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.headers["cache-control"].startswith("public, max-age=")


async def test_an_unexpected_error_carries_them_too(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    app.router.routes.append(Route("/broken", broken))
    response = await client.get("/broken")
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    assert_security_headers(response)


class TestHttpsIssuer:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        return {"issuer": "https://authserver.test"}

    @pytest.mark.parametrize("path", ["/healthz", "/nowhere", "/.well-known/jwks.json"])
    async def test_hsts_is_sent(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)
        assert_security_headers(response)
        hsts = response.headers["strict-transport-security"]
        assert hsts.startswith("max-age=") and int(hsts.split(";")[0].split("=")[1]) >= 31_536_000
