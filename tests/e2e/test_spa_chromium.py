"""examples/spa/ in a real browser: Debian's Chromium, headless, driven by Playwright.

authserver (real uvicorn, `authserver serve`), the SPA and the protected API each run on their
own loopback port, so the code flow's redirects, CORS, the Origin check and the SameSite cookies
all happen for real: the SPA on http://127.0.0.1:A and authserver on http://127.0.0.1:B are
different origins of one site, so the `SameSite=Strict` refresh cookie travels, and only the
Origin check keeps a same-site foreign page out. A page on http://localhost:D is another site
altogether. A second copy of the SPA on http://127.0.0.1:E is a second client, for single
sign-on and single sign-out.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Response,
    Route,
    sync_playwright,
)

from authserver_verify.dpop import Nonces
from tests._dpop import DPoPKey
from tests._locks import apt_get_install
from tests.e2e.servers import (
    CLIENT_ID,
    PASSWORD,
    SECOND_CLIENT_ID,
    SPA_DIR,
    USERNAME,
    AuthServer,
    Spa,
    api,
    authserver,
    foreign_pages,
    static_server,
)

CHROMIUM = Path("/usr/bin/chromium")
# Never `playwright install`: the browser is Debian's, and nothing else may be downloaded.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COOKIE = "authserver_rt"  # AUTHSERVER_COOKIE_SECURE=false drops Secure and the __Host- prefix
TIMEOUT_MS = 15_000


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium: installed here in CI (we are root there), else the test is skipped."""
    apt_get_install(CHROMIUM.exists, "chromium", timeout=900)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; CI installs it itself)")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        yield launched
        launched.close()


@dataclass
class Stack:
    auth: AuthServer
    spa: Spa  # the SPA's origin and client; authserver allows only the two SPAs' origins
    second: Spa  # another copy of the SPA: another client, another origin, one login session
    api: str
    foreign_port: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e")
    first_files: dict[str, tuple[str, str]] = {}
    second_files: dict[str, tuple[str, str]] = {}
    with (
        static_server(SPA_DIR, first_files) as first_port,
        static_server(SPA_DIR, second_files) as second_port,
    ):
        spa = Spa(CLIENT_ID, f"http://127.0.0.1:{first_port}")
        second = Spa(SECOND_CLIENT_ID, f"http://127.0.0.1:{second_port}")
        with (
            authserver(workdir, [spa, second]) as auth,
            api(auth.url, [spa.origin, second.origin]) as api_url,
        ):
            first_files["/config.js"] = ("text/javascript", spa.config(auth.url, api_url))
            second_files["/config.js"] = ("text/javascript", second.config(auth.url, api_url))
            foreign_dir = workdir / "foreign"
            foreign_dir.mkdir()
            with static_server(foreign_dir, foreign_pages(auth.url)) as foreign_port:
                yield Stack(auth, spa, second, api_url, foreign_port)


