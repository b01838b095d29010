"""What a browser-based MCP client reads cross-origin, in a real browser (Debian's Chromium,
headless, Playwright's async API): a page on http://localhost:P — another origin than the
servers on 127.0.0.1 — does what the MCP SDKs' auth() does before the sign-in, with the
headers they send, so Chromium's own CORS checks (preflights included) decide:

- the MCP server's RFC 9728 document (examples/mcp, the kit's `ProtectedResource`), read with
  `MCP-Protocol-Version` (a preflight first);
- authserver's RFC 8414 metadata, the same way;
- `POST /register` with a JSON body (a preflight first), its answer read.

A page cannot read what CORS does not allow: each step fails with a TypeError otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests._uvicorn import loopback_socket, served, url_of
from tests.e2e.test_spa_chromium import ARGS, TIMEOUT_MS, chromium
from tests.examples.test_mcp import example_mcp
from tests.http.test_verify_live import Live, live

__all__ = ["chromium", "live"]  # fixtures, imported for their use here


# What the MCP TypeScript SDK's auth() sends (client/auth.js: discovery with the protocol
# version header, registration as JSON), each answer read as the SDK reads it.
DISCOVER = """async ([url]) => {
    try {
        const response = await fetch(url, {headers: {"MCP-Protocol-Version": "2025-06-18"}});
        return {status: response.status, body: await response.json()};
    } catch (error) { return {error: String(error)}; }
}"""
REGISTER = """async ([url, redirect]) => {
    try {
        const response = await fetch(url, {
            method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({client_name: "Browser MCP client", redirect_uris: [redirect],
                                  grant_types: ["authorization_code", "refresh_token"],
                                  token_endpoint_auth_method: "none", scope: "tools.call"}),
        });
        return {status: response.status, body: await response.json()};
    } catch (error) { return {error: String(error)}; }
}"""


@pytest.fixture
def live_overrides() -> dict[str, str]:
    return {"registration": "open"}


@pytest.fixture
async def page_origin() -> AsyncIterator[str]:
    """A blank page on http://localhost:P: another origin than 127.0.0.1's servers."""
    sock = loopback_socket()
    app = Starlette(routes=[Route("/", lambda request: HTMLResponse("<!doctype html><title>x"))])
    async with served(app, sock):
        yield url_of(sock).replace("127.0.0.1", "localhost")


@pytest.mark.parametrize("live", ["EdDSA"], indirect=True)
async def test_a_browser_page_of_another_origin_reads_discovery_and_registers(
    chromium: Path, live: Live, page_origin: str
) -> None:
    async with example_mcp(live) as resource, async_playwright() as playwright:
        metadata_url = resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
        browser = await playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            await page.goto(page_origin + "/")
            document: dict[str, Any] = await page.evaluate(DISCOVER, [metadata_url])
            server = await page.evaluate(
                DISCOVER, [f"{live.url}/.well-known/oauth-authorization-server"]
            )
            registered = await page.evaluate(
                REGISTER, [f"{live.url}/register", "http://127.0.0.1:9/callback"]
            )
        finally:
            await browser.close()

    assert document.get("status") == 200, document
    assert document["body"]["resource"] == resource
    assert document["body"]["authorization_servers"] == [live.url]
    assert server.get("status") == 200, server
    assert server["body"]["registration_endpoint"] == f"{live.url}/register"
    assert registered.get("status") == 201, registered
    assert registered["body"]["client_id"].startswith("dcr_")
