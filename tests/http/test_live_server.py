"""The real app under a real uvicorn, spoken to over loopback HTTP, verified as a resource
server would: PyJWT's JWKS client against the published key set, nothing shared in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import build_services, create_app
from authserver.config import Settings
from tests._uvicorn import loopback_socket, served, url_of
from tests.conftest import Registry, make_settings, password_login


@dataclass
class LiveServer:
    url: str
    settings: Settings


async def delete_signing_keys(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM signing_keys"))


@pytest.fixture(params=["RS256", "EdDSA"])
async def live(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path, engine: AsyncEngine
) -> AsyncIterator[LiveServer]:
    """uvicorn serving the app on a free port, its issuer that URL, with fresh keys of the
    parametrized algorithm (deleted again afterwards: the suite keeps keys across tests)."""
    sock = loopback_socket()
    url = url_of(sock)
    settings = make_settings(database_url, tmp_path / "keys", issuer=url, signing_alg=request.param)
    await delete_signing_keys(engine)
    try:
        async with served(create_app(settings), sock):
            yield LiveServer(url, settings)
    finally:
        await delete_signing_keys(engine)


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, trust_env=False, timeout=10) as client:
        yield client


async def test_token_from_real_http_verifies_with_pyjwt_and_the_published_jwks(
    live: LiveServer, http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    registry = Registry(build_services(live.settings, engine))
    await registry.client("spa", public=True, grant_types=("password", "refresh_token"))
    await registry.user("alice", "correct horse")

    response = await password_login(http)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    # Discovery as a resource server does it: from the metadata to the key set.
    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == live.url
    assert metadata["jwks_uri"] == f"{live.url}/.well-known/jwks.json"

    def verify() -> dict[str, object]:
        jwks_client = jwt.PyJWKClient(metadata["jwks_uri"], cache_keys=False)
        key = jwks_client.get_signing_key_from_jwt(token)
        claims: dict[str, object] = jwt.decode(
            token,
            key,
            algorithms=["RS256", "EdDSA"],
            audience=live.settings.audience,
            issuer=live.url,
        )
        return claims

    claims = await anyio.to_thread.run_sync(verify)

    assert jwt.get_unverified_header(token)["alg"] == live.settings.signing_alg
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    assert claims["client_id"] == "spa"
    assert claims["iss"] == live.url


async def test_health_endpoints_over_real_http(http: httpx.AsyncClient) -> None:
    healthz = await http.get("/healthz")
    readyz = await http.get("/readyz")

    assert healthz.status_code == 200
    assert readyz.status_code == 200