@dataclass
class Seen:
    url: str
    status: int
    body: str | None  # None: a redirect, or a body the browser withheld
    set_cookies: list[str]


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile per test: its own cookie jar."""
    created = browser.new_context()
    created.set_default_timeout(TIMEOUT_MS)
    yield created
    created.close()


@pytest.fixture
def responses(context: BrowserContext) -> list[Seen]:
    """Every response any page of the context received, with its body while it can be read."""
    seen: list[Seen] = []

    def record(response: Response) -> None:
        try:
            body: str | None = response.text()
        except Exception:  # noqa: BLE001 - redirects and CORS-blocked answers have no body
            body = None
        cookies = [value for name, value in _headers(response) if name == "set-cookie"]
        seen.append(Seen(response.url, response.status, body, cookies))

    context.on("response", record)
    return seen


def _headers(response: Response) -> list[tuple[str, str]]:
    try:
        return [(h["name"].lower(), h["value"]) for h in response.headers_array()]
    except Exception:  # noqa: BLE001 - the page went away before the headers were asked for
        return []


class Tab:
    """One tab of one SPA, recording what authserver answered it."""

    def __init__(self, context: BrowserContext, stack: Stack, spa: Spa | None = None) -> None:
        self.page = context.new_page()
        self.stack = stack
        self.spa = spa or stack.spa
        self.answers: list[tuple[str, int]] = []  # (path, status) of POSTs to authserver
        self.visited: list[str] = []  # every document the tab loaded (redirects included)
        self.page.on("response", self._seen)

    def _seen(self, response: Response) -> None:
        if response.request.resource_type == "document":
            self.visited.append(response.url)
        if response.url.startswith(self.stack.auth.url) and response.request.method == "POST":
            self.answers.append((response.url[len(self.stack.auth.url) :], response.status))

    def open(self) -> Tab:
        self.page.goto(self.spa.redirect_uri)
        self.wait_settled()
        return self

    def state(self) -> str:
        value: str = self.page.get_attribute("#app", "data-state") or ""
        return value

    def wait_settled(self) -> None:
        self.page.wait_for_selector("#app:not([data-state=starting])")

    def wait_for(self, state: str) -> None:
        self.page.wait_for_selector(f"#app[data-state={state}]")

    def reload_signed_in(self) -> None:
        """Reloads the page, which signs in again by itself through /refresh. Waits for that
        answer's event too: signed-in can show before Playwright has told this side of the
        answer, and `answers` then still ended with the /token before it (seen at load)."""
        with self.page.expect_response(lambda r: posted(r, "/refresh")):
            self.page.reload()
        self.wait_for("signed-in")

    def go_to_sign_in_page(self) -> None:
        """ "Sign in": the SPA sends the browser to /authorize, which shows the sign-in page."""
        with self.page.expect_navigation(url=f"{self.stack.auth.url}/login?**"):
            self.page.click("#sign-in")
        self.page.wait_for_selector("form input[name=password]")

    def submit_sign_in_page(self, expect: str = "signed-in") -> None:
        """Fill and send authserver's form; back at the SPA with a code, which it exchanges."""
        self.page.fill("input[name=username]", USERNAME)
        self.page.fill("input[name=password]", PASSWORD)
        with self.page.expect_response(lambda r: posted(r, "/token")) as answer:
            self.page.click("form button[type=submit]")
        assert answer.value.status == 200
        self.wait_for(expect)
        assert self.page.url == self.spa.redirect_uri  # the code is gone from the address bar

    def call_api_button_hidden(self) -> bool:
        return not self.page.is_visible("#call-api")

    def sign_in(self) -> None:
        self.go_to_sign_in_page()
        self.submit_sign_in_page()

    def sign_in_without_the_form(self) -> None:
        """Single sign-on: /authorize answers with a code at once, no form on the way."""
        with self.page.expect_response(lambda r: posted(r, "/token")) as answer:
            self.page.click("#sign-in")
        assert answer.value.status == 200
        self.wait_for("signed-in")

    def sign_out(self) -> None:
        """/logout, then RP-initiated logout at /end-session, which comes back to the SPA."""
        with (
            self.page.expect_response(lambda r: posted(r, "/logout")) as logged_out,
            self.page.expect_response(lambda r: "/end-session?" in r.url) as ended,
            self.page.expect_response(lambda r: posted(r, "/refresh")) as back,
        ):
            self.page.click("#logout")
        assert logged_out.value.status == 204
        assert ended.value.status == 303
        assert ended.value.headers["location"] == self.spa.redirect_uri
        assert back.value.status == 400  # the returned page finds no cookie
        self.wait_for("signed-out")

    def sign_out_confirmed(self) -> None:
        """As sign_out, for a SPA with no ID token to send as id_token_hint (a reload forgot
        it): authserver asks on a page of its own first, and the person clicks "Sign out"."""
        with (
            self.page.expect_response(lambda r: posted(r, "/logout")) as logged_out,
            self.page.expect_response(lambda r: "/end-session?" in r.url) as asked,
        ):
            self.page.click("#logout")
        assert logged_out.value.status == 204
        assert asked.value.status == 200  # the question, nothing ended yet
        self.page.wait_for_selector("form[action='/end-session'] button[type=submit]")
        assert "Sign out?" in self.page.inner_text("h1")
        with (
            self.page.expect_response(lambda r: posted(r, "/end-session")) as ended,
            self.page.expect_response(lambda r: posted(r, "/refresh")) as back,
        ):
            self.page.click("form[action='/end-session'] button[type=submit]")
        assert ended.value.status == 303
        assert ended.value.headers["location"] == self.spa.redirect_uri
        assert back.value.status == 400
        self.wait_for("signed-out")

    def refresh(self) -> dict[str, Any]:
        with self.page.expect_response(lambda r: posted(r, "/refresh")) as answer:
            self.page.click("#refresh")
        assert answer.value.status == 200
        body: dict[str, Any] = answer.value.json()
        return body

    def call_api(self) -> str:
        self.page.evaluate("document.querySelector('#api-result').textContent = ''")
        with self.page.expect_response(
            lambda r: r.url == self.stack.api and r.request.method == "GET"
        ) as answer:
            self.page.click("#call-api")
        assert answer.value.status == 200
        # A selector, not wait_for_function: the page's CSP forbids the eval that one needs.
        self.page.wait_for_selector("#api-result:not(:empty)")
        text: str = self.page.inner_text("#api-result")
        return text

    def storage(self) -> str:
        """Everything in this origin's localStorage and sessionStorage, as one string."""
        dump: str = self.page.evaluate(
            "JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
        )
        return dump


def posted(response: Response, path: str) -> bool:
    """A POST's answer (never a CORS preflight's) from an authserver path."""
    return response.url.endswith(path) and response.request.method == "POST"


def refresh_cookie(context: BrowserContext) -> dict[str, Any] | None:
    found = [dict(c) for c in context.cookies() if c["name"] == COOKIE]
    return found[0] if found else None


def issued_refresh_tokens(responses: list[Seen]) -> set[str]:
    """Every refresh token authserver set as the cookie in this test, from the Set-Cookie
    headers themselves (which no page can read)."""
    values = {
        header.split(";", 1)[0].removeprefix(f"{COOKIE}=")
        for seen in responses
        for header in seen.set_cookies
        if header.startswith(f"{COOKIE}=")
    }
    return values - {""}  # Max-Age=0 clears it with an empty value


def assert_never_readable(token: str, tabs: list[Tab], responses: list[Seen]) -> None:
    """The refresh token is in no body a page received, no storage and no document.cookie."""
    assert len(token) >= 32
    bodies = [seen for seen in responses if seen.body is not None]
    assert any(seen.url.endswith("/token") for seen in bodies)  # the exchange's was read
    assert [seen.url for seen in bodies if token in seen.body] == []  # type: ignore[operator]
    for tab in tabs:
        assert token not in tab.storage()
        assert tab.storage() == "[[],[]]"  # nothing at all, the PKCE round trip's state included
        assert tab.page.evaluate("document.cookie") == ""


