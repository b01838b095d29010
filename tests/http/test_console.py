"""The admin console (API.md, "Admin console"): signed in through the server's own code flow
(a backend-for-frontend: no token reaches the browser), the admin role required, every form
CSRF-bound to the console session, every change audited with the operator's sub through the
admin API's use cases, everything a user or operator typed escaped, strict headers."""

from __future__ import annotations

import re
import uuid
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pyotp
import pytest
from markupsafe import escape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.accounts.second_factors import STEP_SECONDS, new_totp_secret, seal_totp
from authserver.actions.admin import users as admin_users
from authserver.actions.console import unseal
from authserver.actions.console.operator import RECENT_SIGN_IN
from authserver.actions.console.sign_in import landing
from authserver.audit import AuditQuery
from authserver.clients import hash_secret
from authserver.console_sessions import CONSOLE_CLIENT_ID
from authserver.db.accounts import users_page
from authserver.services import Services
from tests._smtp import SmtpServer
from tests.conftest import ISSUER, Clock, Registry, make_settings
from tests.http.mailbox import link_in, mail_on, next_mail
from tests.http.signin import (
    INSECURE_COOKIES,
    PASSWORD,
    Flow,
    assert_strict_headers,
    authorize,
    browser_of,
    code_for,
    exchange,
    form_action,
    hidden_fields,
    sign_in,
    web_client,
)

HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
COOKIE = "authserver_console"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, str]:
    """Mail on (over the `smtp` server) for the tests that ask for that server."""
    if "smtp" not in request.fixturenames:
        return INSECURE_COOKIES
    return {**INSECURE_COOKIES, **mail_on(request.getfixturevalue("smtp"))}


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
    # Its own client is listed, without the forms that would switch the console off.
    assert "<code>authserver-console</code>" in page.text
    assert 'value="authserver-console"' not in page.text
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


async def test_the_console_cookie_is_httponly_lax_and_secure_over_https(
    database_url: str, tmp_path: Path, engine: AsyncEngine
) -> None:
    settings = make_settings(database_url, tmp_path / "keys")  # cookie_secure: the default
    async with browser_of(settings) as http:
        start = await http.get("/console/sign-in")
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("__Host-authserver_console=")
    assert {"HttpOnly", "Secure", "SameSite=Lax", "Path=/"} <= set(cookie.split("; "))


