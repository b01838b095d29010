"""CORS at /token and /revoke for a public client's own page on an origin nobody listed (a
browser client that registered itself): by name, without credentials, once the request names
the client; never the refresh cookie. Listed origins keep their credentialed answers
(tests/http/test_cors.py), and no other path changes. In a real browser:
tests/e2e/test_mcp_cors_chromium.py."""

from __future__ import annotations

from collections.abc import Awaitable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.clients import ClientChanges, origin_of
from tests._https_documents import DocumentsServer
from tests._refresh_rows import spent_at
from tests.conftest import Registry
from tests.http.signin import INSECURE_COOKIES, Flow, code_for, exchange
from tests.http.test_client_id_documents import docs, document
from tests.http.test_client_origins import refresh_cookie
from tests.http.test_cookies import browser_login, sent
from tests.http.test_cors import preflight_headers, varies_on_origin

APP = "https://app.example"  # AUTHSERVER_ALLOWED_ORIGINS
TOOL = "https://tool.example:8443"  # the public client's page, listed nowhere
OTHER = "https://other.example"


__all__ = ["docs"]  # a fixture, imported for its use here


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {"allowed_origins": APP}


@pytest.fixture
async def tool(registry: Registry) -> str:
    """A public client whose code comes back to a page on TOOL."""
    await registry.user()
    await registry.client(
        "tool",
        public=True,
        grant_types=("password", "refresh_token"),
        redirect_uris=(TOOL + "/callback", "com.example.tool:/cb"),
    )
    return "tool"


def login(http: httpx.AsyncClient, client_id: str, origin: str) -> Awaitable[httpx.Response]:
    data = {
        "grant_type": "password",
        "username": "alice",
        "password": "correct horse",
        "client_id": client_id,
    }
    return http.post("/token", data=data, headers={"Origin": origin})


def granted_without_credentials(response: httpx.Response, origin: str) -> None:
    assert response.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-credentials" not in response.headers
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"Retry-After", "DPoP-Nonce", "Date"} <= exposed
    assert varies_on_origin(response)


def not_granted(response: httpx.Response) -> None:
    # (Allow-Credentials without Allow-Origin, as ever for an origin not allowed, allows
    # nothing: the browser refuses the page the answer.)
    assert "access-control-allow-origin" not in response.headers
    assert varies_on_origin(response)


@pytest.mark.parametrize("path", ["/token", "/revoke"])
@pytest.mark.parametrize("origin", [TOOL, OTHER])
async def test_the_preflight_names_no_client_so_any_web_origin_may_ask_without_credentials(
    client: httpx.AsyncClient, path: str, origin: str
) -> None:
    response = await client.options(
        path, headers=preflight_headers(origin, headers="content-type, dpop")
    )
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["access-control-allow-methods"] == "POST"
    assert response.headers["access-control-allow-headers"] == "Content-Type, DPoP"
    assert varies_on_origin(response)


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        (TOOL, "POST", "authorization, content-type"),  # a secret has no place in a page
        (TOOL, "GET", None),
        (TOOL, "POST", "x-custom"),
        ("null", "POST", "content-type"),
        ("file://", "POST", "content-type"),
    ],
)
async def test_a_preflight_for_more_is_refused(
    client: httpx.AsyncClient, origin: str, method: str, headers: str | None
) -> None:
    response = await client.options(
        "/token", headers=preflight_headers(origin, method=method, headers=headers)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    not_granted(response)


async def test_a_public_clients_page_reads_its_tokens_refreshes_and_revokes(
    client: httpx.AsyncClient, tool: str
) -> None:
    logged_in = await login(client, tool, TOOL)
    assert logged_in.status_code == 200, logged_in.text
    granted_without_credentials(logged_in, TOOL)
    refreshed = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": logged_in.json()["refresh_token"],
            "client_id": tool,
        },
        headers={"Origin": TOOL},
    )
    assert refreshed.status_code == 200, refreshed.text
    granted_without_credentials(refreshed, TOOL)
    # A JSON body names its client as well.
    wrong = await client.post(
        "/token",
        json={"grant_type": "refresh_token", "refresh_token": "x", "client_id": tool},
        headers={"Origin": TOOL},
    )
    assert wrong.status_code == 400  # its error is the page's to read too
    granted_without_credentials(wrong, TOOL)
    revoked = await client.post(
        "/revoke",
        data={"token": refreshed.json()["refresh_token"], "client_id": tool},
        headers={"Origin": TOOL},
    )
    assert revoked.status_code == 200, revoked.text
    granted_without_credentials(revoked, TOOL)


