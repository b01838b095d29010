"""What a browser-based MCP client reads cross-origin, in a real browser (Debian's Chromium,
headless, Playwright's async API): a page on http://localhost:P — another origin than the
servers on 127.0.0.1 — does what the MCP SDKs' auth() does before the sign-in, with the
headers they send, so Chromium's own CORS checks (preflights included) decide:

- the MCP server's RFC 9728 document (examples/mcp, the kit's `ProtectedResource`), read with
  `MCP-Protocol-Version` (a preflight first);
- authserver's RFC 8414 metadata, the same way;
- `POST /register` with a JSON body (a preflight first), its answer read;
- then the sign-in and consent, back to the page's redirect URI, and `POST /token` from
  that page: the code exchanged as the SDK does (a form: no preflight), the refresh as JSON (a
  preflight first), both answered without credentials (http/cors.py); the same refresh from
  a page of another origin (http://127.0.0.1:P, the same server) cannot read its answer.

A page cannot read what CORS does not allow: each step fails with a TypeError otherwise.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.async_api import Page, async_playwright
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


# The SDK's exchangeAuthorization: a form, read as JSON (no preflight: a safelisted type).
EXCHANGE = """async ([url, fields]) => {
    try {
        const response = await fetch(url, {
            method: "POST",
            headers: {"Content-Type": "application/x-www-form-urlencoded",
                      "Accept": "application/json"},
            body: new URLSearchParams(fields),
        });
        return {status: response.status, body: await response.json(),
                credentials: response.headers.get("Access-Control-Allow-Credentials")};
    } catch (error) { return {error: String(error)}; }
}"""
# The same as JSON, which the token endpoint takes too: a preflight first.
EXCHANGE_JSON = """async ([url, fields]) => {
    try {
        const response = await fetch(url, {
            method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify(fields),
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
    page = HTMLResponse("<!doctype html><title>x")
    app = Starlette(routes=[Route("/", lambda _: page), Route("/callback", lambda _: page)])
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
                REGISTER, [f"{live.url}/register", f"{page_origin}/callback"]
            )
            client_id = registered["body"]["client_id"]
            code = await signed_in(page, live, client_id, f"{page_origin}/callback", resource)
            token = f"{live.url}/token"
            exchanged = await page.evaluate(
                EXCHANGE,
                [
                    token,
                    {
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": f"{page_origin}/callback",
                        "client_id": client_id,
                        "code_verifier": VERIFIER,
                    },
                ],
            )
            assert exchanged.get("status") == 200, exchanged
            refresh = {"grant_type": "refresh_token", "client_id": client_id}
            refreshed = await page.evaluate(
                EXCHANGE_JSON,
                [token, {**refresh, "refresh_token": exchanged["body"]["refresh_token"]}],
            )
            # Another origin: the page may send (nothing stops a form post), not read.
            await page.goto(page_origin.replace("localhost", "127.0.0.1") + "/")
            elsewhere = await page.evaluate(
                EXCHANGE, [token, {**refresh, "refresh_token": refreshed["body"]["refresh_token"]}]
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
    # (scope "": Alice holds no tools.call, and a user's scopes bound what a client gets)
    assert exchanged["body"]["token_type"] == "Bearer", exchanged
    assert exchanged["body"]["refresh_token"], exchanged
    assert exchanged["credentials"] is None
    assert refreshed.get("status") == 200, refreshed
    assert refreshed["body"]["access_token"] != exchanged["body"]["access_token"]
    assert "Failed to fetch" in elsewhere.get("error", ""), elsewhere


VERIFIER = "a-browser-clients-code-verifier-of-43-characters-at-least"


async def signed_in(page: Page, live: Live, client_id: str, redirect: str, resource: str) -> str:
    """The code: /authorize, Alice's sign-in and consent in the page, back at `redirect`."""
    challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect,
            "scope": "tools.call",
            "resource": resource,
            "state": "s",
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    await page.goto(f"{live.url}/authorize?{query}")
    await page.fill("#username", "alice")
    await page.fill("#password", "correct horse")
    async with page.expect_navigation(url=lambda url: "/consent" in url):
        await page.click("button[type=submit]")
    async with page.expect_navigation(url=lambda url: url.startswith(redirect)):
        await page.click("button[value=allow]")
    answer = parse_qs(urlsplit(page.url).query)
    assert answer["state"] == ["s"], page.url
    return answer["code"][0]