async def test_a_non_admin_is_refused_with_a_clear_page(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.user("alice", PASSWORD)
    page = await console_sign_in(client, "alice")
    assert page.status_code == 403
    assert "may not use the console" in page.text and "admin role" in page.text
    assert_strict_headers(page)
    async with engine.connect() as conn:
        held = (await conn.execute(text("SELECT count(*) FROM console_sessions"))).scalar()
        live = (
            await conn.execute(
                text("SELECT count(*) FROM refresh_families WHERE revoked_at IS NULL")
            )
        ).scalar()
    assert held == 0 and live == 0  # nothing kept; the console's family was ended
    again = await client.get("/console/clients")
    assert again.status_code == 303 and again.headers["location"] == "/console/sign-in"


async def test_a_callback_from_another_browser_or_without_a_sign_in_starts_again(
    client: httpx.AsyncClient, root: str
) -> None:
    start = await client.get("/console/sign-in")
    assert start.status_code == 303
    forged = await client.get("/console/callback", params={"code": "x", "state": "not-it"})
    assert forged.status_code == 303 and forged.headers["location"] == "/console/sign-in"
    # The sign-in under way is spent: the right state does not bring it back.
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    again = await client.get("/console/callback", params={"code": "x", "state": state})
    assert again.status_code == 303 and again.headers["location"] == "/console/sign-in"


async def test_the_guard_runs_on_every_request_and_refreshes_server_side(
    client: httpx.AsyncClient, root: str, services: Services, clock: Clock, engine: AsyncEngine
) -> None:
    assert (await console_sign_in(client)).status_code == 200
    async with engine.connect() as conn:
        before = (await conn.execute(text("SELECT sealed FROM console_sessions"))).scalar()
    clock.advance(services.settings.access_token_ttl + 1)
    page = await client.get("/console/users")
    assert page.status_code == 200, page.text  # refreshed inside the server
    async with engine.connect() as conn:
        after = (await conn.execute(text("SELECT sealed FROM console_sessions"))).scalar()
    assert after != before
    # Disabled (by anyone, anywhere): the console's family is revoked with the user's
    # sessions, and the next console request signs in again.
    await admin_users.disable_user(services, "someone", root)
    page = await client.get("/console/users")
    assert page.status_code == 303 and page.headers["location"] == "/console/sign-in"


async def test_every_page_has_the_strict_headers_and_no_inline_script_or_style(
    client: httpx.AsyncClient, root: str, registry: Registry
) -> None:
    await registry.client("svc", client_name="Service")
    assert (await console_sign_in(client)).status_code == 200
    for path in PAGES:
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert_strict_headers(page)
        csp = page.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "script-src" not in csp, path
        assert "<script" not in page.text and "style=" not in page.text, path
        assert "<style" not in page.text, path


PAGES = (
    "/console/clients",
    "/console/clients/new",
    "/console/clients/delete?client_id=svc",
    "/console/users",
    "/console/users/new",
    "/console/keys",
    "/console/resources",
    "/console/registration-tokens",
    "/console/audit",
)


async def test_every_change_goes_through_the_admin_use_cases_audited_with_the_operator(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services
) -> None:
    alice = await registry.user("alice", PASSWORD)
    page = await console_sign_in(client)
    token = form_token(page.text)
    new = await client.post(
        "/console/clients",
        data={
            "csrf_token": token,
            "client_id": "billing",
            "client_name": "Billing",
            "grant_types": "client_credentials",
            "scopes": "profile",
        },
    )
    assert new.status_code == 201, new.text
    secret = re.search(r'id="secret" type="text" readonly value="([^"]+)"', new.text)
    assert secret, new.text
    found = await services.clients.fresh("billing")
    assert found is not None and hash_secret(unescape(secret.group(1))) == found.secret_hash
    assert "no-store" in new.headers["cache-control"]
    steps = [
        ("/console/clients/disable", {"client_id": "billing"}, "/console/clients?done=disabled"),
        ("/console/clients/enable", {"client_id": "billing"}, "/console/clients?done=enabled"),
        ("/console/clients/delete", {"client_id": "billing"}, "/console/clients?done=deleted"),
        ("/console/users/disable", {"sub": alice}, "/console/users?done=disabled"),
        ("/console/users/enable", {"sub": alice}, "/console/users?done=enabled"),
    ]
    for path, fields, then in steps:
        done = await client.post(path, data={"csrf_token": token, **fields})
        assert done.status_code == 303 and done.headers["location"] == then, (path, done.text)
    assert await services.clients.fresh("billing") is None  # deleted
    user = await services.users.by_id(alice)
    assert user is not None and not user.disabled
    events = await services.audit.page(AuditQuery(limit=50))
    by_type = {(e.action, e.target): e.actor for e in events}
    for action, target in [
        ("client.created", "billing"),
        ("client.updated", "billing"),
        ("client.deleted", "billing"),
        ("user.disabled", alice),
        ("user.updated", alice),
    ]:
        assert by_type.get((action, target)) == root, (action, by_type)
    shown = await client.get("/console/clients?done=deleted")
    assert "The client was deleted." in shown.text
    trail = await client.get("/console/audit")
    assert f'href="/console/audit?user={alice}"' in trail.text  # each row links its target
    assert 'href="/console/clients?q=billing"' in trail.text


async def test_every_form_refuses_a_missing_or_wrong_csrf_token(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services
) -> None:
    alice = await registry.user("alice", PASSWORD)
    await registry.client("svc")
    keys_before = await services.keys.records()
    kid = next(r.kid for r in keys_before if r.state == "active")
    page = await console_sign_in(client)
    token = form_token(page.text)
    forms = [
        ("/console/clients", {"client_id": "made", "grant_types": "client_credentials"}),
        ("/console/clients/disable", {"client_id": "svc"}),
        ("/console/clients/enable", {"client_id": "svc"}),
        ("/console/clients/delete", {"client_id": "svc"}),
        ("/console/users/disable", {"sub": alice}),
        ("/console/users/enable", {"sub": alice}),
        ("/console/keys/rotate", {}),
        ("/console/keys/revoke", {"kid": kid}),
        ("/console/users/sessions/end-all", {"sub": alice}),
        ("/console/clients/edit", {"client_id": "svc", "client_name": "Changed"}),
        ("/console/clients/rotate-secret", {"client_id": "svc"}),
        ("/console/resources", {"resource": "https://made.example/"}),
        ("/console/registration-tokens", {"ttl": "3600", "uses": "1"}),
        ("/console/users/reset-factors", {"sub": alice}),
        *user_forms(alice),
        ("/console/resources/delete", {"resource": "https://made.example/"}),
        ("/console/registration-tokens/revoke", {"token": "x"}),
        ("/console/sign-out", {}),
    ]
    wrong = ("A" if token[0] != "A" else "B") + token[1:]  # one character off, never the same
    for path, fields in forms:
        for sent in ({}, {"csrf_token": wrong}, {"csrf_token": ""}):
            refused = await client.post(path, data={**fields, **sent})
            assert refused.status_code == 403, (path, sent, refused.text)
            assert "expired or came from another site" in refused.text
        # The right token from another site's page: refused by its Origin.
        other = await client.post(
            path, data={**fields, "csrf_token": token}, headers={"Origin": "https://evil.example"}
        )
        assert other.status_code == 403, path
    assert await services.clients.fresh("made") is None
    svc = await services.clients.fresh("svc")
    user = await services.users.by_id(alice)
    assert svc is not None and not svc.disabled and user is not None and not user.disabled
    assert await services.keys.records() == keys_before  # neither rotated nor revoked
    assert svc.client_name is None and svc.secret_rotated_at is None
    assert await services.resources.get("https://made.example/") is None
    await assert_untouched(services, alice)
    assert (await client.get("/console/clients")).status_code == 200  # still signed in


async def test_what_users_and_operators_typed_is_escaped_on_every_page(
    client: httpx.AsyncClient, root: str, registry: Registry
) -> None:
    hostile_sub = await registry.user(HOSTILE, PASSWORD)
    hostile_names = {name: HOSTILE for name in ("name", "given_name", "family_name")}
    await registry.profile(HOSTILE, email=HOSTILE_EMAIL, **hostile_names)
    page = await console_sign_in(client)
    token = form_token(page.text)
    made = await client.post(
        "/console/clients",
        data={
            "csrf_token": token,
            "client_id": "hostile",
            "client_name": HOSTILE,
            "grant_types": "client_credentials",
            "scopes": "profile",
        },
    )
    assert made.status_code == 201, made.text
    search = {"q": HOSTILE}
    for path, params in [
        ("/console/clients", {}),
        ("/console/clients", search),
        ("/console/users", {}),
        ("/console/users", search),
        ("/console/audit", {}),
        ("/console/audit", {"type": HOSTILE, "user": HOSTILE}),
        ("/console/clients/delete", {"client_id": HOSTILE}),
        ("/console/keys", {"done": HOSTILE}),
        ("/console/clients/edit", {"client_id": "hostile"}),
        ("/console/users/sessions", {"sub": hostile_sub}),
        ("/console/users/reset-factors", {"sub": hostile_sub}),
        ("/console/users/edit", {"sub": hostile_sub}),
        ("/console/users/edit", {"sub": HOSTILE}),
        ("/console/users/delete", {"sub": hostile_sub}),
        ("/console/users/new", {"done": HOSTILE}),
        ("/console/resources/delete", {"resource": HOSTILE}),
        ("/console/keys/revoke", {"kid": HOSTILE}),
    ]:
        shown = await client.get(path, params=params)
        assert shown.status_code in (200, 404), (path, shown.text)
        assert "<script>" not in shown.text and "<img" not in shown.text, path
        assert "onerror=alert" not in shown.text.replace("onerror=alert(2)&gt;", ""), path
    users = await client.get("/console/users")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in users.text
    edit = await client.get("/console/users/edit", params={"sub": hostile_sub})
    assert edit.text.count(f'value="{escape(HOSTILE)}"') == 3  # the names, as typed
    assert f'value="{escape(HOSTILE_EMAIL)}"' in edit.text
    audit = await client.get("/console/audit")
    assert "&lt;script&gt;" in audit.text  # the client's name in the event's detail


async def test_sign_out_ends_the_session_and_its_tokens(
    client: httpx.AsyncClient, root: str, engine: AsyncEngine
) -> None:
    page = await console_sign_in(client)
    out = await client.post("/console/sign-out", data={"csrf_token": form_token(page.text)})
    assert out.status_code == 200 and "authserver_console=;" in out.headers["set-cookie"]
    async with engine.connect() as conn:
        held = (await conn.execute(text("SELECT count(*) FROM console_sessions"))).scalar()
        revoked = (
            (
                await conn.execute(
                    text("SELECT revoked_reason FROM refresh_families WHERE client_id = :c"),
                    {"c": CONSOLE_CLIENT_ID},
                )
            )
            .scalars()
            .all()
        )
    assert held == 0 and revoked == ["logout"]
    again = await client.get("/console/clients")
    assert again.status_code == 303 and again.headers["location"] == "/console/sign-in"


async def test_the_pages_speak_german(client: httpx.AsyncClient, root: str) -> None:
    await console_sign_in(client)
    page = await client.get("/console/users", headers={"Accept-Language": "de"})
    assert page.status_code == 200 and page.headers["content-language"] == "de"
    assert '<h1 id="heading">Benutzer</h1>' in page.text and "Abmelden" in page.text
    assert "Benutzername beginnt mit" in page.text


async def test_the_users_page_is_keyset_paged_through_the_username_index(
    database_url: str, engine: AsyncEngine
) -> None:
    """At 100,000 users, Postgres reads a page (the first, a later one, a search) by an index
    scan on users.username, never by reading the table."""
    if not database_url.startswith("postgresql"):
        pytest.skip("EXPLAIN is Postgres's")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, username, username_key, password_hash, scopes,"
                " disabled, created_at)"
                " SELECT 'u-' || n, name, name, 'x', '', false, 0"
                " FROM generate_series(1, 100000) AS n, lpad(n::text, 6, '0') AS digits,"
                " concat('user', digits) AS name"
            )
        )
        await conn.execute(text("ANALYZE users"))
        for after, prefix in [(None, None), ("user050000", None), (None, "user0999")]:
            statement = users_page(50, after, prefix).compile(
                dialect=engine.dialect, compile_kwargs={"literal_binds": True}
            )
            plan = "\n".join((await conn.execute(text(f"EXPLAIN {statement}"))).scalars().all())
            print(plan)  # the report's EXPLAIN (pytest -s)
            assert "Index Scan using uq_users_username" in plan, plan
            assert "Seq Scan" not in plan and "Sort" not in plan, plan


async def test_the_lists_page_by_key_and_search_by_prefix(
    client: httpx.AsyncClient, root: str, registry: Registry
) -> None:
    for n in range(55):
        await registry.user(f"member{n:02d}", PASSWORD)
    await console_sign_in(client)
    first = await client.get("/console/users")
    shown = re.findall(r"<td>(member\d\d|root)<br>", first.text)
    assert shown == [f"member{n:02d}" for n in range(50)]
    link = re.search(r'<a rel="next" href="([^"]+)"', first.text)
    assert link, first.text
    second = await client.get(unescape(link.group(1)))
    assert re.findall(r"<td>(member\d\d|root)<br>", second.text) == [
        *(f"member{n:02d}" for n in range(50, 55)),
        "root",
    ]
    assert 'rel="next"' not in second.text
    found = await client.get("/console/users", params={"q": "member5"})
    assert re.findall(r"<td>(member\d\d|root)<br>", found.text) == [
        f"member{n}" for n in range(50, 55)
    ]


async def test_an_operator_with_a_second_factor_is_asked_for_it(
    client: httpx.AsyncClient, root: str, services: Services, clock: Clock, engine: AsyncEngine
) -> None:
    """Signed in to the browser with the password alone, then a factor enrolled: the console
    takes the password-only sign-in's code, finds the factor, ends that token's family and
    asks /authorize again with acr_values=mfa; the factor's code finishes it."""
    page = await console_sign_in(client)
    out = await client.post("/console/sign-out", data={"csrf_token": form_token(page.text)})
    assert out.status_code == 200
    secret = new_totp_secret()
    factor_id = str(uuid.uuid4())
    sealed = seal_totp(services.factor_sealer, factor_id, secret)
    step = clock() // STEP_SECONDS - 10
    assert await services.second_factors.add_totp(factor_id, root, sealed, step, 0)

    location = (await client.get("/console/sign-in")).headers["location"]
    answer, seen = await follow_with_factor(client, location, secret, clock)
    assert answer.status_code == 200 and "Clients" in answer.text, answer.text
    assert "/console/sign-in?mfa=1&then=%2Fconsole%2Fclients" in seen
    async with engine.connect() as conn:
        sealed_tokens = (
            await conn.execute(text("SELECT id_hash, sealed FROM console_sessions"))
        ).one()
    tokens = unseal(services, sealed_tokens.id_hash, bytes(sealed_tokens.sealed))
    assert services.verify_any_audience(tokens["access_token"])["acr"] == "mfa"


