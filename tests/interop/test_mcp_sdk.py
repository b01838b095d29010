"""Interop: the official MCP TypeScript SDK's client (npm `@modelcontextprotocol/sdk`, pinned in
package.json), written by nobody here, authorizes itself against an MCP server protected by the
verifier kit, with no client registered by hand (issue 25, API.md "Resource servers, client
registration and consent").

The MCP server is examples/mcp (the MCP Python SDK's Streamable HTTP transport, guarded by the
kit's `ProtectedResource`), under uvicorn beside a live authserver with open registration. The
client is mcp_client.mjs under Node: its unauthenticated call gets a 401 naming the RFC 9728
document; the SDK reads it, discovers the issuer (RFC 8414), registers at /register (RFC 7591),
and sends the user to /authorize with PKCE and `resource`; the browser step is done here (an
HTTP client signs in on the hosted page and allows the consent page, then follows the redirect
to the client's loopback listener); the SDK redeems the code, calls the tool, refreshes when its
access token is refused, and calls again. The token it holds is refused by a second MCP server
(another resource): no passthrough. The transcript (every request the SDK made) is printed.

The same flow again with a client ID metadata document instead of /register: the test serves
the document over https (tests/_https_documents.py, its throwaway CA trusted by authserver
through SSL_CERT_FILE), registration is off, and the SDK sends the document's URL as client_id.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from tests._https_documents import documents_server
from tests.conftest import Registry
from tests.examples.test_mcp import example_mcp
from tests.http.signin import PASSWORD, csrf_token, form_action
from tests.http.test_verify_live import Live
from tests.interop.browser import INSECURE_COOKIES, new_browser

HERE = Path(__file__).parent
CLIENT_NAME = "authserver interop (MCP TypeScript SDK)"
USER = "carol"  # holds tools.call: a user gets only the scopes an operator gave them


@pytest.fixture
def live_overrides() -> dict[str, str]:
    return {**INSECURE_COOKIES, "registration": "open"}


async def browser_step(browser: httpx.AsyncClient, url: str, callback: str) -> list[str]:
    """What the user's browser does: the authorization URL, the sign-in page, the consent
    page, and the redirect to the client's loopback callback (fetched: the client is
    listening there). Returns the pages seen, by path."""
    seen: list[str] = []
    response = await browser.get(url)
    for _ in range(8):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            response = await browser.get(location)
            if location.startswith(callback + "?"):
                assert response.status_code == 200, response.text
                seen.append("callback")
                return seen
            continue
        assert response.status_code == 200, response.text
        page, action = response.text, urljoin(str(response.url), form_action(response.text))
        seen.append(urlsplit(str(response.url)).path)
        if 'name="password"' in page:
            form = {"csrf_token": csrf_token(page), "username": USER, "password": PASSWORD}
        else:
            assert 'name="decision"' in page and CLIENT_NAME in page, page
            form = {"csrf_token": csrf_token(page), "decision": "allow"}
        response = await browser.post(action, data=form)
    raise AssertionError(f"no way back to the client: {seen}")


async def run_client(
    node: str, server: str, *options: str, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """mcp_client.mjs to its end, doing the browser step when it asks; its transcript."""
    argv = [node, str(HERE / "mcp_client.mjs"), "--server", server, *options]
    transcript: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        process: Process = await stack.enter_async_context(
            await anyio.open_process(argv, cwd=HERE, env=env)
        )
        browser = await stack.enter_async_context(new_browser())
        assert process.stdout is not None and process.stderr is not None
        buffered = ""
        with anyio.fail_after(90):
            async for text in TextReceiveStream(process.stdout):
                buffered += text
                *lines, buffered = buffered.split("\n")
                for line in lines:
                    entry = json.loads(line)
                    transcript.append(entry)
                    if entry.get("step") == "authorize" and entry["provider"] == "primary":
                        asked = dict(parse_qsl(urlsplit(entry["url"]).query))
                        entry["pages"] = await browser_step(
                            browser, entry["url"], asked["redirect_uri"]
                        )
            code = await process.wait()
        errors = "".join([text async for text in TextReceiveStream(process.stderr)])
    print("\n".join(json.dumps(entry) for entry in transcript))  # the run, for the record
    assert code == 0, f"{transcript[-1:]} {errors}"
    return transcript


def steps(transcript: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["step"]: entry for entry in transcript if "step" in entry}


def requests_to(transcript: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [entry for entry in transcript if entry.get("http", "").startswith(prefix)]


@pytest.mark.parametrize("live", ["EdDSA"], indirect=True)  # the signing key is not the point
async def test_the_mcp_sdk_client_registers_signs_in_calls_refreshes_and_is_refused_elsewhere(
    node: str, live: Live
) -> None:
    await Registry(live.services).user(USER, PASSWORD, scopes=("tools.call",))
    async with example_mcp(live) as server, example_mcp(live) as other:
        transcript = await run_client(node, server, "--other", other)

    metadata_url = server.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    issuer = live.url
    # 1. The first call, without a token: 401 naming the RFC 9728 document.
    first = requests_to(transcript, f"POST {server}")[0]
    assert first["status"] == 401 and first["rpc"] == "initialize"
    assert first["challenge"] == f'Bearer resource_metadata="{metadata_url}"'
    # 2. RFC 9728, then RFC 8414 at the issuer it names.
    (document,) = requests_to(transcript, f"GET {metadata_url}")
    assert document["status"] == 200
    discovered = requests_to(transcript, f"GET {issuer}/.well-known/")
    assert discovered[0]["status"] == 200, discovered
    # 3. Registration (RFC 7591), public, for the scope the resource declares.
    (registered,) = requests_to(transcript, f"POST {issuer}/register")
    assert registered["status"] == 201, registered
    assert registered["registered"]["token_endpoint_auth_method"] == "none"
    assert registered["registered"]["client_id"].startswith("dcr_")
    assert registered["scope"] == "tools.call"
    # 4. The code flow with PKCE and `resource`; the user signed in and allowed the client.
    authorize = [s for s in transcript if s.get("step") == "authorize"]
    assert authorize[0]["provider"] == "primary"
    assert authorize[0]["resource"] == server and authorize[0]["scope"] == "tools.call"
    assert authorize[0]["code_challenge_method"] == "S256"
    assert authorize[0]["pages"] == ["/login", "/consent", "callback"]
    done = steps(transcript)
    assert done["callback"]["iss"] == issuer
    exchange, refresh = requests_to(transcript, f"POST {issuer}/token")
    assert exchange["status"] == 200 and exchange["grant_type"] == "authorization_code"
    assert exchange["resource"] == server
    assert exchange["answer"]["refresh_token"] is True
    assert exchange["answer"]["scope"] == "tools.call"
    assert exchange["answer"]["expires_in"] == 300  # the resource's own lifetime
    # 5. The tool, through the SDK's Streamable HTTP client, with the token.
    assert done["connected"]["server"] == "authserver-example-mcp"
    assert done["tools/list"]["tools"] == ["add"]
    calls = [s for s in transcript if s.get("step") == "tools/call add(2, 40)"]
    assert [call["result"] for call in calls] == ["42", "42"]
    # 6. The dropped token refused, the SDK refreshed for the same resource, no new sign-in.
    refused = [r for r in requests_to(transcript, f"POST {server}") if r["status"] == 401]
    assert refused[1]["challenge"] == (
        f'Bearer error="invalid_token", resource_metadata="{metadata_url}"'
    )
    assert refresh["status"] == 200 and refresh["grant_type"] == "refresh_token"
    assert refresh["resource"] == server
    assert done["refreshed"] == {
        "step": "refreshed",
        "tokens_saved": 1,
        "registrations": 1,
        "sign_ins": 1,
    }
    # 7. The same token at another MCP server (another resource): refused, and the SDK asks
    # for an authorization for that server's own resource instead.
    other_metadata = other.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    at_other = requests_to(transcript, f"POST {other}")
    assert at_other[0]["status"] == 401
    assert at_other[0]["challenge"] == (
        f'Bearer error="invalid_token", resource_metadata="{other_metadata}"'
    )
    assert done["other server"]["accepted"] is False
    assert done["other server"]["asked_for"] == [other]
    assert "done" in done


DOCUMENTS = {
    **INSECURE_COOKIES,
    "registration": "off",  # so /register cannot be what worked
    "client_id_metadata": "on",
    "client_id_metadata_allow_hosts": "localhost,127.0.0.1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("live", ["EdDSA"], indirect=True)
@pytest.mark.parametrize("live_overrides", [DOCUMENTS])
async def test_the_mcp_sdk_client_signs_in_through_a_client_id_metadata_document(
    node: str, live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await Registry(live.services).user(USER, PASSWORD, scopes=("tools.call",))
    # Node trusts nothing special: it only talks http to authserver and the MCP server.
    node_env = {name: value for name, value in os.environ.items() if name != "SSL_CERT_FILE"}
    port = free_port()
    callback = f"http://127.0.0.1:{port}/callback"
    with documents_server(tmp_path) as docs:
        monkeypatch.setenv("SSL_CERT_FILE", str(docs.ca_file))  # authserver's fetch trusts it
        url = docs.serve(
            "/mcp-client.json",
            {
                "client_id": docs.url("/mcp-client.json"),
                "client_name": CLIENT_NAME,
                "redirect_uris": [callback],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "scope": "tools.call",
            },
            Cache_Control="max-age=300",
        )
        async with example_mcp(live) as server:
            options = ("--client-id-url", url, "--callback-port", str(port))
            transcript = await run_client(node, server, *options, env=node_env)
        fetched = docs.hits["/mcp-client.json"]

    issuer = live.url
    discovered = requests_to(transcript, f"GET {issuer}/.well-known/")
    assert discovered[0]["status"] == 200, discovered
    # No registration: the SDK took the document's URL as its client_id.
    assert requests_to(transcript, f"POST {issuer}/register") == []
    authorize = [s for s in transcript if s.get("step") == "authorize"]
    asked = dict(parse_qsl(urlsplit(authorize[0]["url"]).query))
    assert asked["client_id"] == url and asked["redirect_uri"] == callback
    assert authorize[0]["resource"] == server and authorize[0]["scope"] == "tools.call"
    assert authorize[0]["code_challenge_method"] == "S256"
    assert authorize[0]["pages"] == ["/login", "/consent", "callback"]
    exchange, refresh = requests_to(transcript, f"POST {issuer}/token")
    assert exchange["status"] == 200 and exchange["grant_type"] == "authorization_code"
    assert exchange["client_id"] == url and exchange["resource"] == server
    assert exchange["answer"]["refresh_token"] is True
    assert exchange["answer"]["scope"] == "tools.call"
    calls = [s for s in transcript if s.get("step") == "tools/call add(2, 40)"]
    assert [call["result"] for call in calls] == ["42", "42"]
    assert refresh["status"] == 200 and refresh["grant_type"] == "refresh_token"
    assert refresh["client_id"] == url and refresh["resource"] == server
    assert steps(transcript)["refreshed"]["tokens_saved"] == 1
    assert steps(transcript)["refreshed"]["sign_ins"] == 1
    # authserver fetched the document once (max-age=300) and keeps it as a document client.
    assert fetched == 1
    stored = await live.services.clients.fresh(url)
    assert stored is not None and stored.registration == "document" and stored.is_public