def test_sign_in_with_the_code_flow_call_the_api_and_stay_signed_in_across_a_reload(
    context: BrowserContext, stack: Stack, responses: list[Seen], tmp_path: Path
) -> None:
    tab = Tab(context, stack).open()
    assert tab.state() == "signed-out"
    before = stack.auth.state()

    tab.go_to_sign_in_page()
    authorize = parse_qs(urlsplit(next(u for u in tab.visited if "/authorize?" in u)).query)
    assert authorize["code_challenge_method"] == ["S256"]
    assert len(authorize["code_challenge"][0]) == 43  # base64url of a SHA-256
    assert len(authorize["state"][0]) >= 43 and len(authorize["nonce"][0]) >= 43
    assert authorize["redirect_uri"] == [stack.spa.redirect_uri]
    tab.page.screenshot(path=tmp_path / "signin.png", full_page=True)
    assert (tmp_path / "signin.png").stat().st_size > 5_000
    tab.submit_sign_in_page()
    first = tab.call_api()
    assert first.startswith("200") and '"sub"' in first

    # The refresh token is in an HttpOnly, SameSite=Strict cookie script cannot see; the page
    # stores nothing anywhere, and no answer it could read carried the token.
    cookie = refresh_cookie(context)
    assert cookie is not None
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["domain"] == "127.0.0.1"
    exchange = next(seen for seen in responses if seen.url.endswith("/token"))
    assert exchange.status == 200 and exchange.body is not None
    assert "refresh_token" not in json.loads(exchange.body)
    assert any(cookie["value"] in header for header in exchange.set_cookies)
    assert_never_readable(cookie["value"], [tab], responses)

    tab.reload_signed_in()  # the silent refresh through the cookie
    assert tab.answers[-1] == ("/refresh", 200)
    rotated = refresh_cookie(context)
    assert rotated is not None and rotated["value"] != cookie["value"]
    assert tab.call_api().startswith("200")
    assert issued_refresh_tokens(responses) == {cookie["value"], rotated["value"]}
    for token in issued_refresh_tokens(responses):
        assert_never_readable(token, [tab], responses)
    tokens, spent, revoked = stack.auth.state()
    assert (tokens - before[0], spent - before[1], revoked - before[2]) == (2, 1, 0)

    # Signing out after the reload: no ID token to prove the request is the app's, so
    # authserver asks, and only the click on its page ends the login session.
    tab.sign_out_confirmed()
    assert stack.auth.state()[2] == revoked + 1
    tab.go_to_sign_in_page()  # the password is asked again


