"""Clients, added (API.md): redirect_uris and post_logout_redirect_uris at registration."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from authserver.services import Services
from tests.conftest import Registry
from tests.http.signin import admin_headers


@pytest.fixture
async def root(client: httpx.AsyncClient, registry: Registry, spa: str) -> dict[str, str]:
    return await admin_headers(client, registry)


async def test_a_client_registers_its_redirect_uris_and_the_code_grant(
    client: httpx.AsyncClient, root: dict[str, str], services: Services
) -> None:
    body = {
        "client_id": "web",
        "public": True,
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "profile"],
        "redirect_uris": ["https://app.example/cb", "http://127.0.0.1:5173/cb"],
        "post_logout_redirect_uris": ["https://app.example/bye"],
    }

    response = await client.post("/admin/clients", json=body, headers=root)

    assert response.status_code == 201, response.text
    assert response.json()["redirect_uris"] == body["redirect_uris"]
    assert response.json()["post_logout_redirect_uris"] == body["post_logout_redirect_uris"]
    stored = await services.clients.get("web")
    assert stored is not None
    assert stored.redirect_uris == ("https://app.example/cb", "http://127.0.0.1:5173/cb")
    assert stored.post_logout_redirect_uris == ("https://app.example/bye",)
    assert stored.grant_types == ("authorization_code", "refresh_token")


@pytest.mark.parametrize(
    "uri",
    [
        "app.example/cb",  # not absolute
        "/cb",
        "ftp://app.example/cb",
        "http://app.example/cb",  # http off loopback
        "https://app.example/cb#frag",  # RFC 6749 §3.1.2: no fragment
        "https://app.example/cb#",
        "https://user@app.example/cb",  # userinfo
        "https:///cb",  # no host
        "https://app.example:99999/cb",  # bad port
        "https://app.example/c b",
        "https://app.example/\u00e9",
        "javascript:alert(1)",
        "https://app.example/" + "a" * 2000,
    ],
)
@pytest.mark.parametrize("field", ["redirect_uris", "post_logout_redirect_uris"])
async def test_registration_refuses_a_uri_the_contract_does_not_allow(
    client: httpx.AsyncClient, root: dict[str, str], field: str, uri: str
) -> None:
    body: dict[str, Any] = {
        "client_id": "web",
        "public": True,
        "grant_types": ["authorization_code"],
        "redirect_uris": ["https://app.example/ok"],
    }
    body[field] = [uri]

    response = await client.post("/admin/clients", json=body, headers=root)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["error_description"]


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:8080/cb", "http://[::1]/cb", "http://localhost/"]
)
async def test_http_is_allowed_on_a_loopback_host(
    client: httpx.AsyncClient, root: dict[str, str], uri: str
) -> None:
    body = {"client_id": "native", "public": True, "grant_types": ["authorization_code"]}
    response = await client.post(
        "/admin/clients", json={**body, "redirect_uris": [uri]}, headers=root
    )
    assert response.status_code == 201, response.text


async def test_the_code_grant_needs_a_redirect_uri(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    body = {"client_id": "web", "public": True, "grant_types": ["authorization_code"]}
    response = await client.post("/admin/clients", json=body, headers=root)
    assert response.status_code == 400
    assert "redirect_uris" in response.json()["error_description"]
