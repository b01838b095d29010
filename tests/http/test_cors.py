"""CORS for the allowed SPA origins: exact origins, with credentials, never `*` (but for the
public documents under /.well-known/: tests/http/test_client_origins.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Registry

APP = "https://app.example"
FOREIGN = "https://evil.example"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {"allowed_origins": APP}


def preflight_headers(
    origin: str, method: str = "POST", headers: str | None = "content-type"
) -> dict[str, str]:
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return sent


def varies_on_origin(response: httpx.Response) -> bool:
    named = {v.strip().lower() for h in response.headers.get_list("vary") for v in h.split(",")}
    return "origin" in named


@pytest.mark.parametrize("path", ["/token", "/refresh", "/logout", "/logout/all", "/revoke"])
async def test_a_preflight_from_an_allowed_origin_is_answered_by_name_with_credentials(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.options(
        path, headers=preflight_headers(APP, headers="authorization, content-type")
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST"}
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed
    assert response.headers["access-control-max-age"] == "600"
    assert varies_on_origin(response)


@pytest.mark.parametrize("path", ["/token", "/refresh", "/userinfo"])
async def test_a_spa_may_send_a_dpop_proof_and_read_a_dpop_nonce(
    client: httpx.AsyncClient, path: str
) -> None:
    """RFC 9449 §4.1: the proof is a `DPoP` request header, which a browser sends cross-origin
    only when the preflight allows it; §8: a server nonce comes back in `DPoP-Nonce`; `Date`
    for a page whose clock is off to date its proofs by ours."""
    response = await client.options(
        path, headers=preflight_headers(APP, headers="authorization, content-type, dpop")
    )
    assert response.status_code == 200, response.text
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert "dpop" in allowed
    answered = await client.post(path, headers={"Origin": APP})
    exposed = {
        h.strip().lower() for h in answered.headers["access-control-expose-headers"].split(",")
    }
    assert {"dpop-nonce", "retry-after", "date"} <= exposed


@pytest.mark.parametrize(
    "origin", [FOREIGN, "null", "http://app.example", "https://app.example.evil.example"]
)
async def test_a_preflight_from_a_foreign_origin_is_refused(
    client: httpx.AsyncClient, origin: str
) -> None:
    response = await client.options("/refresh", headers=preflight_headers(origin))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.headers["content-type"] == "application/json"
    assert "access-control-allow-origin" not in response.headers
    assert varies_on_origin(response)


@pytest.mark.parametrize(
    ("method", "headers"), [("PUT", "content-type"), ("DELETE", None), ("POST", "x-custom")]
)
async def test_a_preflight_for_a_method_or_header_not_offered_is_refused(
    client: httpx.AsyncClient, method: str, headers: str | None
) -> None:
    response = await client.options(
        "/token", headers=preflight_headers(APP, method=method, headers=headers)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_request_from_an_allowed_origin_may_read_the_answer_with_credentials(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user()
    response = await client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "correct horse",
            "client_id": spa,
        },
        headers={"Origin": APP},
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()
    assert varies_on_origin(response)


@pytest.mark.parametrize("origin", [FOREIGN, None])
async def test_other_origins_get_no_cors_grant_but_the_answer_still_varies_on_origin(
    client: httpx.AsyncClient, origin: str | None
) -> None:
    headers = {} if origin is None else {"Origin": origin}
    response = await client.get("/healthz", headers=headers)
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    # A cache must not hand one origin's answer to another.
    assert varies_on_origin(response)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/nowhere"), ("POST", "/token"), ("GET", "/token")],
)
async def test_never_a_wildcard_outside_the_public_documents(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    for origin in (APP, FOREIGN):
        response = await client.request(method, path, headers={"Origin": origin})
        assert response.headers.get("access-control-allow-origin") in (None, APP)
        if origin == APP:
            assert response.headers["access-control-allow-origin"] == APP
        assert varies_on_origin(response)


class TestNoOriginsConfigured:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        return {}

    async def test_every_preflight_with_credentials_is_refused(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.options("/refresh", headers=preflight_headers(APP))
        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers
        # /token's names no client: any page may ask, never with credentials (a public
        # client's own page reads its answer: tests/http/test_client_page_cors.py).
        response = await client.options("/token", headers=preflight_headers(APP))
        assert response.status_code == 204
        assert "access-control-allow-credentials" not in response.headers