def test_a_german_browser_gets_the_sign_in_page_in_german(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    """API.md "Languages.": Chromium set to German (so its Accept-Language) gets the page in
    German, its errors too, at a phone's width, and the sign-in works as in English."""
    german = browser.new_context(locale="de-DE", viewport={"width": 375, "height": 740})
    german.set_default_timeout(TIMEOUT_MS)
    try:
        tab = Tab(german, stack).open()
        tab.go_to_sign_in_page()
        page = tab.page
        assert page.get_attribute("html", "lang") == "de"
        assert page.title() == f"Bei {stack.spa.client_id} anmelden"
        assert page.inner_text("label[for=username]") == "Benutzername"
        assert page.inner_text("form button[type=submit]") == "Anmelden"
        page.screenshot(path=tmp_path / "signin-de.png", full_page=True)

        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", "not the password")
        with page.expect_navigation():
            page.click("form button[type=submit]")
        alert = page.inner_text("[role=alert]")
        assert alert == "Der Benutzername oder das Passwort ist falsch."
        page.screenshot(path=tmp_path / "signin-de-error.png", full_page=True)
        # No horizontal scrolling at 375 px, the error sentence included.
        assert page.evaluate("document.documentElement.scrollWidth") <= 375

        tab.submit_sign_in_page()
        assert tab.call_api().startswith("200")
        for shot in ("signin-de.png", "signin-de-error.png"):
            assert (tmp_path / shot).stat().st_size > 5_000
    finally:
        german.close()


def test_a_second_app_signs_in_without_the_form_and_end_session_signs_out_both(
    context: BrowserContext, stack: Stack, responses: list[Seen]
) -> None:
    first = Tab(context, stack).open()
    first.sign_in()
    first_cookie = refresh_cookie(context)
    assert first_cookie is not None
    sub = json.loads(first.call_api().split("\n", 1)[1])["sub"]
    before = stack.auth.state()

    # Another app of the same authserver: the login session's cookie lets /authorize answer
    # with a code at once. (On load it tried the refresh cookie, which is the first app's:
    # refused as another client's, and nothing was spent.)
    second = Tab(context, stack, stack.second).open()
    assert second.state() == "signed-out"
    second.sign_in_without_the_form()
    assert [url for url in second.visited if "/login" in url] == []
    assert any("/authorize?" in url for url in second.visited)
    assert json.loads(second.call_api().split("\n", 1)[1])["sub"] == sub
    second_cookie = refresh_cookie(context)
    assert second_cookie is not None and second_cookie["value"] != first_cookie["value"]
    assert stack.auth.state() == (before[0] + 1, before[1], before[2])
    assert issued_refresh_tokens(responses) == {first_cookie["value"], second_cookie["value"]}
    for token in issued_refresh_tokens(responses):
        assert_never_readable(token, [first, second], responses)

    # Signing out of the second app ends the login session and every session it started.
    second.sign_out()
    assert stack.auth.state()[2] == before[2] + 2  # both apps' families are revoked
    second.page.reload()
    second.wait_settled()
    assert second.state() == "signed-out"
    assert second.answers[-1] == ("/refresh", 400)

    # The first app is signed out too: its refresh fails, even with its own last refresh
    # token put back in the jar.
    first.page.reload()
    first.wait_settled()
    assert first.state() == "signed-out"
    assert first.answers[-1] == ("/refresh", 400)
    context.add_cookies([first_cookie])  # type: ignore[list-item]
    with first.page.expect_response(lambda r: posted(r, "/refresh")) as answer:
        first.page.reload()
    assert answer.value.status == 400 and answer.value.json()["error"] == "invalid_grant"
    first.wait_for("signed-out")

    # And the next sign-in, in either app, asks for the password again.
    first.go_to_sign_in_page()


def test_a_sign_in_answer_this_tab_did_not_ask_for_is_not_exchanged(
    context: BrowserContext, stack: Stack
) -> None:
    # A link planted by someone else (login CSRF): a code, but no state this tab is waiting for.
    tab = Tab(context, stack)
    issuer = stack.auth.url
    tab.page.goto(f"{stack.spa.redirect_uri}?code=planted&state=guessed&iss={issuer}")
    tab.wait_for("signed-out")
    assert "not for this page" in tab.page.inner_text("#error")
    assert tab.page.url == stack.spa.redirect_uri  # the code is gone from the address bar
    assert [path for path, _ in tab.answers if path == "/token"] == []


def test_a_sign_in_answer_from_another_issuer_is_not_exchanged(
    context: BrowserContext, stack: Stack
) -> None:
    # Mix-up (RFC 9207): the right state, but the answer names another authorization server.
    tab = Tab(context, stack).open()

    def answer_as_another_server(route: Route) -> None:
        state = parse_qs(urlsplit(route.request.url).query)["state"][0]
        forged = f"{stack.spa.redirect_uri}?code=theirs&state={state}&iss=https://evil.example"
        route.fulfill(status=302, headers={"Location": forged})

    tab.page.route(f"{stack.auth.url}/authorize?*", answer_as_another_server)
    tab.page.click("#sign-in")
    tab.page.wait_for_url(stack.spa.redirect_uri)
    tab.wait_for("signed-out")
    assert "unexpected server" in tab.page.inner_text("#error")
    assert [path for path, _ in tab.answers if path == "/token"] == []
    assert tab.storage() == "[[],[]]"  # the round trip's verifier is gone all the same


def test_an_id_token_for_another_request_is_refused(context: BrowserContext, stack: Stack) -> None:
    # The exchange's answer carries an ID token whose nonce is not this request's.
    tab = Tab(context, stack).open()

    def other_nonce(route: Route) -> None:
        real = route.fetch()
        body = real.json()
        body["id_token"] = _with_claim(body["id_token"], "nonce", "another-request")
        route.fulfill(response=real, body=json.dumps(body))

    tab.page.route(f"{stack.auth.url}/token", other_nonce)
    tab.go_to_sign_in_page()
    tab.submit_sign_in_page(expect="signed-out")
    assert "did not match" in tab.page.inner_text("#error")
    assert tab.call_api_button_hidden()


def _with_claim(token: str, name: str, value: str) -> str:
    """`token` with one payload claim changed (its signature no longer matches: the SPA relies
    on the connection it made, not on the signature, as OpenID Connect Core §3.1.3.7 allows)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims[name] = value
    encoded = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


def test_the_access_token_is_refreshed_shortly_before_it_expires(
    context: BrowserContext, stack: Stack
) -> None:
    tab = Tab(context, stack)
    tab.page.clock.install()
    tab.open()
    tab.sign_in()
    before = stack.auth.state()

    # expires_in is 900 s: the SPA refreshes a minute before. Only the page's clock moved, so
    # it now runs 841 s ahead of authserver's: the first DPoP proof is refused as made for the
    # future (RFC 9449 §11.1), and the page, told authserver's time by its Date header, sends
    # the request once more with a proof dated by it. Nothing was spent by the refusal.
    with tab.page.expect_response(lambda r: posted(r, "/refresh") and r.ok) as answer:
        tab.page.clock.run_for(841_000)
    assert answer.value.status == 200
    assert tab.answers[-2:] == [("/refresh", 400), ("/refresh", 200)]
    tab.wait_for("signed-in")
    assert stack.auth.state() == (before[0] + 1, before[1] + 1, before[2])
    assert tab.call_api().startswith("200")  # the API's proof is dated by authserver's clock too


def test_two_tabs_refresh_at_once_without_killing_the_session(
    context: BrowserContext, stack: Stack
) -> None:
    first = Tab(context, stack).open()
    first.sign_in()
    second = Tab(context, stack).open()  # a new tab picks the session up through the cookie
    assert second.state() == "signed-in"
    before = stack.auth.state()

    # Both tabs refresh at the same instant. Each refresh spends the cookie's token, so done
    # blindly the second would present a spent token and revoke the family; the SPA takes a
    # Web Lock around every refresh, so the second waits and presents the first one's new token.
    for _ in range(3):
        with (
            first.page.expect_response(lambda r: posted(r, "/refresh")) as one,
            second.page.expect_response(lambda r: posted(r, "/refresh")) as two,
        ):
            first.page.evaluate("document.querySelector('#refresh').click()")
            second.page.evaluate("document.querySelector('#refresh').click()")
        assert (one.value.status, two.value.status) == (200, 200)

    assert first.call_api().startswith("200")
    assert second.call_api().startswith("200")
    tokens, spent, revoked = stack.auth.state()
    assert (tokens - before[0], spent - before[1], revoked - before[2]) == (6, 6, 0)


def test_sign_out_ends_the_session_in_every_tab_and_refresh_fails(
    context: BrowserContext, stack: Stack
) -> None:
    first = Tab(context, stack).open()
    first.sign_in()
    second = Tab(context, stack).open()
    assert second.state() == "signed-in"
    before = stack.auth.state()
    cookie = refresh_cookie(context)
    assert cookie is not None

    first.sign_out()  # /logout, then /end-session and back
    second.wait_for("signed-out")  # told through a BroadcastChannel
    assert refresh_cookie(context) is None  # cleared by Max-Age=0
    assert stack.auth.state()[2] == before[2] + 1  # the family is revoked

    second.page.reload()
    second.wait_settled()
    assert second.state() == "signed-out"
    assert second.answers[-1] == ("/refresh", 400)  # no cookie: invalid_request

    # Even with the last refresh token put back in the jar, the session is over.
    context.add_cookies([cookie])  # type: ignore[list-item]
    second.page.reload()
    second.wait_settled()
    assert second.state() == "signed-out"
    assert second.answers[-1] == ("/refresh", 400)  # invalid_grant
    assert stack.auth.state() == (before[0], before[1], before[2] + 1)

    # The login session ended too: signing in again asks for the password.
    first.go_to_sign_in_page()


def test_another_site_cannot_sign_the_browser_out(context: BrowserContext, stack: Stack) -> None:
    # Logout CSRF: a link elsewhere leads the browser to /end-session with its login-session
    # cookie. Without the app's ID token of this user, authserver asks and ends nothing.
    spa = Tab(context, stack).open()
    spa.sign_in()
    before = stack.auth.state()
    evil = context.new_page()
    evil.goto(f"http://localhost:{stack.foreign_port}/sign-out.html")
    with evil.expect_navigation(url=f"{stack.auth.url}/end-session?**") as landed:
        evil.click("#go")
    assert landed.value is not None and landed.value.status == 200
    assert "Sign out?" in evil.inner_text("h1")

    assert stack.auth.state() == before  # nothing revoked
    spa.refresh()
    # The login session lives: another app still signs in without the form.
    second = Tab(context, stack, stack.second).open()
    second.sign_in_without_the_form()
    assert [url for url in second.visited if "/login" in url] == []

    # The person may still mean it: the page, reached from the other site, signs out.
    with evil.expect_response(lambda r: posted(r, "/end-session")) as ended:
        evil.click("form[action='/end-session'] button[type=submit]")
    assert ended.value.status == 200
    evil.wait_for_selector("text=You are signed out")
    assert stack.auth.state()[2] == before[2] + 2  # both apps' families


def test_another_sites_form_post_is_posted_again_and_asked_about(
    context: BrowserContext, stack: Stack
) -> None:
    # A cross-site POST comes without the SameSite=Lax login-session cookie: authserver ends
    # and clears nothing, and its own page posts the request again, same-site, so the cookie
    # comes along and the person is asked, as for a link.
    spa = Tab(context, stack).open()
    spa.sign_in()
    before = stack.auth.state()
    evil = context.new_page()
    evil.goto(f"http://localhost:{stack.foreign_port}/sign-out-form.html")
    with evil.expect_response(lambda r: posted(r, "/end-session")) as first:
        evil.click("#go")
    assert first.value.status == 200
    evil.wait_for_selector("text=Sign out?")

    assert stack.auth.state() == before  # nothing revoked
    spa.refresh()  # its refresh cookie is still there
    second = Tab(context, stack, stack.second).open()
    second.sign_in_without_the_form()
    assert [url for url in second.visited if "/login" in url] == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["same-site", "cross-site"])
def test_a_foreign_origin_gets_nothing_from_the_refresh_cookie(
    context: BrowserContext, stack: Stack, host: str
) -> None:
    spa = Tab(context, stack).open()
    spa.sign_in()
    cookie = refresh_cookie(context)
    before = stack.auth.state()
    foreign = f"http://{host}:{stack.foreign_port}"
    evil = context.new_page()
    bodies: list[tuple[int, str]] = []

    def record(response: Response) -> None:
        if response.url.startswith(stack.auth.url):
            try:
                bodies.append((response.status, response.text()))
            except Exception:  # noqa: BLE001 - a CORS-blocked body may be unavailable
                bodies.append((response.status, ""))

    evil.on("response", record)

    # fetch with credentials: CORS hides the answer ("cors" fails, "no-cors" is opaque).
    evil.goto(f"{foreign}/fetch.html")
    attempts: list[dict[str, Any]] = evil.evaluate("window.attempts")
    assert [a["mode"] for a in attempts] == ["cors", "no-cors"]
    assert "TypeError" in attempts[0]["error"]
    assert attempts[1]["type"] == "opaque" and attempts[1]["text"] == ""

    # A form post navigates to authserver's answer: an error, never a token.
    evil.goto(f"{foreign}/form.html")
    with evil.expect_navigation():
        evil.evaluate("document.forms[0].submit()")
    assert "access_token" not in evil.content()
    assert "invalid_request" in evil.content()

    for status, text in bodies:
        assert "access_token" not in text
        assert status in (400, 403)
    if host == "127.0.0.1":
        # Same site: the browser did send the cookie, and the Origin check refused it.
        assert {status for status, _ in bodies} == {403}
    assert stack.auth.state() == before  # nothing rotated, nothing revoked
    assert refresh_cookie(context) == cookie

    spa.refresh()  # the real SPA's session is unharmed
    assert stack.auth.state()[1] == before[1] + 1


def test_the_account_page_ends_another_browsers_app_and_its_refresh_fails(
    browser: Browser, context: BrowserContext, stack: Stack, tmp_path: Path
) -> None:
    """API.md "The account page.": one browser signs in to the SPA; another, at a phone's
    width, opens /account (the sign-in page first, then back), sees that app by its client's
    name and ends it; the first browser's next refresh fails."""
    app = Tab(context, stack).open()
    app.sign_in()
    phone = browser.new_context(viewport={"width": 375, "height": 740})
    phone.set_default_timeout(TIMEOUT_MS)
    try:
        page = phone.new_page()
        page.goto(f"{stack.auth.url}/account")
        assert page.url == f"{stack.auth.url}/login?then=account"
        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation(url=f"{stack.auth.url}/account"):
            page.click("form button[type=submit]")
        assert page.inner_text("h1") == "Your account"
        assert "(this browser)" in page.inner_text("body")
        page.screenshot(path=tmp_path / "account.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375

        # A wrong current password: the page again, with its sentence, nothing changed.
        page.fill("input[name=current_password]", "not the password")
        page.fill("input[name=new_password]", "another long passphrase")
        with page.expect_navigation():
            page.click("form[action='/account/password'] button[type=submit]")
        assert page.inner_text("[role=alert]") == "The current password is wrong."
        page.screenshot(path=tmp_path / "account-error.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375

        # Every session of that app (the module's other tests may have left some).
        apps = page.locator("li", has=page.locator("input[name=kind][value=app]")).filter(
            has_text=stack.spa.client_id
        )
        assert apps.count() >= 1
        while apps.count():
            with page.expect_navigation(url=f"{stack.auth.url}/account?done=ended"):
                apps.first.locator("button[type=submit]").click()
            assert page.inner_text("[role=status]") == "The session was ended."
    finally:
        phone.close()

    app.page.reload()
    app.wait_settled()
    assert app.state() == "signed-out"
    assert app.answers[-1] == ("/refresh", 400)
    for shot in ("account.png", "account-error.png"):
        assert (tmp_path / shot).stat().st_size > 5_000


# --- DPoP (RFC 9449): the SPA's tokens are bound to a key the page cannot read back ---------

# Facts about the page's key, asked of dpop.js in the running page (the module instance app.js
# imported: one URL, one module).
_KEY_FACTS = """async (origin) => {
  const dpop = await import(origin + "/dpop.js");
  const { privateKey } = await dpop.key();
  const refusal = async (key, format) => {
    try { await crypto.subtle.exportKey(format, key); return null; } catch (e) { return e.name; }
  };
  // The key as IndexedDB keeps it, read directly: a reload finds it there.
  const stored = await new Promise((resolve, reject) => {
    const opening = indexedDB.open("authserver-dpop");
    opening.onerror = () => reject(opening.error);
    opening.onsuccess = () => {
      const read = opening.result.transaction("keys").objectStore("keys").get("dpop");
      read.onerror = () => reject(read.error);
      read.onsuccess = () => { opening.result.close(); resolve(read.result); };
    };
  });
  return {
    thumbprint: await dpop.thumbprint(),
    algorithm: privateKey.algorithm,
    extractable: privateKey.extractable,
    jwk: await refusal(privateKey, "jwk"),
    pkcs8: await refusal(privateKey, "pkcs8"),
    storedExtractable: stored.privateKey.extractable,
    storedPkcs8: await refusal(stored.privateKey, "pkcs8"),
  };
}"""


def tokens_in_memory(tab: Tab) -> list[dict[str, Any]]:
    """The DPoP-bound access tokens in the page's JavaScript heap, newest first: what a heap dump
    (an attacker with the debugger, a crash report, a memory-reading exploit) would take. The
    token lives in a module variable no script can reach, so the test reads the heap itself
    through the DevTools protocol."""
    cdp = tab.page.context.new_cdp_session(tab.page)
    chunks: list[str] = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))
    cdp.send("HeapProfiler.enable")
    cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    cdp.detach()
    found = {}
    for text in json.loads("".join(chunks))["strings"]:
        parts = text.split(".")
        if len(parts) != 3 or not text.startswith("eyJ") or len(text) > 4096:
            continue
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            continue
        if isinstance(claims, dict) and "cnf" in claims:
            found[text] = claims
    return [
        {"token": token, "claims": claims}
        for token, claims in sorted(found.items(), key=lambda item: -item[1]["iat"])
    ]


def test_dpop_a_token_taken_out_of_the_page_is_refused_elsewhere_and_the_key_stays_put(
    context: BrowserContext, stack: Stack, responses: list[Seen]
) -> None:
    tab = Tab(context, stack).open()
    proofs: list[str] = []
    tab.page.on(
        "request",
        lambda r: proofs.append(r.url) if r.headers.get("dpop") and r.method != "OPTIONS" else None,
    )
    tab.sign_in()
    exchange = next(s for s in responses if s.url.endswith("/token") and s.status == 200)
    assert exchange.body is not None and json.loads(exchange.body)["token_type"] == "DPoP"
    assert tab.call_api().startswith("200")
    assert proofs == [f"{stack.auth.url}/token", stack.api]

    # The key: ES256, made with extractable false, and WebCrypto refuses to export it, both
    # the page's copy and the one IndexedDB holds.
    facts = tab.page.evaluate(_KEY_FACTS, stack.spa.origin)
    assert facts["algorithm"] == {"name": "ECDSA", "namedCurve": "P-256"}
    assert facts["extractable"] is False and facts["storedExtractable"] is False
    assert facts["jwk"] == facts["pkcs8"] == facts["storedPkcs8"] == "InvalidAccessError"

    # The access token, out of the page's memory: bound to the page's key.
    found = tokens_in_memory(tab)
    assert found, "no DPoP-bound access token in the page's heap"
    token, claims = found[0]["token"], found[0]["claims"]
    assert claims["cnf"] == {"jkt": facts["thumbprint"]}
    assert claims["client_id"] == stack.spa.client_id

    # Replayed from outside. As a Bearer token: the API and /userinfo refuse it, saying DPoP.
    with httpx.Client(trust_env=False, timeout=10) as outside:
        userinfo = f"{stack.auth.url}/userinfo"
        for url in (stack.api, userinfo):
            answer = outside.get(url, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, (url, answer.text)
            assert answer.headers["www-authenticate"].startswith("DPoP ")
            assert answer.json()["error"] == "invalid_token"
        # With a proof of the thief's own key, made for exactly this request: refused.
        thief = DPoPKey()
        for url in (stack.api, userinfo):
            proof = thief.proof(method="GET", access_token=token, htu=url)
            answer = outside.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
            assert answer.status_code == 401, (url, answer.text)
            assert answer.json()["error"] == "invalid_dpop_proof"

    # The page itself still gets through with the same token.
    assert tab.call_api().startswith("200")

    # A reload: the key comes back from IndexedDB, the bound refresh token rotates with a proof
    # of it (another key would revoke the session), and the new token is bound to the same key.
    before = stack.auth.state()
    tab.reload_signed_in()
    assert tab.answers[-1] == ("/refresh", 200)
    refreshed = [s for s in responses if s.url.endswith("/refresh") and s.status == 200][-1]
    assert refreshed.body is not None and json.loads(refreshed.body)["token_type"] == "DPoP"
    assert tab.page.evaluate(_KEY_FACTS, stack.spa.origin)["thumbprint"] == facts["thumbprint"]
    assert tab.call_api().startswith("200")
    after = tokens_in_memory(tab)[0]
    assert after["token"] != token and after["claims"]["cnf"] == {"jkt": facts["thumbprint"]}
    assert stack.auth.state() == (before[0] + 1, before[1] + 1, before[2])
    assert tab.refresh()["token_type"] == "DPoP"  # "Refresh now" too


def test_with_dpop_off_the_spa_gets_bearer_tokens(context: BrowserContext, stack: Stack) -> None:
    """config.dpop false: no proofs, plain bearer tokens, which the API takes as before."""
    bearer = Spa(stack.spa.client_id, stack.spa.origin, dpop=False)
    tab = Tab(context, stack)
    tab.page.route(
        f"{stack.spa.origin}/config.js",
        lambda route: route.fulfill(
            content_type="text/javascript", body=bearer.config(stack.auth.url, stack.api)
        ),
    )
    proofs: list[str] = []
    tab.page.on("request", lambda r: proofs.append(r.url) if r.headers.get("dpop") else None)
    tab.open()
    tab.go_to_sign_in_page()
    with tab.page.expect_response(lambda r: posted(r, "/token")) as answer:
        tab.page.fill("input[name=username]", USERNAME)
        tab.page.fill("input[name=password]", PASSWORD)
        tab.page.click("form button[type=submit]")
    assert answer.value.json()["token_type"] == "Bearer"
    tab.wait_for("signed-in")
    assert tab.call_api().startswith("200")
    assert tab.refresh()["token_type"] == "Bearer"
    assert proofs == []


def test_dpop_two_tabs_making_the_key_at_once_keep_one(
    context: BrowserContext, stack: Stack
) -> None:
    """Two copies of dpop.js (two tabs, as far as IndexedDB can tell) find no key at the same
    moment and both make one: the first stored wins and the other adopts it, so the origin's
    tabs never prove with two keys (which would revoke the session at the next refresh)."""
    tab = Tab(context, stack).open()
    thumbprints = tab.page.evaluate(
        """async (origin) => {
          await new Promise((resolve, reject) => {
            const deleting = indexedDB.deleteDatabase("authserver-dpop");
            deleting.onsuccess = resolve;
            deleting.onerror = () => reject(deleting.error);
          });
          const copies = await Promise.all(
            ["one", "two"].map((copy) => import(`${origin}/dpop.js?${copy}`)));
          return Promise.all(copies.map((copy) => copy.thumbprint()));
        }""",
        stack.spa.origin,
    )
    assert len(set(thumbprints)) == 1
    # And the page's own copy, asked afresh after a reload, proves with that key.
    tab.page.reload()
    tab.wait_settled()
    assert tab.page.evaluate(_KEY_FACTS, stack.spa.origin)["thumbprint"] == thumbprints[0]


# --- DPoP server nonces (RFC 9449 §8, §9): authserver and the API each ask for their own -----


@dataclass
class NonceStack:
    auth: AuthServer
    spa: Spa
    api: str
    api_nonces: Nonces  # the API's own, to make a stale one of


@pytest.fixture(scope="module")
def nonce_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NonceStack]:
    """authserver with AUTHSERVER_DPOP_NONCE=on, and the example API with nonces of its own."""
    workdir = tmp_path_factory.mktemp("e2e-nonce")
    files: dict[str, tuple[str, str]] = {}
    nonces = Nonces([secrets.token_bytes(32)])
    with static_server(SPA_DIR, files) as port:
        spa = Spa(CLIENT_ID, f"http://127.0.0.1:{port}")
        with (
            authserver(workdir, [spa], {"AUTHSERVER_DPOP_NONCE": "on"}) as auth,
            api(auth.url, [spa.origin], nonces) as api_url,
        ):
            files["/config.js"] = ("text/javascript", spa.config(auth.url, api_url))
            yield NonceStack(auth, spa, api_url, nonces)


def _proof_claims(proof: str) -> dict[str, Any]:
    payload = proof.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


_WATCH_FETCH = """
  const realFetch = window.fetch;
  window.fetch = async (...args) => {
    const response = await realFetch(...args);
    const body = await response.clone().text().catch(() => "");
    if (body.includes("use_dpop_nonce")) await window.dpopRefused(response.url);
    return response;
  };
"""


def call_api(tab: Tab) -> str:
    """As Tab.call_api, where the API's first answer may be a refusal the page answers itself."""
    tab.page.evaluate("document.querySelector('#api-result').textContent = ''")
    tab.page.click("#call-api")
    tab.page.wait_for_selector("#api-result:not(:empty)")
    text: str = tab.page.inner_text("#api-result")
    return text


def test_dpop_nonces_are_taken_from_each_server_and_asked_for_once_per_tab(
    context: BrowserContext, nonce_stack: NonceStack
) -> None:
    stack = nonce_stack
    api_origin = stack.api.split("/api/", 1)[0]
    sent: list[tuple[str, str | None]] = []  # (url, the proof's nonce) of every request with one
    refused: list[str] = []  # the URLs answered `use_dpop_nonce`, as the page's fetch saw them
    context.on(
        "request",
        lambda r: (
            sent.append((r.url, _proof_claims(r.headers["dpop"]).get("nonce")))
            if r.headers.get("dpop") and r.method != "OPTIONS"
            else None
        ),
    )
    # Playwright reports no response for a 401 with a WWW-Authenticate challenge (Chromium's
    # HTTP auth machinery takes it), so the page's own fetch tells us what it was answered.
    context.expose_function("dpopRefused", lambda url: refused.append(url))
    context.add_init_script(_WATCH_FETCH)

    def asked(origin: str) -> int:
        """How many answers so far were `use_dpop_nonce` from that server."""
        return sum(1 for url in refused if url.startswith(origin))

    def counts() -> tuple[int, int]:
        return asked(stack.auth.url), asked(api_origin)

    tab = Tab(context, stack).open()  # type: ignore[arg-type]
    # The tab's first proof to authserver has no nonce: refused, and sent again with one.
    assert counts() == (1, 0)
    tab.sign_in()  # the exchange's proof carries the nonce of the last answer
    assert call_api(tab).startswith("200")
    assert counts() == (1, 1)  # the API's nonce is its own: asked for once
    assert call_api(tab).startswith("200")
    assert tab.refresh()["token_type"] == "DPoP"
    # The tab keeps them (sessionStorage) across the sign-in round trip and a reload.
    tab.reload_signed_in()
    assert tab.answers[-1] == ("/refresh", 200)
    assert call_api(tab).startswith("200")
    assert counts() == (1, 1)  # fresh nonces: never asked again

    # A nonce gone stale while the tab was idle (the API's, five minutes old: this test does not
    # wait for one): the API asks for a new one, and the page retries once with it.
    stale = stack.api_nonces.issue(now=time.time() - 300)

    def stale_nonce(route: Route) -> None:
        answer = route.fetch()
        route.fulfill(response=answer, headers={**answer.headers, "dpop-nonce": stale})

    tab.page.route(stack.api, stale_nonce, times=1)
    assert call_api(tab).startswith("200")
    assert counts() == (1, 1)
    assert call_api(tab).startswith("200")
    assert counts() == (1, 2)
    assert [nonce for url, nonce in sent if url == stack.api][-2] == stale  # refused, redone

    # /logout with the bound token's proof and the latest nonce; after the reload the page has
    # no ID token, so authserver asks before it ends the login session.
    tab.sign_out_confirmed()
    assert counts() == (1, 2)
    # Only the first proof to each server went without a nonce.
    assert [url for url, nonce in sent if nonce is None] == [
        f"{stack.auth.url}/refresh",
        stack.api,
    ]


def test_dpop_nonces_with_the_device_clock_ten_minutes_off(
    context: BrowserContext, nonce_stack: NonceStack
) -> None:
    """A proof with neither the nonce nor a good `iat` is answered `use_dpop_nonce` (with
    nonces on, authserver says only that): the page takes both the nonce and authserver's time
    from that answer, so its one retry is right on both counts."""
    stack = nonce_stack
    tab = Tab(context, stack)  # type: ignore[arg-type]
    tab.page.clock.install(time=time.time() + 600)
    tab.open()
    assert tab.answers == [("/refresh", 400), ("/refresh", 400)]  # the nonce, then no cookie
    tab.go_to_sign_in_page()
    tab.page.fill("input[name=username]", USERNAME)
    tab.page.fill("input[name=password]", PASSWORD)
    tab.page.click("form button[type=submit]")
    tab.wait_for("signed-in")
    # The page's idea of authserver's time is a variable, gone with the sign-in round trip (its
    # nonce is kept): the exchange's first proof is refused for its `iat` and redone once.
    assert [a for a in tab.answers if a[0] == "/token"] == [("/token", 400), ("/token", 200)]
    assert call_api(tab).startswith("200")  # the API's proof dated by authserver's clock too
    assert tab.refresh()["token_type"] == "DPoP"
