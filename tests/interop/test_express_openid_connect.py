"""Interop: `express-openid-connect` (Auth0's Express middleware, npm, pinned in package.json),
written by nobody here, signs a user in against a live server over real HTTP, and its app
greets the user by name. The app is tests/interop/express_app.mjs, run by Node on a free
loopback port; the browser (an HTTP client with its own cookie jar) goes to the app's /login,
through the hosted sign-in page, back to the app's /callback, and reads the app's page.

The library keeps its defaults (scope `openid profile email`, `client_secret_basic`, PKCE S256,
nonce and state in its own transaction cookie, the ID token's claims as `req.oidc.user`) but
one: `response_type: "code"`, its default `id_token` (implicit, `form_post`) being a response
type authserver does not offer. With the EdDSA key, `idTokenSigningAlg: "EdDSA"` too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from tests._smtp import unused_port
from tests.http.test_verify_live import Live
from tests.interop.browser import INSECURE_COOKIES, new_browser
from tests.interop.web_app import EMAIL, NAME, register_web_app, sign_in_at

HERE = Path(__file__).parent
APP = "express-app"


@pytest.fixture
def live_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def _started(process: Process) -> None:
    """Waits for the app's "listening" line; fails with its stderr if it ends first."""
    assert process.stdout is not None and process.stderr is not None
    seen = ""
    with anyio.fail_after(30):
        async for text in TextReceiveStream(process.stdout):
            seen += text
            if "listening" in seen:
                return
    errors = "".join([text async for text in TextReceiveStream(process.stderr)])
    raise AssertionError(f"the Express app did not start: {seen}{errors}")


@asynccontextmanager
async def express_app(
    node: str, live: Live, port: int, secret: str, *, defaults: bool = False
) -> AsyncIterator[str]:
    """express_app.mjs serving on 127.0.0.1:`port` for the client APP; yields its base URL.
    With `defaults`, the library's default response_type too."""
    base = f"http://127.0.0.1:{port}"
    fields = {
        "issuer": live.url,
        "base_url": base,
        "port": port,
        "client_id": APP,
        "client_secret": secret,
        "alg": live.settings.signing_alg,
        "defaults": defaults,
    }
    argv = [node, str(HERE / "express_app.mjs"), json.dumps(fields)]
    async with await anyio.open_process(argv, cwd=HERE) as process:
        try:
            await _started(process)
            yield base
        finally:
            process.terminate()
            with anyio.fail_after(10):
                await process.wait()


async def _registered(live: Live) -> tuple[int, str]:
    """Alice and the client APP (web_app.register_web_app) on a free port: (port, secret)."""
    port = unused_port()
    return port, await register_web_app(live, APP, f"http://127.0.0.1:{port}")


async def test_express_openid_connect_greets_the_user_by_name(node: str, live: Live) -> None:
    port, secret = await _registered(live)

    async with express_app(node, live, port, secret) as app, new_browser() as browser:
        signed_in = await sign_in_at(app, browser)
        userinfo = await browser.get(f"{app}/userinfo")

    before, back, page = signed_in.before, signed_in.back, signed_in.page
    assert before.text == "Signed out"
    assert signed_in.authorization_url.startswith(f"{live.url}/authorize?")
    sent = dict(parse_qsl(urlsplit(signed_in.authorization_url).query))
    assert sent["scope"] == "openid profile email"  # the library's default
    assert sent["response_type"] == "code" and sent["code_challenge_method"] == "S256"
    assert "nonce" in sent and "state" in sent
    # The library redeemed the code and checked the ID token, then sends the browser home.
    assert back.status_code == 302, back.text
    assert back.headers["location"] == app  # returnTo: the baseURL
    assert page.status_code == 200, page.text
    assert page.text == f"Hello, {NAME} <{EMAIL}>"
    # The same claims from the userinfo endpoint, through the library (which checks its `sub`).
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json() == {
        "sub": userinfo.json()["sub"],
        "preferred_username": "alice",
        "name": NAME,
        "email": EMAIL,
        "email_verified": True,
    }


async def test_express_openid_connect_defaults_ask_for_a_response_type_we_refuse(
    node: str, live: Live
) -> None:
    """Why the app sets response_type: the library's default, `id_token` with response_mode
    `form_post`, is answered `unsupported_response_type` (we offer `code` alone, and say so in
    discovery), at the redirect URI in the query (`response_modes_supported: ["query"]`), with
    `state` and `iss`. The library, waiting for a form post, reads no error there."""
    port, secret = await _registered(live)

    app_with_defaults = express_app(node, live, port, secret, defaults=True)
    async with app_with_defaults as app, new_browser() as browser:
        login = await browser.get(f"{app}/login")
        answer = await browser.get(login.headers["location"])
        back = await browser.get(answer.headers["location"])

    sent = dict(parse_qsl(urlsplit(login.headers["location"]).query))
    assert sent["response_type"] == "id_token" and sent["response_mode"] == "form_post"
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(f"{app}/callback?"), location
    got = dict(parse_qsl(urlsplit(location).query))
    assert got["error"] == "unsupported_response_type"
    assert got["state"] == sent["state"] and got["iss"] == live.url
    assert back.status_code == 400 and back.text.startswith("refused: "), back.text
