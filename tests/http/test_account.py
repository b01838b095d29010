"""The account page GET /account and its forms (API.md, "The account page"): signed in by the
login session, back after the sign-in, the user's sessions listed and ended one by one (only
their own), a password change that asks the current one and ends every other session, strict
headers, CSRF, escaping, German."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.services import Services
from tests.conftest import ISSUER, Registry
from tests.http.signin import (
    INSECURE_COOKIES,
    PASSWORD,
    WEB,
    Flow,
    assert_strict_headers,
    code_for,
    csrf_token,
    exchange,
    web_client,
    without_our_script,
)

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry) -> str:
    await web_client(registry, client_name="Photo <b>Album</b>")
    return await registry.user("alice", PASSWORD, scopes=("profile",))


@pytest.fixture
async def other_browser(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=ISSUER, headers={"User-Agent": "Other Browser/2"}
    ) as http:
        yield http


async def open_account(
    http: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD
) -> httpx.Response:
    """/account without a session: the sign-in page, then back to /account."""
    first = await http.get("/account")
    assert first.status_code == 303, first.text
    login = first.headers["location"]
    assert login == "/login?then=account"
    page = await http.get(login)
    assert page.status_code == 200 and "<form" in page.text, page.text
    form = {"csrf_token": csrf_token(page.text), "username": username, "password": password}
    signed_in = await http.post(login, data=form)
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == "/account"
    account = await http.get("/account")
    assert account.status_code == 200, account.text
    return account


async def app_refresh_token(http: httpx.AsyncClient) -> str:
    """A refresh family of the web client, started through this browser's sign-in."""
    flow = Flow.new(WEB, scope="openid profile")
    code = await code_for(http, flow)
    tokens = await exchange(http, code, flow)
    assert tokens.status_code == 200, tokens.text
    token: str = tokens.json()["refresh_token"]
    return token


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    fields = {"grant_type": "refresh_token", "refresh_token": token, "client_id": WEB}
    return await http.post("/token", data=fields)


def end_buttons(html: str) -> dict[str, list[str]]:
    """The ids the page's End buttons post, by kind."""
    found: dict[str, list[str]] = {"browser": [], "app": []}
    for kind, ident in re.findall(
        r'name="kind" value="(\w+)">\s*<input type="hidden" name="id" value="([^"]+)"', html
    ):
        found[kind].append(unescape(ident))
    return found


async def live_login_sessions(engine: AsyncEngine, sub: str) -> int:
    async with engine.connect() as conn:
        query = "SELECT count(*) FROM login_sessions WHERE user_id = :u AND revoked_at IS NULL"
        return int((await conn.execute(text(query), {"u": sub})).scalar_one())


async def test_no_session_signs_in_and_comes_back_to_the_page(
    client: httpx.AsyncClient, alice: str
) -> None:
    page = await open_account(client)

    assert_strict_headers(page)
    html = page.text
    assert '<html lang="en">' in html and "<script" not in without_our_script(html)
    assert "Signed in as <strong>alice</strong>" in html
    assert "(this browser)" in html and "No apps yet" in html
    assert 'action="/account/password"' in html and 'autocomplete="current-password"' in html
    assert 'action="/account/sign-out-everywhere"' in html
    assert len(end_buttons(html)["browser"]) == 1


async def test_the_return_is_only_to_our_own_page(client: httpx.AsyncClient, alice: str) -> None:
    for then in ("https://evil.example/", "//evil.example", "/account/../x", "Account"):
        page = await client.get("/login", params={"then": then})
        assert page.status_code == 400, (then, page.text)
    page = await client.get("/login?then=account")
    form = {"csrf_token": csrf_token(page.text), "username": "alice", "password": PASSWORD}
    # Another parameter next to it is an authorization request, not a return.
    signed_in = await client.post("/login?then=account&x=1", data=form)
    assert signed_in.status_code == 400
    bare = await client.post("/login", data=form)
    assert bare.status_code == 200 and "You are signed in" in bare.text