async def follow_with_factor(
    http: httpx.AsyncClient, location: str, secret: str, clock: Clock, password: bool = False
) -> tuple[httpx.Response, list[str]]:
    """Follows redirects from `location` as a browser would, answering the sign-in page (when
    `password`) and the second factor's; the first page (200) and the locations seen."""
    seen = [location]
    for _ in range(10):
        if location.startswith(f"{ISSUER}/login/factor") or location.startswith("/login/factor"):
            form = await http.get(location)
            assert form.status_code == 200, form.text
            code = pyotp.TOTP(secret).at(clock())
            fields = {"csrf_token": form_token(form.text), "code": code}
            answer = await http.post(form_action(form.text), data=fields)
        elif password and location.startswith(f"{ISSUER}/login"):
            answer = await sign_in(http, location, "root", PASSWORD)
        else:
            answer = await http.get(location)
        if answer.status_code == 200:
            return answer, seen
        assert answer.status_code in (302, 303), answer.text
        location = answer.headers["location"]
        seen.append(location)
    raise AssertionError(seen)


async def test_bad_input_is_a_4xx_page_never_a_500(
    client: httpx.AsyncClient, root: str, services: Services
) -> None:
    page = await console_sign_in(client)
    token = form_token(page.text)
    for path, params, status in [
        ("/console/audit", {"before": "abc"}, 400),
        ("/console/audit", {"before": "9" * 30}, 200),  # past every id: from the newest
        ("/console/audit", {"type": "x" * 200}, 400),
        ("/console/users", {"q": "x" * 300}, 400),
        ("/console/clients", {"after": "\u00e9" * 10}, 200),
    ]:
        answer = await client.get(path, params=params)
        assert answer.status_code == status, (path, params, answer.text)
        assert answer.headers["content-type"].startswith("text/html"), path
    for path, fields, status in [
        ("/console/users/disable", {"sub": "nobody"}, 404),
        ("/console/users/enable", {"sub": "nobody"}, 404),
        ("/console/clients/disable", {"client_id": "nobody"}, 404),
        ("/console/clients/delete", {"client_id": "nobody"}, 404),
        ("/console/clients", {"client_id": "", "grant_types": "client_credentials"}, 400),
        ("/console/clients", {"client_id": "x", "grant_types": "no_such_grant"}, 400),
        ("/console/clients", {"client_id": "x", "redirect_uris": "not a uri"}, 400),
    ]:
        answer = await client.post(path, data={"csrf_token": token, **fields})
        assert answer.status_code == status, (path, fields, answer.text)
        assert answer.headers["content-type"].startswith("text/html"), path
        assert_strict_headers(answer)
    assert await services.clients.fresh("x") is None


# Rotates or revokes: its own key set, made now (the young key's age is this test's), and
# none left behind for later tests.
@pytest.mark.usefixtures("fresh_keys")
async def test_the_keys_page_rotates_waits_for_a_young_key_and_revokes_after_asking(
    client: httpx.AsyncClient, root: str, services: Services, clock: Clock
) -> None:
    """The ring as a state diagram; a rotation while the next key is young shows the wait
    (key_not_ready) and changes nothing; a revoke asks first, and the key leaves the JWKS."""
    await console_sign_in(client)
    page = await client.get("/console/keys")
    assert page.status_code == 200, page.text
    records = await services.keys.records()
    active = next(r for r in records if r.state == "active")
    young = next(r for r in records if r.state == "next")
    assert '<li class="state state-active">' in page.text
    assert f"<code>{active.kid}</code>" in page.text and f"<code>{young.kid}</code>" in page.text
    token = form_token(page.text)

    refused = await client.post("/console/keys/rotate", data={"csrf_token": token})
    assert refused.status_code == 409, refused.text
    wait = services.keys.min_next_age - (clock() - young.created_at)
    assert refused.headers["retry-after"] == str(wait)
    assert f"It can sign in {wait} s" in refused.text
    assert_strict_headers(refused)
    assert await services.keys.records() == records

    clock.advance(wait)
    rotated = await client.post("/console/keys/rotate", data={"csrf_token": token})
    assert rotated.status_code == 303
    assert rotated.headers["location"] == "/console/keys?done=rotated"
    states = {r.kid: r.state for r in await services.keys.records()}
    assert states[young.kid] == "active" and states[active.kid] == "retired"

    # The wait outlasted the sign-in's RECENT_SIGN_IN: the revoke asks for the password again.
    stale = await client.get("/console/keys/revoke", params={"kid": young.kid})
    assert stale.status_code == 303, stale.text
    asked, _ = await follow_with_factor(client, stale.headers["location"], "", clock, True)
    assert asked.status_code == 200 and "Revoke the key?" in asked.text
    assert f'name="kid" value="{young.kid}"' in asked.text
    unknown = await client.get("/console/keys/revoke", params={"kid": "no-such-kid"})
    assert unknown.status_code == 404
    assert young.kid in await published(client)
    # The active key, which signed the console's own token: renewed, still signed in.
    revoked = await client.post(
        "/console/keys/revoke", data={"csrf_token": form_token(asked.text), "kid": young.kid}
    )
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/console/keys?done=revoked"
    assert young.kid not in await published(client)
    shown = await client.get("/console/keys?done=revoked")
    assert "The key was revoked" in shown.text

    events = await services.audit.page(AuditQuery(limit=50))
    by_type = {(e.action, e.target): e.actor for e in events}
    assert by_type.get(("key.activated", young.kid)) == root, by_type
    assert by_type.get(("key.revoked", young.kid)) == root, by_type
    german = await client.get("/console/keys", headers={"Accept-Language": "de"})
    assert '<h1 id="heading">Signierschlüssel</h1>' in german.text


async def published(http: httpx.AsyncClient) -> set[str]:
    jwks = await http.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    return {key["kid"] for key in jwks.json()["keys"]}


# Rotates or revokes: its own key set, made now (the young key's age is this test's), and
# none left behind for later tests.
@pytest.mark.usefixtures("fresh_keys")
async def test_a_stale_sign_in_signs_in_again_before_a_destructive_action(
    client: httpx.AsyncClient,
    root: str,
    registry: Registry,
    services: Services,
    clock: Clock,
    engine: AsyncEngine,
) -> None:
    """Past RECENT_SIGN_IN, a key revoke's or a client delete's confirmation page and form send
    the operator through authserver's sign-in again (max_age), then back to the confirmation
    page; nothing is done meanwhile."""
    await registry.client("svc")
    page = await console_sign_in(client)
    token = form_token(page.text)
    kid = next(r.kid for r in await services.keys.records() if r.state == "next")
    clock.advance(RECENT_SIGN_IN + 1)
    stale = await client.post(
        "/console/clients/delete", data={"csrf_token": token, "client_id": "svc"}
    )
    assert stale.status_code == 303, stale.text
    assert stale.headers["location"] == (
        "/console/sign-in?recent=1&then=%2Fconsole%2Fclients%2Fdelete%3Fclient_id%3Dsvc"
    )
    assert await services.clients.fresh("svc") is not None
    asked = await client.get("/console/keys/revoke", params={"kid": kid})
    assert asked.status_code == 303
    again = asked.headers["location"]
    assert again.startswith("/console/sign-in?recent=1&then=%2Fconsole%2Fkeys%2Frevoke")
    start = await client.get(again)
    assert f"max_age={RECENT_SIGN_IN}" in start.headers["location"]
    authorize = await client.get(start.headers["location"])
    # The browser's login session is older than max_age: the password is asked again.
    assert authorize.headers["location"].startswith(f"{ISSUER}/login"), authorize.text
    shown, seen = await follow_with_factor(
        client, authorize.headers["location"], "", clock, password=True
    )
    assert seen[-1] == f"/console/keys/revoke?kid={kid}", seen
    assert "Revoke the key?" in shown.text
    async with engine.connect() as conn:
        held = (await conn.execute(text("SELECT count(*) FROM console_sessions"))).scalar()
    assert held == 1  # the stale session ended when the new sign-in began
    token = form_token(shown.text)
    done = await client.post("/console/keys/revoke", data={"csrf_token": token, "kid": kid})
    assert done.headers["location"] == "/console/keys?done=revoked"
    deleted = await client.post(
        "/console/clients/delete", data={"csrf_token": token, "client_id": "svc"}
    )
    assert deleted.headers["location"] == "/console/clients?done=deleted"


