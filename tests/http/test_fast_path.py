"""http/fast_path.py's HotRoutes: a service's POST to /token, /introspect or /revoke skips CORS
and the router. A request with an Origin still takes the long way, so sending each request
both ways shows whether the short way answers differently: it must not, apart from CORS's own
headers."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.routing import Router

from tests.conftest import Registry

# Not an allowed origin: CORS adds its headers and changes nothing else.
ORIGIN = {"Origin": "https://elsewhere.example"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    """Status, headers and body, less what differs from one request to the next (the request
    id, fresh tokens) and what CORS adds."""
    headers = sorted(
        (name, value)
        for name, value in response.headers.multi_items()
        if not name.startswith("access-control-") and name not in ("x-request-id", "content-length")
    )
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body = {
            key: type(value).__name__ if key.endswith("token") else value
            for key, value in body.items()
        }
    return response.status_code, headers, body


@pytest.fixture
async def service(registry: Registry) -> dict[str, str]:
    secret = await registry.client("svc")
    assert secret is not None
    return basic("svc", secret)


CASES: dict[str, tuple[str, dict[str, str], str | None]] = {
    # name: (path, form, which credentials: "good", "bad" or None)
    "token issued": ("/token", {"grant_type": "client_credentials"}, "good"),
    "wrong secret": ("/token", {"grant_type": "client_credentials"}, "bad"),
    "no grant type": ("/token", {}, "good"),
    "unknown grant": ("/token", {"grant_type": "magic"}, "good"),
    "wider scope": ("/token", {"grant_type": "client_credentials", "scope": "admin"}, "good"),
    "introspect garbage": ("/introspect", {"token": "not-a-token"}, "good"),
    "introspect unauthenticated": ("/introspect", {"token": "x"}, None),
    "revoke garbage": ("/revoke", {"token": "not-a-token"}, "good"),
    "revoke without token": ("/revoke", {}, "good"),
}


@pytest.mark.parametrize("case", CASES)
async def test_the_short_way_answers_as_the_long_way(
    client: httpx.AsyncClient, service: dict[str, str], case: str
) -> None:
    path, form, credentials = CASES[case]
    auth = {"good": service, "bad": basic("svc", "wrong"), None: {}}[credentials]

    short = await client.post(path, data=form, headers=auth)
    routed = await client.post(path, data=form, headers={**auth, **ORIGIN})

    assert comparable(short) == comparable(routed)
    assert ("vary", "Origin") in comparable(short)[1]


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [("text/plain", b"grant_type=client_credentials", 415), (None, b"a=" + b"x" * 20_000, 413)],
    ids=["media-type", "too-large"],
)
async def test_bad_bodies_are_answered_alike(
    client: httpx.AsyncClient,
    service: dict[str, str],
    content_type: str | None,
    body: bytes,
    status: int,
) -> None:
    headers = {**service, "Content-Type": content_type or "application/x-www-form-urlencoded"}

    short = await client.post("/token", content=body, headers=headers)
    routed = await client.post("/token", content=body, headers={**headers, **ORIGIN})

    assert short.status_code == status
    assert comparable(short) == comparable(routed)


async def test_the_short_way_is_counted_under_its_route(
    client: httpx.AsyncClient, service: dict[str, str]
) -> None:
    labels = {"method": "POST", "route": "/token", "status": "200"}
    before = REGISTRY.get_sample_value("authserver_http_requests_total", labels) or 0.0

    await client.post("/token", data={"grant_type": "client_credentials"}, headers=service)

    assert REGISTRY.get_sample_value("authserver_http_requests_total", labels) == before + 1


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests that reached Starlette's router: the short way never does,
    so these tests fail if HotRoutes or JwksShortcut leave app.py's middleware list."""
    seen: list[str] = []
    long_way = Router.__call__

    async def counting(self: Router, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await long_way(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", counting)
    return seen


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
async def test_a_service_post_skips_the_router(
    client: httpx.AsyncClient, service: dict[str, str], routed: list[str], path: str
) -> None:
    form = {"grant_type": "client_credentials"} if path == "/token" else {"token": "x"}

    short = await client.post(path, data=form, headers=service)
    assert short.status_code == 200
    assert routed == []

    await client.post(path, data=form, headers={**service, **ORIGIN})
    assert routed == [path]  # a browser's request, with an Origin, goes the long way


@pytest.mark.parametrize("origin", [{}, ORIGIN])
async def test_a_jwks_get_from_any_origin_skips_the_router(
    client: httpx.AsyncClient, routed: list[str], origin: dict[str, str]
) -> None:
    short = await client.get("/.well-known/jwks.json", headers=origin)
    assert short.status_code == 200
    assert routed == []  # an Origin too: the key set is open to every page (http/cors.py)
    assert short.headers["access-control-allow-origin"] == "*"
    etag = {"If-None-Match": short.headers["etag"]}
    not_modified = await client.get("/.well-known/jwks.json", headers={**origin, **etag})
    assert not_modified.status_code == 304 and routed == []
    assert not_modified.headers["access-control-allow-origin"] == "*"