async def test_a_disabled_users_session_is_not_live(
    client: httpx.AsyncClient, alice: str, engine: AsyncEngine
) -> None:
    await open_account(client)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET disabled = true WHERE id = :u"), {"u": alice})

    again = await client.get("/account")

    assert again.status_code == 303 and again.headers["location"] == "/login?then=account"


async def test_a_wrong_current_password_is_refused_and_counts_toward_the_throttle(
    client: httpx.AsyncClient, alice: str
) -> None:
    html = (await open_account(client)).text
    statuses = []
    for _ in range(7):
        fields = {
            "csrf_token": csrf_token(html),
            "current_password": "wrong horse",
            "new_password": NEW_PASSWORD,
        }
        answer = await client.post("/account/password", data=fields)
        statuses.append(answer.status_code)
        assert_strict_headers(answer)
    assert statuses == [400] * 6 + [429], statuses
    assert "Retry-After" in answer.headers
    # The sign-in's own budget: the right password on the sign-in page waits too.
    page = await client.get("/login")
    form = {"csrf_token": csrf_token(page.text), "username": "alice", "password": PASSWORD}
    assert (await client.post("/login", data=form)).status_code == 429


async def test_a_wrong_current_password_says_so_and_changes_nothing(
    client: httpx.AsyncClient, alice: str, other_browser: httpx.AsyncClient
) -> None:
    html = (await open_account(client)).text
    fields = {
        "csrf_token": csrf_token(html),
        "current_password": "wrong horse",
        "new_password": NEW_PASSWORD,
    }
    answer = await client.post("/account/password", data=fields)
    assert answer.status_code == 400
    assert "The current password is wrong." in answer.text
    await open_account(other_browser)  # the old password still signs in


async def test_a_weak_new_password_is_refused(client: httpx.AsyncClient, alice: str) -> None:
    html = (await open_account(client)).text
    for weak, sentence in (
        ("short", "The password is shorter than"),
        ("alice", "The password is shorter than"),
        ("password1234", "commonly used"),
    ):
        fields = {"csrf_token": csrf_token(html), "current_password": PASSWORD}
        fields["new_password"] = weak
        answer = await client.post("/account/password", data=fields)
        assert answer.status_code == 400, weak
        assert sentence in answer.text, answer.text


async def test_a_changed_password_ends_every_other_session_and_keeps_this_one(
    client: httpx.AsyncClient,
    alice: str,
    other_browser: httpx.AsyncClient,
    engine: AsyncEngine,
) -> None:
    await open_account(other_browser)
    theirs = await app_refresh_token(other_browser)
    html = (await open_account(client)).text
    ours = await app_refresh_token(client)
    assert await live_login_sessions(engine, alice) == 2

    fields = {
        "csrf_token": csrf_token(html),
        "current_password": PASSWORD,
        "new_password": NEW_PASSWORD,
    }
    changed = await client.post("/account/password", data=fields)

    assert changed.status_code == 303 and changed.headers["location"] == "/account?done=password"
    assert (await refresh(other_browser, theirs)).json()["error"] == "invalid_grant"
    assert (await other_browser.get("/account")).status_code == 303
    assert await live_login_sessions(engine, alice) == 1
    # This browser stays signed in, with the apps it signed in.
    page = await client.get("/account?done=password")
    assert page.status_code == 200 and "Your password was changed." in page.text
    assert (await refresh(client, ours)).status_code == 200
    async with engine.connect() as conn:
        query = "SELECT actor, detail FROM audit_events WHERE action = 'user.password_set'"
        events = (await conn.execute(text(query))).all()
    assert [(e.actor, e.detail) for e in events] == [(alice, '{"via": "account_page"}')]
    third = httpx.AsyncClient(transport=client._transport, base_url=ISSUER)
    async with third:
        await open_account(third, password=NEW_PASSWORD)


