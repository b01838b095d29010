"""The hosted sign-in page GET|POST /login (API.md): HTML that works without JavaScript,
CSRF-protected, throttled and worded like the password grant, with strict headers."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.http.sign_in import WRONG_CREDENTIALS
from tests.conftest import ISSUER, Clock, Registry, make_settings
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    WEB,
    Flow,
    admin_headers,
    assert_strict_headers,
    authorize,
    browser_of,
    code_for,
    csrf_token,
    exchange,
    form_action,
    last_sign_in,
    query,
    sign_in,
    sign_out_form,
    web_client,
    without_our_script,
)


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry) -> str:
    return await registry.user("alice", "correct horse")


@pytest.fixture
async def login_url(client: httpx.AsyncClient, registry: Registry) -> str:
    await web_client(registry)
    response = await authorize(client, Flow.new(WEB).params)
    location: str = response.headers["location"]
    assert location.startswith(f"{ISSUER}/login?")
    return location


async def test_the_page_is_an_accessible_form_that_needs_no_javascript(
    client: httpx.AsyncClient, login_url: str
) -> None:
    page = await client.get(login_url)

    assert page.status_code == 200
    assert_strict_headers(page)
    html = page.text
    assert '<html lang="en">' in html
    assert "<script" not in without_our_script(html)  # only the passkeys' file of ours
    assert len(re.findall(r"<form ", html)) == 1 and '<form method="post"' in html
    assert '<label for="username">' in html and '<label for="password">' in html
    assert re.search(
        r'<input id="username" name="username" type="text" autocomplete="username"', html
    )
    assert re.search(r'name="password" type="password" autocomplete="current-password"', html)
    assert csrf_token(html)
    assert form_action(html) == login_url.removeprefix(ISSUER)
    assert "<strong>web</strong>" in html  # which application asks
    # The form's answer redirects to the client: its origin is a form-action target.
    assert "https://app.example" in page.headers["content-security-policy"]
    css = await client.get("/assets/signin.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in css.text


async def test_a_wrong_password_or_unknown_user_gets_one_sentence_as_the_password_grant_does(
    client: httpx.AsyncClient, alice: str, login_url: str
) -> None:
    for username, password in [("alice", "wrong horse"), ("nobody", "correct horse")]:
        response = await sign_in(client, login_url, username, password)
        assert response.status_code == 400
        assert_strict_headers(response)
        assert WRONG_CREDENTIALS in response.text
        assert 'role="alert"' in response.text and 'aria-invalid="true"' in response.text
        assert (
            "set-cookie" not in response.headers or "session" not in response.headers["set-cookie"]
        )


async def test_a_form_without_the_browsers_csrf_token_is_refused(
    client: httpx.AsyncClient, alice: str, login_url: str
) -> None:
    page = await client.get(login_url)
    token, action = csrf_token(page.text), form_action(page.text)
    fields = {"username": "alice", "password": "correct horse"}

    # Login CSRF: a page elsewhere posts the attacker's credentials, without our cookie ...
    client.cookies.clear()
    foreign = await client.post(action, data={**fields, "csrf_token": token})
    # ... or with a token of its own.
    page = await client.get(login_url)
    forged = await client.post(action, data={**fields, "csrf_token": "forged-" + token})
    missing = await client.post(action, data=fields)
    from_elsewhere = await client.post(
        action, data={**fields, "csrf_token": csrf_token(page.text)},
        headers={"Origin": "https://evil.example"},
    )  # fmt: skip

    for response in (foreign, forged, missing, from_elsewhere):
        assert response.status_code == 403, response.text
        assert_strict_headers(response)
        assert "authserver_session" not in response.headers.get("set-cookie", "")


async def test_throttling_shows_slow_down_as_a_page(
    client: httpx.AsyncClient, alice: str, login_url: str, engine: AsyncEngine
) -> None:
    statuses = [
        (await sign_in(client, login_url, "alice", "wrong horse")).status_code for _ in range(7)
    ]
    assert statuses[:6] == [400] * 6 and statuses[6] == 429
    blocked = await sign_in(client, login_url, "alice", "correct horse")
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    assert "Too many failed sign-ins" in blocked.text
    assert_strict_headers(blocked)
    async with engine.connect() as conn:
        sessions = (await conn.execute(text("SELECT count(*) FROM login_sessions"))).scalar()
    assert sessions == 0


async def test_a_disabled_user_cannot_sign_in(
    client: httpx.AsyncClient, alice: str, login_url: str, registry: Registry, spa: str
) -> None:
    root = await admin_headers(client, registry)
    assert (await client.post(f"/admin/users/{alice}/disable", headers=root)).status_code == 204
    response = await sign_in(client, login_url)
    assert response.status_code == 400
    assert WRONG_CREDENTIALS in response.text


async def test_a_bare_sign_in_starts_a_session_that_clients_then_use(
    client: httpx.AsyncClient, alice: str, registry: Registry
) -> None:
    response = await sign_in(client, "/login")
    assert response.status_code == 200
    assert "You are signed in" in response.text
    await web_client(registry)
    flow = Flow.new(WEB, prompt="none")
    answer = await authorize(client, flow.params)
    assert answer.headers["location"].startswith(CALLBACK + "?code=")


async def test_a_sign_in_on_the_page_is_the_users_last_sign_in(
    client: httpx.AsyncClient, alice: str, registry: Registry, spa: str, clock: Clock
) -> None:
    root = await admin_headers(client, registry)
    assert await last_sign_in(client, root, alice) is None
    async with httpx.AsyncClient(transport=client._transport, base_url=ISSUER) as other:
        assert (await sign_in(other, "/login")).status_code == 200
    assert await last_sign_in(client, root, alice) == clock()
    # A wrong password is no sign-in.
    clock.advance(60)
    async with httpx.AsyncClient(transport=client._transport, base_url=ISSUER) as other:
        assert (await sign_in(other, "/login", password="wrong horse")).status_code == 400
    assert await last_sign_in(client, root, alice) == clock() - 60


async def test_a_tampered_request_on_the_page_is_checked_again(
    client: httpx.AsyncClient, alice: str, login_url: str
) -> None:
    evil = login_url.replace("app.example%2Fcb", "evil.example%2Fcb")
    assert (await client.get(evil)).status_code == 400
    page = await client.get(login_url)
    response = await client.post(
        form_action(page.text).replace("app.example%2Fcb", "evil.example%2Fcb"),
        data={
            "csrf_token": csrf_token(page.text),
            "username": "alice",
            "password": "correct horse",
        },
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    plain = login_url.replace("code_challenge_method=S256", "code_challenge_method=plain")
    downgraded = await client.get(plain)
    assert downgraded.status_code == 302
    assert query(downgraded.headers["location"])["error"] == "invalid_request"


@pytest.mark.parametrize("settings_overrides", [{}])
async def test_the_cookies_are_host_only_secure_and_httponly(
    app: Starlette, registry: Registry, alice: str
) -> None:
    await web_client(registry)
    transport = httpx.ASGITransport(app=app)
    https = "https://authserver.test"
    async with httpx.AsyncClient(transport=transport, base_url=https) as browser:
        first = await authorize(browser, Flow.new(WEB).params)
        page = await browser.get(first.headers["location"])
        csrf_cookie = page.headers["set-cookie"]
        assert csrf_cookie.startswith("__Host-authserver_csrf=")
        assert {"Path=/", "HttpOnly", "Secure", "SameSite=Strict"} <= set(csrf_cookie.split("; "))
        form = {
            "csrf_token": csrf_token(page.text),
            "username": "alice",
            "password": "correct horse",
        }
        signed_in = await browser.post(form_action(page.text), data=form)
    assert signed_in.status_code == 303, signed_in.text
    # The sign-in renews the CSRF cookie too (see test_signing_in_renews_the_csrf_token).
    cookie = next(c for c in signed_in.headers.get_list("set-cookie") if "authserver_session=" in c)
    assert cookie.startswith("__Host-authserver_session=")
    flags = set(cookie.split("; ")[1:])
    assert {"Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age=86400"} <= flags
    assert not any(flag.lower().startswith("domain") for flag in flags)


async def test_templates_can_be_replaced(
    database_url: str, tmp_path: Path, engine: AsyncEngine, registry: Registry
) -> None:
    """AUTHSERVER_TEMPLATES_DIR: its files replace the built-in ones of the same name; the
    others are still found."""
    folder = tmp_path / "look"
    folder.mkdir()
    (folder / "signin.css").write_text("body { background: hotpink; }\n")
    (folder / "error.html").write_text("<!doctype html><h1>Acme: {{ description }}</h1>\n")
    settings = make_settings(
        database_url, tmp_path / "keys", templates_dir=str(folder), **INSECURE_COOKIES
    )
    await web_client(registry)
    async with browser_of(settings) as browser:
        css = await browser.get("/assets/signin.css")
        error = await authorize(browser, Flow.new("nobody").params)
        login = await browser.get(
            (await authorize(browser, Flow.new(WEB).params)).headers["location"]
        )
    assert css.text == "body { background: hotpink; }\n"
    assert error.status_code == 400 and error.text.startswith("<!doctype html><h1>Acme: ")
    assert_strict_headers(error)
    assert login.status_code == 200 and '<label for="password">' in login.text  # built-in


async def _live_sessions(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT user_id FROM login_sessions WHERE revoked_at IS NULL")
        )
        return [row.user_id for row in rows]


async def _signed_in_app(client: httpx.AsyncClient, username: str, **extra: str) -> dict[str, str]:
    """An app signs `username` in through the page (prompt=login forces the form again)."""
    flow = Flow.new(WEB, **extra)
    response = await exchange(client, await code_for(client, flow, username), flow)
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


async def _refreshes(client: httpx.AsyncClient, tokens: dict[str, str]) -> bool:
    response = await client.post(
        "/refresh", data={"client_id": WEB, "refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code in (200, 400), response.text
    return response.status_code == 200


async def _prompt_none_with(client: httpx.AsyncClient, cookie: str) -> str:
    """/authorize?prompt=none in a browser holding only this login-session cookie."""
    client.cookies.clear()
    response = await client.get(
        "/authorize",
        params=Flow.new(WEB, prompt="none").params,
        headers={"Cookie": f"authserver_session={cookie}"},
    )
    return query(response.headers["location"]).get("error", "code")


async def test_signing_in_again_as_the_same_user_replaces_the_login_session(
    client: httpx.AsyncClient, alice: str, registry: Registry, engine: AsyncEngine
) -> None:
    """The old session ends (its cookie signs nobody in any more); the apps it signed in stay
    signed in, now under the new session, so /end-session in this browser still ends them."""
    await web_client(registry)
    first = await _signed_in_app(client, "alice")
    old = client.cookies["authserver_session"]

    second = await _signed_in_app(client, "alice", prompt="login")

    new = client.cookies["authserver_session"]
    assert new != old
    assert await _live_sessions(engine) == [alice]
    assert await _prompt_none_with(client, old) == "login_required"
    assert await _prompt_none_with(client, new) == "code"
    # Signing out in the browser holding the new cookie (confirmed on the page) ends both apps.
    client.cookies.set("authserver_session", new)
    confirmed = await sign_out_form(client, client_id=WEB)
    ended = await client.post("/end-session", data=confirmed)
    assert "You are signed out" in ended.text, ended.text
    assert not await _refreshes(client, first)
    assert not await _refreshes(client, second)


async def test_signing_in_as_another_user_ends_the_previous_users_sign_in(
    client: httpx.AsyncClient, alice: str, registry: Registry, engine: AsyncEngine
) -> None:
    """A shared browser: the previous user's login session ends as /end-session would end it,
    with every family it started, so nothing of theirs stays signed in behind the new user."""
    bob = await registry.user("bob", "correct horse")
    await web_client(registry)
    first = await _signed_in_app(client, "alice")
    old = client.cookies["authserver_session"]

    second = await _signed_in_app(client, "bob", prompt="login")

    assert await _live_sessions(engine) == [bob]
    assert await _prompt_none_with(client, old) == "login_required"
    assert not await _refreshes(client, first)
    assert await _refreshes(client, second)
    async with engine.connect() as conn:
        events = await conn.execute(text("SELECT action, user_id FROM audit_events"))
        assert ("end_session", alice) in {tuple(row) for row in events}


async def test_a_planted_csrf_cookie_is_not_adopted(
    client: httpx.AsyncClient, alice: str, login_url: str
) -> None:
    # Without __Host- (plain-http development) a sibling host can set our cookies: a value it
    # made up must not become the token its page then posts.
    planted = "planted-by-a-sibling-host-0123456789abcdef"
    client.cookies.set("authserver_csrf", planted)

    page = await client.get(login_url)

    assert csrf_token(page.text) != planted
    assert page.headers["set-cookie"].startswith(f"authserver_csrf={csrf_token(page.text)};")
    client.cookies.clear()
    client.cookies.set("authserver_csrf", planted)
    fields = {"username": "alice", "password": "correct horse", "csrf_token": planted}
    refused = await client.post(form_action(page.text), data=fields)
    assert refused.status_code == 403, refused.text
    assert "authserver_session" not in refused.headers.get("set-cookie", "")


async def test_signing_in_renews_the_csrf_token(
    client: httpx.AsyncClient, alice: str, login_url: str
) -> None:
    page = await client.get(login_url)
    before = csrf_token(page.text)

    response = await sign_in(client, login_url)

    assert response.status_code == 303, response.text
    after = client.cookies["authserver_csrf"]
    assert after != before
    # The token known before the sign-in no longer confirms anything after it.
    fields = await sign_out_form(client)
    assert fields["csrf_token"] == after
    client.cookies.delete("authserver_csrf")
    client.cookies.set("authserver_csrf", before)
    stale = await client.post("/end-session", data={**fields, "csrf_token": before})
    assert stale.status_code == 403, stale.text


class TestBehindAProxy:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        return {**INSECURE_COOKIES, "trusted_proxies": "127.0.0.1"}

    async def test_a_guesser_blocked_at_one_address_does_not_lock_the_owner_out(
        self, client: httpx.AsyncClient, alice: str, login_url: str
    ) -> None:
        client.headers["X-Forwarded-For"] = "203.0.113.7"
        for _ in range(6):
            assert (await sign_in(client, login_url, "alice", "wrong horse")).status_code == 400
        assert (await sign_in(client, login_url, "alice", "correct horse")).status_code == 429
        client.headers["X-Forwarded-For"] = "2001:db8:77::1"  # the owner, elsewhere
        response = await sign_in(client, login_url, "alice", "correct horse")
        assert response.status_code == 303, response.text
