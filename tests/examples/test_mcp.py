"""examples/mcp/ against a live authserver: both under uvicorn, talking over loopback HTTP.

The RFC 9728 document names the issuer; no token → 401 naming that document; a real token for
another audience (the default one, or another registered resource) → 401; one for the
resource without `tools.call` → 403; a real token for the example's resource, from the
client_credentials grant with `resource` → the MCP SDK's server answers (Streamable HTTP,
JSON-RPC). The official MCP TypeScript SDK's client against it: tests/interop/test_mcp_sdk.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from authserver.audit import AuditEvent
from authserver.tokens.resources import Resource
from tests._uvicorn import loopback_socket, served, url_of
from tests.conftest import Registry
from tests.examples.test_service import load_example
from tests.http.test_verify_live import Live

EXAMPLE = Path(__file__).parents[2] / "examples" / "mcp" / "app.py"
OTHER = "https://other.example/api"
CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 2, "b": 40}}}  # fmt: skip
# What MCP's Streamable HTTP transport asks of a client's POST.
STREAMABLE = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


@dataclass
class Mcp:
    client: httpx.AsyncClient
    resource: str
    secret: str


async def register_resource(live: Live, identifier: str) -> None:
    """As `authserver resources create IDENTIFIER --scope tools.call` does."""
    event = AuditEvent(0, "test", "resource.created", identifier)
    resource = Resource(identifier, ("tools.call",), 300)
    assert await live.services.resources.create(resource, event)


@asynccontextmanager
async def example_mcp(live: Live) -> AsyncIterator[str]:
    """The example under uvicorn, configured as its README says, its resource registered at
    the issuer; yields the resource (the URL clients call)."""
    sock = loopback_socket()
    resource = url_of(sock) + "/mcp"
    await register_resource(live, resource)
    app = load_example(EXAMPLE, "example_mcp").app_from_env(
        {"AUTHSERVER_ISSUER": live.url, "MCP_RESOURCE": resource}
    )
    async with served(app, sock):
        yield resource


@pytest.fixture
async def mcp(live: Live) -> AsyncIterator[Mcp]:
    """The example, another registered resource, and a client allowed their scope."""
    await register_resource(live, OTHER)
    secret = await Registry(live.services).client("agent", scopes=("tools.call", "openid"))
    assert secret is not None
    async with (
        example_mcp(live) as resource,
        httpx.AsyncClient(
            base_url=resource.removesuffix("/mcp"), trust_env=False, timeout=10
        ) as client,
    ):
        yield Mcp(client, resource, secret)


async def token_for(
    http: httpx.AsyncClient, secret: str, resource: str | None, scope: str = "tools.call"
) -> str:
    data = {"grant_type": "client_credentials", "scope": scope}
    if resource is not None:
        data["resource"] = resource
    response = await http.post("/token", data=data, auth=("agent", secret))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_the_example_publishes_its_metadata_and_serves_only_its_own_tokens(
    live: Live, http: httpx.AsyncClient, mcp: Mcp
) -> None:
    metadata_url = mcp.resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    document = (await mcp.client.get(metadata_url)).json()
    assert document["resource"] == mcp.resource
    assert document["authorization_servers"] == [live.url]
    assert document["scopes_supported"] == ["tools.call"]
    # The issuer the document names is one a client can discover (RFC 8414).
    discovered = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert discovered["issuer"] == live.url

    missing = await mcp.client.post("/mcp", json=CALL, headers=STREAMABLE)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == f'Bearer resource_metadata="{metadata_url}"'

    for audience in (None, OTHER):  # the server's default audience, another resource
        token = await token_for(http, mcp.secret, audience)
        refused = await mcp.client.post(
            "/mcp", json=CALL, headers={**STREAMABLE, "Authorization": f"Bearer {token}"}
        )
        assert refused.status_code == 401, audience
        assert refused.headers["www-authenticate"] == (
            f'Bearer error="invalid_token", resource_metadata="{metadata_url}"'
        )

    token = await token_for(http, mcp.secret, mcp.resource)
    bearer = {**STREAMABLE, "Authorization": f"Bearer {token}"}
    answer = await mcp.client.post("/mcp", json=CALL, headers=bearer)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["jsonrpc"], body["id"]) == ("2.0", 7)
    assert body["result"]["content"] == [{"type": "text", "text": "42"}]
    assert body["result"]["isError"] is False
    listed = await mcp.client.post(
        "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=bearer
    )
    assert [tool["name"] for tool in listed.json()["result"]["tools"]] == ["add"]


async def test_a_token_for_the_resource_without_its_scope_is_refused(
    http: httpx.AsyncClient, mcp: Mcp
) -> None:
    token = await token_for(http, mcp.secret, mcp.resource, scope="openid")
    lacking = await mcp.client.post(
        "/mcp", json=CALL, headers={**STREAMABLE, "Authorization": f"Bearer {token}"}
    )
    assert lacking.status_code == 403
    assert lacking.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="tools.call"'
    )