async def test_ending_a_session_by_its_button_kills_that_apps_refresh(
    client: httpx.AsyncClient, alice: str, other_browser: httpx.AsyncClient
) -> None:
    await open_account(other_browser)
    theirs = await app_refresh_token(other_browser)
    html = (await open_account(client)).text
    apps = end_buttons(html)["app"]
    assert len(apps) == 1
    assert "Photo &lt;b&gt;Album&lt;/b&gt;" in html and "Other Browser/2" in html

    ended = await client.post(
        "/account/sessions/end",
        data={"csrf_token": csrf_token(html), "kind": "app", "id": apps[0]},
    )

    assert ended.status_code == 303 and ended.headers["location"] == "/account?done=ended"
    assert (await refresh(other_browser, theirs)).json()["error"] == "invalid_grant"
    # The other browser's sign-in, ended by its own button: it is signed out.
    html = (await client.get("/account")).text
    items = [item for item in html.split("<li>") if 'value="browser"' in item]
    others = [end_buttons(item)["browser"][0] for item in items if "(this browser)" not in item]
    assert len(items) == 2 and len(others) == 1
    fields = {"csrf_token": csrf_token(html), "kind": "browser", "id": others[0]}
    ended = await client.post("/account/sessions/end", data=fields)
    assert ended.status_code == 303 and ended.headers["location"] == "/account?done=ended"
    assert (await other_browser.get("/account")).status_code == 303
    assert (await client.get("/account")).status_code == 200


async def test_another_users_session_is_not_found(
    client: httpx.AsyncClient, alice: str, registry: Registry, other_browser: httpx.AsyncClient
) -> None:
    await registry.user("bob", PASSWORD)
    bobs_page = (await open_account(other_browser, "bob")).text
    await app_refresh_token(other_browser)
    bobs = end_buttons((await other_browser.get("/account")).text)
    html = (await open_account(client)).text

    for kind, ident in [
        ("browser", end_buttons(bobs_page)["browser"][0]),
        ("app", bobs["app"][0]),
        ("app", "00000000-0000-4000-8000-000000000000"),
        ("browser", "nonsense"),
        ("other", "x"),
    ]:
        fields = {"csrf_token": csrf_token(html), "kind": kind, "id": ident}
        answer = await client.post("/account/sessions/end", data=fields)
        assert answer.status_code == 404, (kind, ident)
        assert_strict_headers(answer)
    assert (await other_browser.get("/account")).status_code == 200
    assert end_buttons((await other_browser.get("/account")).text)["app"] == bobs["app"]


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        ("/account/sessions/end", {"kind": "browser", "id": "x"}),
        ("/account/sign-out-everywhere", {}),
    ],
)
async def test_every_form_needs_the_browsers_csrf_token(
    client: httpx.AsyncClient,
    alice: str,
    other_browser: httpx.AsyncClient,
    path: str,
    fields: dict[str, str],
) -> None:
    html = (await open_account(client)).text
    foreign = csrf_token((await open_account(other_browser)).text)

    missing = await client.post(path, data=fields)
    theirs = await client.post(path, data={**fields, "csrf_token": foreign})
    cross_site = await client.post(
        path,
        data={**fields, "csrf_token": csrf_token(html)},
        headers={"Origin": "https://evil.example"},
    )

    for answer in (missing, theirs, cross_site):
        assert answer.status_code == 403, answer.text
        assert_strict_headers(answer)
    assert (await client.get("/account")).status_code == 200  # nothing was ended