async def test_another_origin_or_no_client_or_a_bad_body_gets_no_cors(
    client: httpx.AsyncClient, tool: str
) -> None:
    other = await login(client, tool, OTHER)
    assert other.status_code == 200  # not refused: a page just cannot read it
    not_granted(other)
    for data in ({"grant_type": "password"}, {"client_id": "nobody"}, {"client_id": ""}):
        not_granted(await client.post("/token", data=data, headers={"Origin": TOOL}))
    malformed = await client.post(
        "/token",
        content=b"client_id=tool&client_id=tool",
        headers={"Origin": TOOL, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert malformed.status_code == 400
    not_granted(malformed)
    too_long = await client.post(
        "/token", data={"client_id": tool, "pad": "x" * 17_000}, headers={"Origin": TOOL}
    )
    assert too_long.status_code == 413
    not_granted(too_long)


async def test_a_confidential_clients_origin_gets_none(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    secret = await registry.client("backend", redirect_uris=(TOOL + "/callback",))
    assert secret is not None
    response = await client.post(
        "/token",
        data={"grant_type": "client_credentials", "client_id": "backend", "client_secret": secret},
        headers={"Origin": TOOL},
    )
    assert response.status_code == 200, response.text
    not_granted(response)


async def test_a_disabled_public_clients_origin_gets_none(
    client: httpx.AsyncClient, registry: Registry, tool: str
) -> None:
    def revoke() -> Awaitable[httpx.Response]:
        data = {"token": "x", "client_id": tool}
        return client.post("/revoke", data=data, headers={"Origin": TOOL})

    granted_without_credentials(await revoke(), TOOL)
    services = registry.services
    await services.clients.update(tool, ClientChanges(disabled=True), services.clock(), [])
    not_granted(await revoke())


async def test_the_refresh_cookie_is_never_read_from_a_clients_page(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    """A public cookie client whose redirect URI is on TOOL: a request from TOOL carrying its
    cookie (a page may send it with `credentials: "include"`) is refused before anything is
    rotated, at /token and at /refresh, and no answer there carries credentials."""
    await registry.user()
    await registry.client(
        "browser",
        public=True,
        grant_types=("password", "refresh_token"),
        refresh_delivery="cookie",
        redirect_uris=(TOOL + "/callback",),
    )
    logged_in = await browser_login(client, APP, "browser")
    assert logged_in.status_code == 200, logged_in.text
    cookie = refresh_cookie(logged_in)
    client.cookies.clear()
    for path in ("/token", "/refresh"):
        refused = await client.post(
            path,
            data={"grant_type": "refresh_token", "client_id": "browser"},
            headers=sent(cookie, TOOL),
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "invalid_request"
        assert "set-cookie" not in refused.headers
        if path == "/token":  # the client's page may read why, never with credentials
            granted_without_credentials(refused, TOOL)
        else:
            not_granted(refused)
    assert await spent_at(engine, cookie) is None
    # Its password login (or code exchange) would set the cookie: from TOOL, refused as before.
    again = await browser_login(client, TOOL, "browser")
    assert again.status_code == 403
    assert "set-cookie" not in again.headers
    granted_without_credentials(again, TOOL)


async def test_a_listed_origin_keeps_its_credentialed_answer(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await registry.user()
    await registry.client(
        "spa", public=True, grant_types=("password",), redirect_uris=(APP + "/callback",)
    )
    response = await login(client, "spa", APP)
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    preflight = await client.options("/token", headers=preflight_headers(APP))
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("OPTIONS", "/refresh"),
        ("OPTIONS", "/logout"),
        ("OPTIONS", "/userinfo"),
        ("GET", "/account"),
    ],
)
async def test_other_paths_are_unaffected(
    client: httpx.AsyncClient, tool: str, method: str, path: str
) -> None:
    headers = preflight_headers(TOOL) if method == "OPTIONS" else {"Origin": TOOL}
    response = await client.request(method, path, headers=headers)
    if method == "OPTIONS":
        assert response.status_code == 400
    not_granted(response)


class TestAClientIdMetadataDocument:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        # Documents from the test's https server; the sign-in's cookies over http (httpx).
        on = {"client_id_metadata": "on", "client_id_metadata_allow_hosts": "localhost"}
        return {**INSECURE_COOKIES, **on, "allowed_origins": APP}

    async def test_its_page_exchanges_its_code(
        self, client: httpx.AsyncClient, registry: Registry, docs: DocumentsServer
    ) -> None:
        """The client a document names is stored by the /authorize that gave it its code; its
        page (a redirect URI's origin, listed nowhere) reads the exchange without credentials."""
        await registry.user()
        url = docs.serve(
            "/notes.json", document(docs.url("/notes.json"), redirect_uris=[TOOL + "/cb"])
        )
        flow = Flow.new(url, scope="openid", redirect_uri=TOOL + "/cb")
        code = await code_for(client, flow, consent=True)
        client.headers["Origin"] = TOOL
        exchanged = await exchange(client, code, flow)
        assert exchanged.status_code == 200, exchanged.text
        granted_without_credentials(exchanged, TOOL)
        client.headers["Origin"] = OTHER
        again = await exchange(client, code, flow)  # used: invalid_grant, and not for OTHER
        assert again.status_code == 400
        not_granted(again)


@pytest.mark.parametrize(
    ("uri", "origin"),
    [
        ("https://tool.example/callback?x=1", "https://tool.example"),
        ("https://Tool.Example:443/cb", "https://tool.example"),  # no default port
        ("https://tool.example:8443/cb", "https://tool.example:8443"),
        ("http://localhost:5173/cb", "http://localhost:5173"),
        ("http://[::1]:80/cb", "http://[::1]"),
        ("com.example.tool:/cb", None),  # a native app's: no page has it
        ("https://tool.example:99999/cb", None),
        ("https:///cb", None),
    ],
)
def test_a_redirect_uris_origin_is_what_a_browser_sends(uri: str, origin: str | None) -> None:
    assert origin_of(uri) == origin
