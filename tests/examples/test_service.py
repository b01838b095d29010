"""examples/service/ against a live authserver: both under uvicorn, talking over loopback HTTP.

A real token with the scope → 200; no token → 401 with a bare Bearer challenge; a token lacking
the scope → 403 insufficient_scope; a session logged out → 401 once the revocation feed polls.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import anyio
import httpx
import pytest

from tests._dpop import DPoPKey
from tests._uvicorn import loopback_socket, served
from tests.conftest import Registry, password_login
from tests.http.test_verify_live import Live, log_in

EXAMPLE = Path(__file__).parents[2] / "examples" / "service" / "app.py"
SPA_ORIGIN = "http://127.0.0.1:5173"
POLL = 0.2


def load_example(path: Path = EXAMPLE, name: str = "example_service") -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def running_service(live: Live, **extra: str) -> AsyncIterator[httpx.AsyncClient]:
    """The example service under uvicorn, configured as its README says, through app_from_env;
    `extra`: more of its environment."""
    secret = await Registry(live.services).client("orders-api")
    assert secret is not None
    app = load_example().app_from_env(
        {
            "AUTHSERVER_ISSUER": live.url,
            "SERVICE_AUDIENCE": live.settings.audience,
            "SERVICE_CORS_ORIGIN": SPA_ORIGIN,
            "SERVICE_CLIENT_ID": "orders-api",
            "SERVICE_CLIENT_SECRET": secret,
            "SERVICE_POLL_INTERVAL": str(POLL),
            **extra,
        }
    )
    sock = loopback_socket()
    async with (
        served(app, sock) as running,
        httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=10) as client,
    ):
        yield client


@pytest.fixture
async def service(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with running_service(live) as client:
        yield client


@pytest.fixture
async def orders_user(live: Live, http: httpx.AsyncClient) -> dict[str, str]:
    """bob, allowed orders:read, logged in through a public client that may ask for it."""
    registry = Registry(live.services)
    scopes = ("profile", "orders:read")
    await registry.client(
        "spa-orders", public=True, grant_types=("password", "refresh_token"), scopes=scopes
    )
    await registry.user("bob", "battery staple", scopes=scopes)
    response = await password_login(
        http, "bob", "battery staple", "spa-orders", scope="profile orders:read"
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def preflight(service: httpx.AsyncClient, request_headers: str) -> httpx.Response:
    """The SPA's browser asking whether it may GET /api/orders with `request_headers`."""
    return await service.options(
        "/api/orders",
        headers={
            "Origin": SPA_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": request_headers,
        },
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": SPA_ORIGIN}


async def test_a_token_with_the_scope_is_served(
    service: httpx.AsyncClient, orders_user: dict[str, str]
) -> None:
    response = await service.get("/api/orders", headers=bearer(orders_user["access_token"]))

    assert response.status_code == 200, response.text
    assert response.json()["orders"]
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    me = await service.get("/api/me", headers=bearer(orders_user["access_token"]))
    assert me.status_code == 200
    assert set(me.json()["scope"].split()) == {"profile", "orders:read"}


async def test_no_token_is_401_with_a_bearer_challenge(service: httpx.AsyncClient) -> None:
    response = await service.get("/api/orders", headers={"Origin": SPA_ORIGIN})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    # The SPA can read the status and the challenge across origins.
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert "www-authenticate" in response.headers["access-control-expose-headers"].lower()
    garbage = await service.get("/api/me", headers=bearer("not.a.token"))
    assert garbage.status_code == 401
    assert garbage.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_token_lacking_the_scope_is_403(
    service: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    token = (await log_in(http))["access_token"]  # alice: profile only

    response = await service.get("/api/orders", headers=bearer(token))

    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="orders:read"'
    )
    assert (await service.get("/api/me", headers=bearer(token))).status_code == 200


async def test_a_logged_out_session_is_refused_once_the_feed_polls(
    service: httpx.AsyncClient, http: httpx.AsyncClient, orders_user: dict[str, str]
) -> None:
    headers = bearer(orders_user["access_token"])
    assert (await service.get("/api/orders", headers=headers)).status_code == 200  # now cached

    logout = await http.post("/logout", data={"refresh_token": orders_user["refresh_token"]})
    assert logout.status_code == 204

    with anyio.fail_after(POLL * 20):
        while (response := await service.get("/api/orders", headers=headers)).status_code == 200:
            await anyio.sleep(0.05)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_cors_preflight_from_the_spa_is_answered_without_a_token(
    service: httpx.AsyncClient,
) -> None:
    response = await preflight(service, "authorization")

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    other = await service.options(
        "/api/orders",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert other.status_code == 400


async def bound_token(
    live: Live, http: httpx.AsyncClient, orders_user: dict[str, str], key: DPoPKey
) -> str:
    """An access token bound to `key`, from a refresh with its proof."""
    bound = await http.post(
        "/token",
        data={"grant_type": "refresh_token", "client_id": "spa-orders"}
        | {"refresh_token": orders_user["refresh_token"]},
        headers={"DPoP": key.proof(htu=f"{live.url}/token")},
    )
    assert bound.status_code == 200 and bound.json()["token_type"] == "DPoP", bound.text
    token: str = bound.json()["access_token"]
    return token


async def test_a_dpop_bound_token_is_served_with_its_proof_and_refused_without(
    live: Live, service: httpx.AsyncClient, http: httpx.AsyncClient, orders_user: dict[str, str]
) -> None:
    """What the SPA does by default (docs/spa.md): a token bound to its key, sent with the DPoP
    scheme and a proof carrying `ath`, from the SPA's origin, whose preflight allows `DPoP`."""
    key = DPoPKey()
    token = await bound_token(live, http, orders_user, key)
    url = f"{service.base_url}".rstrip("/") + "/api/orders"
    allowed = await preflight(service, "authorization, dpop")
    assert allowed.status_code == 200, allowed.text

    def dpop(proof_key: DPoPKey) -> dict[str, str]:
        proof = proof_key.proof(method="GET", access_token=token, htu=url)
        return {"Authorization": f"DPoP {token}", "DPoP": proof, "Origin": SPA_ORIGIN}

    answer = await service.get("/api/orders", headers=dpop(key))
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == SPA_ORIGIN
    as_bearer = await service.get("/api/orders", headers=bearer(token))
    assert as_bearer.status_code == 401
    assert as_bearer.headers["www-authenticate"].startswith('DPoP error="invalid_token"')
    thief = await service.get("/api/orders", headers=dpop(DPoPKey()))
    assert thief.status_code == 401 and thief.json()["error"] == "invalid_dpop_proof"


async def test_with_a_nonce_secret_a_proof_needs_the_services_own_nonce(
    live: Live, http: httpx.AsyncClient, orders_user: dict[str, str]
) -> None:
    """SERVICE_DPOP_NONCE_SECRET (RFC 9449 §9): a proof without the service's nonce is refused
    with one the SPA can read (CORS exposes DPoP-Nonce), and taken with it."""
    key = DPoPKey()
    token = await bound_token(live, http, orders_user, key)
    async with running_service(
        live, SERVICE_DPOP_NONCE_SECRET=secrets.token_urlsafe(32)
    ) as service:
        url = f"{service.base_url}".rstrip("/") + "/api/me"

        def dpop(**claims: str) -> dict[str, str]:
            proof = key.proof(method="GET", access_token=token, htu=url, **claims)
            return {"Authorization": f"DPoP {token}", "DPoP": proof, "Origin": SPA_ORIGIN}

        refused = await service.get("/api/me", headers=dpop())
        assert refused.status_code == 401 and refused.json()["error"] == "use_dpop_nonce"
        assert refused.headers["www-authenticate"].startswith('DPoP error="use_dpop_nonce"')
        exposed = refused.headers["access-control-expose-headers"].lower()
        assert "dpop-nonce" in exposed and "www-authenticate" in exposed
        served_answer = await service.get(
            "/api/me", headers=dpop(nonce=refused.headers["dpop-nonce"])
        )
        assert served_answer.status_code == 200, served_answer.text
        assert served_answer.headers["dpop-nonce"]  # a fresh one, for the next proof