async def test_sign_out_everywhere_ends_every_session(
    client: httpx.AsyncClient, alice: str, other_browser: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await open_account(other_browser)
    theirs = await app_refresh_token(other_browser)
    html = (await open_account(client)).text

    answer = await client.post(
        "/account/sign-out-everywhere", data={"csrf_token": csrf_token(html)}
    )

    assert answer.status_code == 200 and "You are signed out" in answer.text
    assert (await refresh(other_browser, theirs)).json()["error"] == "invalid_grant"
    assert await live_login_sessions(engine, alice) == 0
    assert (await client.get("/account")).status_code == 303


async def test_hostile_values_are_escaped(
    client: httpx.AsyncClient, registry: Registry, other_browser: httpx.AsyncClient
) -> None:
    hostile = "<script>alert(1)</script>"
    await web_client(registry, client_name=f"{hostile}\"'")
    await registry.user(f"eve{hostile}", PASSWORD)
    client.headers["User-Agent"] = f'Evil"><img src=x onerror=alert(1)>{hostile}'
    await open_account(client, f"eve{hostile}")
    await app_refresh_token_as(client, f"eve{hostile}")

    html = (await client.get("/account")).text

    assert "<script" not in without_our_script(html) and "<img" not in html
    assert "eve&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Evil&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


async def app_refresh_token_as(http: httpx.AsyncClient, username: str) -> None:
    flow = Flow.new(WEB, scope="openid")
    code = await code_for(http, flow, username)
    assert (await exchange(http, code, flow)).status_code == 200


async def test_the_page_speaks_german(client: httpx.AsyncClient, alice: str) -> None:
    await open_account(client)

    page = await client.get("/account", headers={"Accept-Language": "de"})

    assert page.status_code == 200
    assert '<html lang="de">' in page.text
    assert "Ihr Konto" in page.text and "Passwort ändern" in page.text
    assert "(dieser Browser)" in page.text and "Noch keine Apps" in page.text
    fields = {"csrf_token": csrf_token(page.text), "current_password": PASSWORD}
    weak = await client.post(
        "/account/password",
        data={**fields, "new_password": "kurz"},
        headers={"Accept-Language": "de"},
    )
    assert "Das Passwort ist kürzer als" in weak.text


async def test_a_malformed_form_is_answered_with_a_page(
    client: httpx.AsyncClient, alice: str
) -> None:
    html = (await open_account(client)).text
    token = csrf_token(html)

    repeated = await client.post(
        "/account/sessions/end",
        content=f"csrf_token={token}&kind=app&kind=browser&id=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    unsupported = await client.post(
        "/account/password", content=b"x", headers={"Content-Type": "text/plain"}
    )

    for answer, status in ((repeated, 400), (unsupported, 415)):
        assert answer.status_code == status, answer.text
        assert_strict_headers(answer)
        assert "<html" in answer.text


async def test_the_profile_shows_what_is_set_escaped(
    client: httpx.AsyncClient, alice: str, registry: Registry
) -> None:
    before = (await open_account(client)).text
    assert "Profile" not in before  # nothing set: no section
    await registry.profile(
        "alice", name="Alice <i>Liddell</i>", email="alice@example.test", roles=["editor"]
    )

    html = (await client.get("/account")).text

    assert "Alice &lt;i&gt;Liddell&lt;/i&gt;" in html and "<i>" not in html
    assert "alice@example.test (not verified)" in html and "editor" in html
    assert "Given name" not in html  # not set, not shown
    german = await client.get("/account", headers={"Accept-Language": "de"})
    assert "alice@example.test (nicht bestätigt)" in german.text and "Rollen" in german.text


async def test_a_change_over_a_hash_no_longer_current_changes_nothing(
    services: Services, alice: str
) -> None:
    """Two changes that both checked the same current password (two instances, say): the
    database lets the first one in and refuses the second, in the UPDATE itself."""
    user = await services.users.by_id(alice)
    assert user is not None
    checked = user.password_hash

    assert await services.users.set_password_hash(alice, "first", [], checked)
    assert not await services.users.set_password_hash(alice, "second", [], checked)

    now = await services.users.by_id(alice)
    assert now is not None and now.password_hash == "first"


async def test_a_browser_is_named_as_people_name_it_the_header_kept_on_hover(
    app: Starlette, alice: str
) -> None:
    chrome = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=ISSUER, headers={"User-Agent": chrome}
    ) as browser:
        page = await open_account(browser)
        german = await browser.get("/account", headers={"Accept-Language": "de"})
    assert f'<span title="{chrome}">Chrome on Linux</span>' in page.text
    assert "Chrome unter Linux" in german.text