async def test_an_operator_with_a_factor_steps_up_with_it_before_a_destructive_action(
    client: httpx.AsyncClient, root: str, services: Services, clock: Clock
) -> None:
    secret = new_totp_secret()
    factor_id = str(uuid.uuid4())
    sealed = seal_totp(services.factor_sealer, factor_id, secret)
    step = clock() // STEP_SECONDS - 10
    assert await services.second_factors.add_totp(factor_id, root, sealed, step, 0)
    first = await client.get("/console/sign-in")
    page, _ = await follow_with_factor(client, first.headers["location"], secret, clock, True)
    assert "Clients" in page.text, page.text
    kid = next(r.kid for r in await services.keys.records() if r.state == "next")
    fresh = await client.get("/console/keys/revoke", params={"kid": kid})
    assert fresh.status_code == 200, fresh.text  # mfa, and recent
    clock.advance(RECENT_SIGN_IN + STEP_SECONDS)
    asked = await client.get("/console/keys/revoke", params={"kid": kid})
    assert asked.headers["location"].startswith("/console/sign-in?recent=1&mfa=1&then=")
    start = await client.get(asked.headers["location"])
    assert "acr_values=mfa" in start.headers["location"]
    assert f"max_age={RECENT_SIGN_IN}" in start.headers["location"]
    shown, seen = await follow_with_factor(client, start.headers["location"], secret, clock, True)
    assert any("/login/factor" in location for location in seen), seen
    assert "Revoke the key?" in shown.text and seen[-1] == f"/console/keys/revoke?kid={kid}"


def test_a_sign_in_comes_back_only_to_a_console_page() -> None:
    for then in (
        "//evil.example/console/",
        "https://evil.example",
        "/console\\x",
        "/account",
        "/console/../admin",
        None,
        "/console/" + "x" * 600,
    ):
        assert landing(then) == "/console/clients", then
    assert landing("/console/keys/revoke?kid=a") == "/console/keys/revoke?kid=a"


async def test_a_users_sessions_page_ends_one_or_all_and_resets_factors(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services, spa: str
) -> None:
    """Through the admin API's use cases, audited with the operator; what the user's browser
    sent (its User-Agent) is escaped; the factor reset asks first."""
    alice = await registry.user("alice", PASSWORD)
    logins = []
    for _ in range(2):
        answer = await client.post(
            "/token",
            data={"grant_type": "password", "username": "alice", "password": PASSWORD,
                  "client_id": spa},
            headers={"User-Agent": HOSTILE},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        logins.append(answer.json()["refresh_token"])
    page = await console_sign_in(client)
    token = form_token(page.text)
    users = await client.get("/console/users")
    assert f'href="/console/users/sessions?sub={alice}"' in users.text
    shown = await client.get("/console/users/sessions", params={"sub": alice})
    assert shown.status_code == 200, shown.text
    assert_strict_headers(shown)
    assert "<script>" not in shown.text and "&lt;script&gt;alert(1)" in shown.text
    sids = re.findall(r'name="sid" value="([^"]+)"', shown.text)
    assert len(sids) == 2 and "<code>spa</code>" in shown.text
    assert (
        await client.get("/console/users/sessions", params={"sub": "nobody"})
    ).status_code == 404

    ended = await client.post(
        "/console/users/sessions/end", data={"csrf_token": token, "sub": alice, "sid": sids[0]}
    )
    assert ended.status_code == 303, ended.text
    assert ended.headers["location"] == f"/console/users/sessions?sub={alice}&done=ended"
    again = await client.get(ended.headers["location"])
    assert "The session was ended." in again.text
    assert len(re.findall(r'name="sid" value="([^"]+)"', again.text)) == 1
    everywhere = await client.post(
        "/console/users/sessions/end-all", data={"csrf_token": token, "sub": alice}
    )
    assert everywhere.headers["location"] == f"/console/users/sessions?sub={alice}&done=ended_all"
    for refresh in logins:
        refused = await client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": spa},
        )
        assert refused.status_code == 400, refused.text

    secret = new_totp_secret()
    factor_id = str(uuid.uuid4())
    sealed = seal_totp(services.factor_sealer, factor_id, secret)
    assert await services.second_factors.add_totp(factor_id, alice, sealed, 0, 0)
    listed = await client.get("/console/users/sessions", params={"sub": alice})
    assert f'href="/console/users/reset-factors?sub={alice}"' in listed.text
    asked = await client.get("/console/users/reset-factors", params={"sub": alice})
    assert asked.status_code == 200 and "Reset the second factors?" in asked.text
    reset = await client.post(
        "/console/users/reset-factors", data={"csrf_token": token, "sub": alice}
    )
    assert reset.headers["location"] == f"/console/users/sessions?sub={alice}&done=reset"
    assert await services.second_factors.kinds(alice) == []

    events = await services.audit.page(AuditQuery(limit=50))
    by_type = {(e.action, e.target): e.actor for e in events}
    assert by_type.get(("family.revoked", sids[0])) == root, by_type
    assert by_type.get(("user.logged_out_everywhere", alice)) == root, by_type
    assert by_type.get(("user.factors_reset", alice)) == root, by_type
    german = await client.get(
        "/console/users/sessions", params={"sub": alice}, headers={"Accept-Language": "de"}
    )
    assert "Jede Sitzung beenden" in german.text


async def test_a_client_is_edited_and_its_secret_rotated_shown_once(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services, clock: Clock
) -> None:
    old_secret = await registry.client("svc")
    assert old_secret is not None
    page = await console_sign_in(client)
    token = form_token(page.text)
    listed = await client.get("/console/clients")
    assert 'href="/console/clients/edit?client_id=svc"' in listed.text
    assert 'href="/console/clients/edit?client_id=authserver-console"' not in listed.text
    form = await client.get("/console/clients/edit", params={"client_id": "svc"})
    assert form.status_code == 200 and 'name="old_secret_ttl"' in form.text
    assert_strict_headers(form)
    missing = await client.get("/console/clients/edit", params={"client_id": "nobody"})
    assert missing.status_code == 404
    saved = await client.post(
        "/console/clients/edit",
        data={
            "csrf_token": token,
            "client_id": "svc",
            "client_name": HOSTILE,
            "redirect_uris": "https://svc.example/cb\nhttps://svc.example/other",
            "allowed_origins": "https://svc.example",
        },
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/console/clients?q=svc&done=saved"
    found = await services.clients.fresh("svc")
    assert found is not None and found.client_name == HOSTILE
    assert found.redirect_uris == ("https://svc.example/cb", "https://svc.example/other")
    assert found.allowed_origins == ("https://svc.example",)
    again = await client.get("/console/clients/edit", params={"client_id": "svc"})
    assert "<script>" not in again.text and "&lt;script&gt;" in again.text
    assert ">https://svc.example/cb\nhttps://svc.example/other</textarea>" in again.text
    bad = await client.post(
        "/console/clients/edit",
        data={"csrf_token": token, "client_id": "svc", "redirect_uris": "not a uri"},
    )
    assert bad.status_code == 400, bad.text

    for ttl in ("abc", "-1", "99999999999"):
        refused = await client.post(
            "/console/clients/rotate-secret",
            data={"csrf_token": token, "client_id": "svc", "old_secret_ttl": ttl},
        )
        assert refused.status_code == 400, (ttl, refused.text)
    rotated = await client.post(
        "/console/clients/rotate-secret",
        data={"csrf_token": token, "client_id": "svc", "old_secret_ttl": "60"},
    )
    assert rotated.status_code == 200, rotated.text
    assert "no-store" in rotated.headers["cache-control"]
    shown = re.search(r'id="secret" type="text" readonly value="([^"]+)"', rotated.text)
    assert shown, rotated.text
    new_secret = unescape(shown.group(1))
    for secret, works in [(new_secret, True), (old_secret, True)]:
        answer = await client.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("svc", secret)
        )
        assert (answer.status_code == 200) == works, answer.text
    clock.advance(61)
    late = await client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("svc", old_secret)
    )
    assert late.status_code == 401
    # Shown once: nothing on any page brings it back.
    for path in ("/console/clients", "/console/clients/edit?client_id=svc", "/console/audit"):
        assert new_secret not in (await client.get(path)).text, path
    events = await services.audit.page(AuditQuery(limit=50))
    by_type = {(e.action, e.target): e.actor for e in events}
    assert by_type.get(("client.updated", "svc")) == root, by_type
    assert by_type.get(("client.secret_rotated", "svc")) == root, by_type


