"""The admin console (API.md, "Admin console"): signed in through the server's own code flow
(a backend-for-frontend: no token reaches the browser), the admin role required, every form
CSRF-bound to the console session, every change audited with the operator's sub through the
admin API's use cases, everything a user or operator typed escaped, strict headers."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import ISSUER, Registry
from tests.http.signin import INSECURE_COOKIES, PASSWORD, assert_strict_headers, sign_in

HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
COOKIE = "authserver_console"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def console_sign_in(
    http: httpx.AsyncClient, username: str = "root", password: str = PASSWORD
) -> httpx.Response:
    """/console without a session → its sign-in → /authorize → the sign-in page → back to the
    callback → the console. The last answer (the console's page, or a refusal)."""
    first = await http.get("/console/clients")
    assert first.status_code == 303 and first.headers["location"] == "/console/sign-in"
    start = await http.get("/console/sign-in")
    assert start.status_code == 303, start.text
    assert start.headers["location"].startswith(f"{ISSUER}/authorize?")
    authorize = await http.get(start.headers["location"])
    assert authorize.status_code == 302, authorize.text
    login_url = authorize.headers["location"]
    if login_url.startswith(f"{ISSUER}/login"):
        signed = await sign_in(http, login_url, username, password)
        assert signed.status_code == 303, signed.text
        login_url = signed.headers["location"]
    assert login_url.startswith(f"{ISSUER}/console/callback?"), login_url
    back = await http.get(login_url)
    if back.status_code != 303:
        return back
    return await http.get(back.headers["location"])


@pytest.fixture
async def root(registry: Registry) -> str:
    return await registry.user("root", PASSWORD, admin=True)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def test_an_admin_signs_in_through_the_code_flow_and_no_token_reaches_the_browser(
    client: httpx.AsyncClient, root: str, engine: AsyncEngine
) -> None:
    page = await console_sign_in(client)
    assert page.status_code == 200, page.text
    assert "Clients" in page.text and "root" in page.text
    assert_strict_headers(page)
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    # The browser holds the console cookie and the login session's; no token of any kind.
    for cookie in client.cookies.jar:
        assert (cookie.value or "").count(".") < 2, cookie.name  # no JWT
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id_hash, sub, sealed FROM console_sessions"))).all()
    assert [row.sub for row in rows] == [root]
    held = client.cookies[COOKIE]
    assert rows[0].id_hash != held and held.encode() not in bytes(rows[0].sealed)
    assert b"eyJ" not in bytes(rows[0].sealed)  # sealed, not a JWT in the clear