async def test_resources_are_registered_and_deleted_after_asking(
    client: httpx.AsyncClient, root: str, services: Services
) -> None:
    page = await console_sign_in(client)
    token = form_token(page.text)
    # The resource must be an absolute URI (no `<` or `"`); what of it HTML would read is escaped.
    hostile = "https://api.example/v1?a=1&b='2'"
    made = await client.post(
        "/console/resources",
        data={"csrf_token": token, "resource": hostile, "scopes": "read write",
              "access_token_ttl": "120"},
    )  # fmt: skip
    assert made.status_code == 303, made.text
    assert made.headers["location"] == "/console/resources?done=created"
    found = await services.resources.get(hostile)
    assert found is not None and found.scopes == ("read", "write")
    assert found.access_token_ttl == 120
    listed = await client.get(made.headers["location"])
    assert listed.status_code == 200 and "Registered." in listed.text
    assert "<code>https://api.example/v1?a=1&amp;b=&#39;2&#39;</code>" in listed.text
    assert_strict_headers(listed)
    for fields, status in [
        ({"resource": hostile}, 409),
        ({"resource": "not a uri"}, 400),
        ({"resource": "https://b.example/", "access_token_ttl": "abc"}, 400),
        ({"resource": "https://b.example/", "access_token_ttl": "1"}, 400),
    ]:
        refused = await client.post("/console/resources", data={"csrf_token": token, **fields})
        assert refused.status_code == status, (fields, refused.text)
    asked = await client.get("/console/resources/delete", params={"resource": hostile})
    assert asked.status_code == 200 and "Delete the resource?" in asked.text
    assert "b=&#39;2&#39;" in asked.text
    missing = await client.get("/console/resources/delete", params={"resource": "https://x/"})
    assert missing.status_code == 404
    deleted = await client.post(
        "/console/resources/delete", data={"csrf_token": token, "resource": hostile}
    )
    assert deleted.headers["location"] == "/console/resources?done=resource_deleted"
    assert await services.resources.get(hostile) is None
    events = await services.audit.page(AuditQuery(limit=50))
    by_type = {(e.action, e.target): e.actor for e in events}
    assert by_type.get(("resource.created", hostile)) == root, by_type
    assert by_type.get(("resource.deleted", hostile)) == root, by_type
    german = await client.get("/console/resources", headers={"Accept-Language": "de"})
    assert '<h1 id="heading">Ressourcen</h1>' in german.text


@pytest.mark.parametrize("settings_overrides", [{**INSECURE_COOKIES, "registration": "token"}])
async def test_a_registration_token_is_made_shown_once_and_registers_a_client(
    client: httpx.AsyncClient, root: str, services: Services
) -> None:
    """With AUTHSERVER_REGISTRATION=token: the console's token (the CLI's use case) registers
    one client at POST /register, then no more; only its hash is kept; audited."""
    page = await console_sign_in(client)
    token = form_token(page.text)
    form = await client.get("/console/registration-tokens")
    assert form.status_code == 200 and "only with" not in form.text
    for fields in ({"ttl": "10"}, {"ttl": "abc"}, {"ttl": "3600", "uses": "0"}):
        refused = await client.post(
            "/console/registration-tokens", data={"csrf_token": token, **fields}
        )
        assert refused.status_code == 400, (fields, refused.text)
    made = await client.post(
        "/console/registration-tokens", data={"csrf_token": token, "ttl": "3600", "uses": "1"}
    )
    assert made.status_code == 201, made.text
    assert "no-store" in made.headers["cache-control"]
    shown = re.search(r'id="token" type="text" readonly value="([^"]+)"', made.text)
    assert shown, made.text
    initial = unescape(shown.group(1))
    body = {"redirect_uris": ["https://app.example/cb"], "client_name": "App"}
    bearer = {"Authorization": f"Bearer {initial}"}
    first = await client.post("/register", json=body, headers=bearer)
    assert first.status_code == 201, first.text
    second = await client.post("/register", json=body, headers=bearer)
    assert second.status_code == 401, second.text
    for path in ("/console/clients", "/console/audit"):
        assert initial not in (await client.get(path)).text
    events = await services.audit.page(AuditQuery(limit=50))
    assert [e.actor for e in events if e.action == "registration_token.created"] == [root]

    # Listed while it works; revoked after asking, it registers no more.
    listed = await client.get("/console/registration-tokens")
    assert "<code>" not in listed.text.split("Tokens that still work")[1].split("</table>")[0]
    made = await client.post(
        "/console/registration-tokens", data={"csrf_token": token, "ttl": "3600", "uses": ""}
    )
    second_token = unescape(re.findall(r'id="token" type="text" readonly value="([^"]+)"',
                                       made.text)[0])  # fmt: skip
    listed = await client.get("/console/registration-tokens")
    assert initial not in listed.text and second_token not in listed.text
    [live] = await services.registrations.live_initial_tokens(services.clock(), 10)
    assert (
        f"<code>{live.token_hash[:12]}</code>" in listed.text and "0 of any number" in listed.text
    )
    revoke = f"/console/registration-tokens/revoke?{urlencode({'token': live.token_hash})}"
    assert f'href="{revoke}"' in listed.text.replace("&amp;", "&")
    asked = await client.get(revoke)
    assert asked.status_code == 200 and "Revoke the registration token?" in asked.text
    assert (await client.get(revoke + "x")).status_code == 404
    revoked = await client.post(
        "/console/registration-tokens/revoke", data={"csrf_token": token, "token": live.token_hash}
    )
    assert revoked.headers["location"] == "/console/registration-tokens?done=token_revoked"
    refused = await client.post(
        "/register", json=body, headers={"Authorization": f"Bearer {second_token}"}
    )
    assert refused.status_code == 401, refused.text
    again = await client.post(
        "/console/registration-tokens/revoke", data={"csrf_token": token, "token": live.token_hash}
    )
    assert again.status_code == 404
    events = await services.audit.page(AuditQuery(limit=50, action="registration_token.revoked"))
    assert [(e.actor, e.target) for e in events] == [(root, live.token_hash[:12])]


NEW_PASSWORD = "a brand new battery staple"
# An address the profile check takes (a local part without spaces or quotes) that HTML would read.
HOSTILE_EMAIL = "<script>alert(3)</script>@example.test"


async def token_grant(http: httpx.AsyncClient, spa: str, password: str) -> httpx.Response:
    return await http.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": password,
              "client_id": spa},
    )  # fmt: skip


async def test_a_user_is_created_edited_given_a_password_and_deleted(
    client: httpx.AsyncClient, root: str, services: Services, spa: str
) -> None:
    """POST /admin/users's, PATCH's, PUT .../password's and DELETE's use cases behind the
    forms, audited with the operator; what the user may type is escaped where it is shown."""
    page = await console_sign_in(client)
    token = form_token(page.text)
    listed = await client.get("/console/users")
    assert 'href="/console/users/new"' in listed.text
    form = await client.get("/console/users/new")
    assert form.status_code == 200 and 'autocomplete="new-password"' in form.text
    made = await client.post(
        "/console/users",
        data={"csrf_token": token, "username": "alice", "password": PASSWORD,
              "scopes": "profile", "roles": "billing:read support", "email": "Alice@Example.test",
              "email_verified": "on", "name": HOSTILE, "locale": "de-DE"},
    )  # fmt: skip
    assert made.status_code == 303, made.text
    alice = parse_qs(urlsplit(made.headers["location"]).query)["sub"][0]
    assert made.headers["location"] == f"/console/users/edit?sub={alice}&done=user_created"
    user = await services.users.by_id(alice)
    assert user is not None and user.username == "alice" and not user.is_admin
    assert user.scopes == ("profile",) and user.profile.roles == ("billing:read", "support")
    assert user.profile.email == "Alice@Example.test" and user.profile.email_verified
    assert user.profile.name == HOSTILE and user.profile.locale == "de-DE"
    assert user.profile.given_name is None  # an empty field is no field
    assert (await token_grant(client, spa, PASSWORD)).status_code == 200

    shown = await client.get(made.headers["location"])
    assert shown.status_code == 200 and "The user was created." in shown.text
    assert_strict_headers(shown)
    assert "<script>" not in shown.text and f'value="{escape(HOSTILE)}"' in shown.text
    assert 'name="email_verified" type="checkbox" checked' in shown.text
    assert PASSWORD not in shown.text

    # Only what changed is sent: the new address is unverified again (API.md), and the
    # trail names the fields changed.
    saved = await client.post(
        "/console/users/edit",
        data={"csrf_token": token, "sub": alice, "scopes": "profile openid",
              "roles": "support", "email": HOSTILE_EMAIL, "email_verified": "on",
              "name": "", "given_name": HOSTILE, "family_name": "Smith", "locale": "de-DE"},
    )  # fmt: skip
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/console/users/edit?sub={alice}&done=saved"
    user = await services.users.by_id(alice)
    assert user is not None and user.profile.email == HOSTILE_EMAIL
    assert not user.profile.email_verified and user.profile.name is None
    assert user.profile.given_name == HOSTILE and user.profile.roles == ("support",)
    assert user.scopes == ("profile", "openid")
    again = await client.get(saved.headers["location"])
    assert "<script>" not in again.text and "&lt;script&gt;alert(3)" in again.text

    elsewhere = (await token_grant(client, spa, PASSWORD)).json()["refresh_token"]
    kept = await client.post(
        "/console/users/password",
        data={"csrf_token": token, "sub": alice, "password": NEW_PASSWORD},
    )  # the box unticked: their sessions stay
    assert kept.headers["location"] == f"/console/users/edit?sub={alice}&done=password_set"
    assert (await token_grant(client, spa, PASSWORD)).status_code == 400
    assert (await token_grant(client, spa, NEW_PASSWORD)).status_code == 200
    refreshed = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": elsewhere, "client_id": spa},
    )
    assert refreshed.status_code == 200, refreshed.text
    ended = await client.post(
        "/console/users/password",
        data={"csrf_token": token, "sub": alice, "password": PASSWORD, "revoke_sessions": "on"},
    )
    assert ended.status_code == 303, ended.text
    refused = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "client_id": spa,
              "refresh_token": refreshed.json()["refresh_token"]},
    )  # fmt: skip
    assert refused.status_code == 400, refused.text

    [updated] = await services.audit.page(AuditQuery(limit=1, action="user.updated"))
    assert updated.actor == root and set(updated.detail) == {
        "scopes", "roles", "email", "name", "given_name", "family_name"
    }  # fmt: skip

    asked = await client.get("/console/users/delete", params={"sub": alice})
    assert asked.status_code == 200 and "Delete the user?" in asked.text
    deleted = await client.post("/console/users/delete", data={"csrf_token": token, "sub": alice})
    assert deleted.headers["location"] == "/console/users?done=user_deleted"
    assert await services.users.by_id(alice) is None
    assert (await token_grant(client, spa, PASSWORD)).status_code == 400

    events = await services.audit.page(AuditQuery(limit=50))
    mine = [(e.action, e.detail) for e in events if e.target == alice and e.actor == root]
    assert [action for action, _ in mine] == [
        "user.deleted", "user.password_set", "user.password_set", "user.updated",
        "user.created",
    ]  # fmt: skip
    # The personal fields the trail held are forgotten with the user (db/accounts.py).
    assert set(dict(mine)["user.updated"]) == {"scopes", "roles"}
    assert [d["revoke_sessions"] for a, d in mine if a == "user.password_set"] == [True, False]
    assert all(PASSWORD not in str(d) and NEW_PASSWORD not in str(d) for _, d in mine)
    german = await client.get("/console/users/new", headers={"Accept-Language": "de"})
    assert '<h1 id="heading">Benutzer anlegen</h1>' in german.text


async def test_bad_user_input_is_a_clear_4xx_page_and_changes_nothing(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services
) -> None:
    alice = await registry.user("alice", PASSWORD)
    page = await console_sign_in(client)
    token = form_token(page.text)
    create = {"username": "bob", "password": NEW_PASSWORD}
    for path, fields, status, sentence in [
        ("/console/users", {**create, "password": "short"}, 400, "shorter than"),
        ("/console/users", {**create, "password": "bob"}, 400, "shorter than"),
        ("/console/users", {**create, "password": ""}, 400, "password is required"),
        ("/console/users", {**create, "username": ""}, 400, "username is required"),
        ("/console/users", {**create, "username": "ALICE"}, 409, "is taken"),
        ("/console/users", {**create, "email": "not an address"}, 400, "email must be"),
        ("/console/users", {**create, "locale": "en_GB"}, 400, "BCP 47"),
        ("/console/users", {**create, "roles": "has<angle"}, 400, "A role name"),
        ("/console/users", {**create, "scopes": 'bad"scope'}, 400, "malformed"),
        ("/console/users", {**create, "name": "x" * 300}, 400, "longer than"),
        ("/console/users/edit", {"sub": alice, "email": "@"}, 400, "email must be"),
        ("/console/users/edit", {"sub": alice, "name": "\u202eevil"}, 400, "bidi"),
        ("/console/users/edit", {"sub": "nobody"}, 404, "No user has this sub"),
        ("/console/users/password", {"sub": alice, "password": "short"}, 400, "shorter than"),
        ("/console/users/password", {"sub": "nobody", "password": NEW_PASSWORD}, 404, "No user"),
        ("/console/users/delete", {"sub": "nobody"}, 404, "No user has this sub"),
        ("/console/users/reset-link", {"sub": alice}, 404, "Mail is off"),
        ("/console/users/sessions/end-browser", {"sub": alice, "id": "x" * 40}, 404, "browser"),
    ]:
        answer = await client.post(path, data={"csrf_token": token, **fields})
        assert answer.status_code == status, (path, fields, answer.text)
        assert answer.headers["content-type"].startswith("text/html"), path
        assert sentence in unescape(answer.text), (path, fields, answer.text)
        assert_strict_headers(answer)
    for path in ("/console/users/edit", "/console/users/delete"):
        assert (await client.get(path, params={"sub": "nobody"})).status_code == 404
    assert await services.users.by_username("bob") is None
    user = await services.users.by_id(alice)
    assert user is not None and user.profile.email is None and user.profile.name is None
    form = await client.get("/console/users/edit", params={"sub": alice})
    assert "/console/users/reset-link" not in form.text  # mail is off: not offered


@pytest.mark.usefixtures("spa")
async def test_granting_admin_setting_a_password_and_deleting_ask_for_a_recent_sign_in(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services, clock: Clock
) -> None:
    """Past RECENT_SIGN_IN, each sends the operator through the sign-in (max_age) and back to
    its page; nothing is done meanwhile. Other edits and a plain create go through."""
    alice = await registry.user("alice", PASSWORD)
    resource = "https://api.example/"
    page = await console_sign_in(client)
    token = form_token(page.text)
    made = await client.post("/console/resources", data={"csrf_token": token, "resource": resource})
    assert made.status_code == 303, made.text
    made = await client.post(
        "/console/registration-tokens", data={"csrf_token": token, "ttl": "3600"}
    )
    assert made.status_code == 201, made.text
    [initial] = await services.registrations.live_initial_tokens(clock(), 10)
    revoke_page = f"/console/registration-tokens/revoke?{urlencode({'token': initial.token_hash})}"
    clock.advance(RECENT_SIGN_IN + 1)
    user_page = f"/console/users/edit?sub={alice}"
    for path, fields, then in [
        ("/console/users", {"username": "bob", "password": NEW_PASSWORD, "admin": "on"},
         "/console/users/new"),
        ("/console/users/edit", {"sub": alice, "admin": "on"}, user_page),
        ("/console/users/password", {"sub": alice, "password": NEW_PASSWORD}, user_page),
        ("/console/users/delete", {"sub": alice}, f"/console/users/delete?sub={alice}"),
        ("/console/resources/delete", {"resource": resource},
         f"/console/resources/delete?{urlencode({'resource': resource})}"),
        ("/console/registration-tokens/revoke", {"token": initial.token_hash}, revoke_page),
    ]:  # fmt: skip
        stale = await client.post(path, data={"csrf_token": token, **fields})
        assert stale.status_code == 303, (path, stale.text)
        asked_again = urlencode({"recent": "1", "then": then})
        assert stale.headers["location"] == f"/console/sign-in?{asked_again}", path
    for path, params in [
        ("/console/users/delete", {"sub": alice}),
        ("/console/resources/delete", {"resource": resource}),
        ("/console/registration-tokens/revoke", {"token": initial.token_hash}),
    ]:
        asked = await client.get(path, params=params)
        assert asked.status_code == 303 and asked.headers["location"].startswith(
            "/console/sign-in?recent=1&then="
        ), path
    user = await services.users.by_id(alice)
    assert user is not None and not user.is_admin
    assert await services.users.by_username("bob") is None
    assert await services.resources.get(resource) is not None
    assert await services.registrations.live_initial_tokens(clock(), 10) == [initial]
    assert (await password_grant(client, "alice", PASSWORD)).status_code == 200
    # Neither grants nor hands over anything: no recent sign-in needed.
    edited = await client.post(
        "/console/users/edit", data={"csrf_token": token, "sub": alice, "name": "Alice"}
    )
    assert edited.status_code == 303 and edited.headers["location"].endswith("done=saved")
    made = await client.post(
        "/console/users", data={"csrf_token": token, "username": "bob", "password": NEW_PASSWORD}
    )
    assert made.status_code == 303 and made.headers["location"].endswith("done=user_created")
    # Signed in again: the grant goes through, and is the operator's in the trail.
    fresh, _ = await follow_with_factor(client, "/console/sign-in?recent=1", "", clock, True)
    granted = await client.post(
        "/console/users/edit",
        data={"csrf_token": form_token(fresh.text), "sub": alice, "admin": "on", "name": "Alice"},
    )
    assert granted.headers["location"] == f"{user_page}&done=saved"
    user = await services.users.by_id(alice)
    assert user is not None and user.is_admin
    events = await services.audit.page(AuditQuery(limit=50, action="user.updated"))
    assert [(e.actor, e.detail) for e in events if e.target == alice] == [
        (root, {"admin": True}),
        (root, {"name": "Alice"}),
    ]


async def password_grant(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post(
        "/token",
        data={"grant_type": "password", "username": username, "password": password,
              "client_id": "spa"},
    )  # fmt: skip


async def test_a_users_single_browser_is_signed_out_by_the_operator(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services, app: Starlette
) -> None:
    """The account page's "End" for one browser, from the console: its login session and the
    apps it signed in end; the user's other browser stays signed in; audited with the operator."""
    alice = await registry.user("alice", PASSWORD)
    await web_client(registry)
    browsers = []
    for agent in (HOSTILE, "Other browser"):
        browser = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ISSUER, headers={"User-Agent": agent}
        )
        flow = Flow.new()
        code = await code_for(browser, flow)
        assert (await exchange(browser, code, flow)).status_code == 200
        browsers.append(browser)
    page = await console_sign_in(client)
    token = form_token(page.text)
    shown = await client.get("/console/users/sessions", params={"sub": alice})
    assert "<script>" not in shown.text
    ids = re.findall(r'name="id" value="([^"]+)"', shown.text)
    assert len(ids) == 2, shown.text
    listed = await services.login_sessions.browsers(alice, services.clock(), 3600)
    hostile = next(b.id for b in listed if b.user_agent == HOSTILE)
    ended = await client.post(
        "/console/users/sessions/end-browser",
        data={"csrf_token": token, "sub": alice, "id": hostile},
    )
    assert ended.status_code == 303, ended.text
    assert ended.headers["location"] == f"/console/users/sessions?sub={alice}&done=browser_ended"
    again = await client.get(ended.headers["location"])
    assert "The browser was signed out." in again.text
    assert re.findall(r'name="id" value="([^"]+)"', again.text) == [i for i in ids if i != hostile]
    for browser, signed_in in zip(browsers, (False, True), strict=True):
        answer = await authorize(browser, Flow.new().params)
        assert answer.headers["location"].startswith(f"{ISSUER}/login") != signed_in
        await browser.aclose()
    twice = await client.post(
        "/console/users/sessions/end-browser",
        data={"csrf_token": token, "sub": alice, "id": hostile},
    )
    assert twice.status_code == 404
    # Another user's browser is not this user's: nothing ended.
    other = next(i for i in ids if i != hostile)
    mismatched = await client.post(
        "/console/users/sessions/end-browser",
        data={"csrf_token": token, "sub": root, "id": other},
    )
    assert mismatched.status_code == 404
    events = await services.audit.page(AuditQuery(limit=50))
    ends = [(e.actor, e.detail) for e in events if e.action == "end_session"]
    assert ends == [(root, {"via": "operator", "families": 1})], ends
    revoked = [e for e in events if e.action == "family.revoked" and e.user == alice]
    assert [(e.actor, e.detail.get("reason")) for e in revoked] == [(root, "end_session")]


@pytest.mark.usefixtures("spa")
async def test_an_operator_mails_a_password_reset_link_through_the_reset_use_case(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services, smtp: SmtpServer
) -> None:
    """Over real SMTP: the sign-in page's own mail and link, which sets a new password."""
    alice = await registry.user("alice", PASSWORD)
    await registry.profile("alice", email="alice@example.test")
    bob = await registry.user("bob", PASSWORD)
    page = await console_sign_in(client)
    token = form_token(page.text)
    form = await client.get("/console/users/edit", params={"sub": alice})
    assert 'action="/console/users/reset-link"' in form.text
    assert "alice@example.test" in form.text
    no_email = await client.get("/console/users/edit", params={"sub": bob})
    assert "/console/users/reset-link" not in no_email.text
    carol = await registry.user("carol", PASSWORD)
    await registry.profile("carol", email=HOSTILE_EMAIL)
    hostile = await client.get("/console/users/edit", params={"sub": carol})
    assert "/console/users/reset-link" in hostile.text and "<script>" not in hostile.text
    assert f"is mailed to {escape(HOSTILE_EMAIL)}." in hostile.text
    refused = await client.post("/console/users/reset-link", data={"csrf_token": token, "sub": bob})
    assert refused.status_code == 400 and "email address" in refused.text
    sent = await client.post("/console/users/reset-link", data={"csrf_token": token, "sub": alice})
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == f"/console/users/edit?sub={alice}&done=link_sent"
    received = await next_mail(smtp)
    assert received.envelope_to == ["alice@example.test"]
    link = urlsplit(link_in(received, "/password-reset/confirm"))
    confirm = await client.get(f"{link.path}?{link.query}")
    assert confirm.status_code == 200, confirm.text
    done = await client.post(
        "/password-reset/confirm", data={**hidden_fields(confirm.text), "password": NEW_PASSWORD}
    )
    assert done.status_code == 200, done.text
    assert (await password_grant(client, "alice", NEW_PASSWORD)).status_code == 200
    events = await services.audit.page(AuditQuery(limit=50))
    assert [(e.actor, e.target) for e in events if e.action == "user.password_reset_sent"] == [
        (root, alice)
    ]
    assert len(smtp.received) == 1  # bob's refusal sent nothing


async def test_no_one_but_a_live_operator_creates_edits_or_deletes_a_user(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services, app: Starlette
) -> None:
    """A non-admin has no console session to post from; an operator demoted meanwhile is
    sent to sign in again by the same forms, with the right CSRF token; nothing is done."""
    alice = await registry.user("alice", PASSWORD)
    bob = await registry.user("bob", PASSWORD, admin=True)
    forms = user_forms(alice)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as other:
        refused = await console_sign_in(other, "alice")
        assert refused.status_code == 403
        for path, fields in forms:
            answer = await other.post(path, data={**fields, "csrf_token": "x"})
            assert answer.status_code == 403, (path, answer.text)
        for path in ("/console/users/new", f"/console/users/edit?sub={alice}"):
            assert (await other.get(path)).headers["location"] == "/console/sign-in"
    page = await console_sign_in(client, "bob")
    token = form_token(page.text)
    await admin_users.update_user(services, root, bob, {"admin": False})
    for path, fields in forms:
        answer = await client.post(path, data={**fields, "csrf_token": token})
        assert answer.status_code == 303, (path, answer.text)
        assert answer.headers["location"] == "/console/sign-in", path
    # Her own refused sign-in's events only.
    await assert_untouched(services, alice, (alice, CONSOLE_CLIENT_ID))


def user_forms(sub: str) -> list[tuple[str, dict[str, str]]]:
    """Each form of the user pages, filled in for the user `sub` (and a new user "made")."""
    return [
        ("/console/users", {"username": "made", "password": NEW_PASSWORD}),
        ("/console/users/edit", {"sub": sub, "name": "Changed", "admin": "on"}),
        ("/console/users/password", {"sub": sub, "password": NEW_PASSWORD}),
        ("/console/users/reset-link", {"sub": sub}),
        ("/console/users/delete", {"sub": sub}),
        ("/console/users/sessions/end-browser", {"sub": sub, "id": "x"}),
    ]


async def assert_untouched(services: Services, sub: str, actors: tuple[str, ...] = ()) -> None:
    """None of user_forms(sub) did anything: no user made, the user neither edited, given a
    password nor deleted, nothing in the trail about them but by `actors`."""
    assert await services.users.by_username("made") is None
    user = await services.users.by_id(sub)
    assert user is not None and user.profile.name is None and not user.is_admin
    assert (await services.passwords.verify(user.password_hash, PASSWORD)).ok
    events = await services.audit.page(AuditQuery(limit=50, user=sub))
    assert [e for e in events if e.actor not in actors] == []


# A password the policy refuses (too short), and so never to be seen again on any page.
REFUSED_PASSWORD = "zq7Vw"


def assert_form_again(answer: httpx.Response, status: int, sentence: str, action: str) -> None:
    """The console's own page again, not the hosted error page: the console nav, the refusal
    in a role=alert the form it belongs to names as its description, and the given status."""
    text = unescape(answer.text)
    assert answer.status_code == status, (action, answer.text)
    assert answer.headers["content-type"].startswith("text/html")
    assert_strict_headers(answer)
    assert 'class="console-nav"' in answer.text, answer.text
    assert "application you came from" not in text
    found = re.search(r'<p class="error" id="form-error" role="alert">([^<]*)</p>', answer.text)
    assert found and sentence in unescape(found.group(1)), (action, answer.text)
    assert answer.text.count('id="form-error"') == 1
    if not action.startswith("row:"):
        method = "get" if action.startswith("GET ") else "post"
        path = action.removeprefix("GET ")
        form = re.search(
            rf'<form method="{method}" action="{re.escape(path)}"[^>]*'
            r'aria-describedby="form-error"[^>]*>\s*(?:<input type="hidden"[^>]*>)?\s*'
            r'<p class="error" id="form-error"',
            answer.text,
        )
        assert form, (action, answer.text)
    assert REFUSED_PASSWORD not in answer.text and PASSWORD not in answer.text
    assert NEW_PASSWORD not in answer.text
    assert HOSTILE not in answer.text  # only escaped, where it is shown at all


def value_of(html: str, name: str) -> str:
    """An input's value (a textarea's text) on the page, unescaped."""
    found = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', html) or re.search(
        rf'<textarea[^>]*name="{name}"[^>]*>([^<]*)</textarea>', html
    )
    assert found, (name, html)
    return unescape(found.group(1))


def ticked(html: str, name: str) -> bool:
    found = re.search(rf'<input name="{name}" type="checkbox"( checked)?>', html)
    assert found, (name, html)
    return found.group(1) is not None


async def test_every_refused_form_comes_back_with_what_was_typed_and_why(
    client: httpx.AsyncClient, root: str, registry: Registry, services: Services
) -> None:
    alice = await registry.user("alice", PASSWORD)
    assert await registry.client("svc") is not None
    page = await console_sign_in(client)
    token = form_token(page.text)

    async def post(path: str, **fields: str) -> httpx.Response:
        return await client.post(path, data={"csrf_token": token, **fields})

    # Registering a client: a bad redirect URI, then a taken client ID.
    typed = {"client_name": HOSTILE, "grant_types": "authorization_code", "scopes": "openid"}
    answer = await post("/console/clients", client_id="web2", redirect_uris="not a uri", **typed)
    assert_form_again(answer, 400, "redirect", "/console/clients")
    assert value_of(answer.text, "client_id") == "web2"
    assert value_of(answer.text, "client_name") == HOSTILE
    assert value_of(answer.text, "redirect_uris") == "not a uri"
    assert value_of(answer.text, "grant_types") == "authorization_code"
    assert value_of(answer.text, "scopes") == "openid" and not ticked(answer.text, "public")
    answer = await post(
        "/console/clients", client_id="svc", public="on", redirect_uris="https://a.example/"
    )
    assert_form_again(answer, 409, "taken", "/console/clients")
    assert ticked(answer.text, "public") and value_of(answer.text, "client_id") == "svc"

    # Editing a client, rotating its secret.
    edit = {"client_id": "svc", "client_name": HOSTILE, "allowed_origins": "https://o.example"}
    answer = await post("/console/clients/edit", redirect_uris="https://a.example/#frag", **edit)
    assert_form_again(answer, 400, "fragment", "/console/clients/edit")
    assert value_of(answer.text, "client_name") == HOSTILE
    assert value_of(answer.text, "redirect_uris") == "https://a.example/#frag"
    assert value_of(answer.text, "allowed_origins") == "https://o.example"
    answer = await post("/console/clients/rotate-secret", client_id="svc", old_secret_ttl="-5")
    assert_form_again(answer, 400, "old_secret_ttl", "/console/clients/rotate-secret")
    assert value_of(answer.text, "old_secret_ttl") == "-5"
    assert value_of(answer.text, "client_name") != HOSTILE  # the other form: as stored

    # Creating a user: a weak password (never shown again), a taken username.
    profile = {"name": HOSTILE, "roles": "auditor", "scopes": "profile", "email_verified": "on"}
    answer = await post("/console/users", username="bob", password=REFUSED_PASSWORD, **profile)
    assert_form_again(answer, 400, "shorter than", "/console/users")
    assert value_of(answer.text, "username") == "bob" and value_of(answer.text, "name") == HOSTILE
    assert value_of(answer.text, "roles") == "auditor" and ticked(answer.text, "email_verified")
    assert not ticked(answer.text, "admin")
    assert re.search(r'<input id="password" name="password" type="password"[^>]*>', answer.text)
    assert 'name="password" type="password" value' not in answer.text
    answer = await post("/console/users", username="ALICE", password=NEW_PASSWORD)
    assert_form_again(answer, 409, "is taken", "/console/users")
    assert value_of(answer.text, "username") == "ALICE"

    # A user's page: the fields, the password, the reset link (mail is off).
    answer = await post("/console/users/edit", sub=alice, email="@", name=HOSTILE)
    assert_form_again(answer, 400, "email must be", "/console/users/edit")
    assert value_of(answer.text, "email") == "@" and value_of(answer.text, "name") == HOSTILE
    answer = await post("/console/users/password", sub=alice, password=REFUSED_PASSWORD)
    assert_form_again(answer, 400, "shorter than", "/console/users/password")
    assert not ticked(answer.text, "revoke_sessions")  # as the operator left it
    assert value_of(answer.text, "name") == ""  # the edit form: as stored
    answer = await post("/console/users/reset-link", sub=alice)
    assert_form_again(answer, 404, "Mail is off", "row:")  # not offered: above the page

    # A table row's forms: the refusal above the page.
    answer = await post("/console/users/disable", sub="nobody")
    assert_form_again(answer, 404, "No user has this sub", "row:")
    assert '<h1 id="heading">Users</h1>' in answer.text
    answer = await post("/console/clients/disable", client_id=HOSTILE)
    assert_form_again(answer, 404, "client", "row:")
    answer = await post("/console/users/sessions/end-browser", sub=alice, id="x" * 40)
    assert_form_again(answer, 404, "browser", "row:")
    answer = await post("/console/users/sessions/end", sub=alice, sid="nope")
    assert_form_again(answer, 404, "session", "row:")

    # A confirmation page's form.
    answer = await post("/console/clients/delete", client_id=HOSTILE)
    assert_form_again(answer, 404, "client", "/console/clients/delete")
    assert value_of(answer.text, "client_id") == HOSTILE

    # Resources, registration tokens.
    answer = await post("/console/resources", resource="not a uri", scopes=HOSTILE)
    assert_form_again(answer, 400, "absolute URI", "/console/resources")
    assert value_of(answer.text, "resource") == "not a uri"
    assert value_of(answer.text, "scopes") == HOSTILE
    answer = await post("/console/registration-tokens", ttl="5", uses="3")
    assert_form_again(answer, 400, "lifetime", "/console/registration-tokens")
    assert value_of(answer.text, "ttl") == "5" and value_of(answer.text, "uses") == "3"

    # The search forms (GET).
    answer = await client.get("/console/audit", params={"before": "abc", "type": HOSTILE})
    assert_form_again(answer, 400, "whole number", "GET /console/audit")
    assert value_of(answer.text, "type") == HOSTILE
    answer = await client.get("/console/users", params={"q": "x" * 300})
    assert_form_again(answer, 400, "too long", "GET /console/users")
    assert value_of(answer.text, "q") == "x" * 300
    answer = await client.get("/console/clients", params={"q": "y" * 300})
    assert_form_again(answer, 400, "too long", "GET /console/clients")

    # Nothing was done.
    assert await services.users.by_username("bob") is None
    assert await services.clients.fresh("web2") is None
    user = await services.users.by_id(alice)
    assert user is not None and user.profile.email is None and user.profile.name is None


async def test_a_refused_form_speaks_german(
    client: httpx.AsyncClient, root: str, registry: Registry
) -> None:
    page = await console_sign_in(client)
    german = {"Accept-Language": "de"}
    fields = {"csrf_token": form_token(page.text), "username": "bob", "password": "x"}
    answer = await client.post("/console/users", data=fields, headers=german)
    assert answer.status_code == 400 and answer.headers["content-language"] == "de"
    assert "Das Passwort ist kürzer als" in answer.text  # the policy's sentence, translated
    assert 'role="alert"' in answer.text and 'class="console-nav"' in answer.text
    assert value_of(answer.text, "username") == "bob"
