"""The consent page in a real browser (issue 25): Debian's Chromium, headless, against a real
`authserver serve` with AUTHSERVER_REGISTRATION=open, the apps registered through /register as
an MCP client would (so third-party: consent). One browser walks it all:

sign in → the consent page (the app's name, its redirect host, the scopes and the resource in
words) → Allow → a code → tokens for the resource; the same again skips the page; more scopes
ask again, and Deny answers access_denied; prompt=consent asks again; the account page lists
the app and revoking it ends its refresh tokens. Clickjacking: the page's headers forbid
framing, and a page of another origin framing it gets nothing shown.

The app's https redirect URI is served by nobody: the browser's request to it is where the
code is read. Screenshots of the page (normal, the loopback
warning, German, 375 px) go to E2E_SCREENSHOTS_DIR when set, for a person to look at.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.servers import PASSWORD, USERNAME, AuthServer, authserver
from tests.e2e.test_accounts_chromium import DESKTOP, PHONE, shoot
from tests.e2e.test_spa_chromium import ARGS, TIMEOUT_MS, chromium  # noqa: F401 - a fixture
from tests.http.signin import pkce_pair

pytestmark = pytest.mark.slow

APP = "https://calendar.example/cb"  # nothing serves it: the browser's request is read
API = "https://api.example/"
EVIL = "http://evil.example/"  # another origin, trying to frame the page


def registered(auth: AuthServer, name: str, redirect_uri: str) -> str:
    """An app registered through POST /register (open mode): third-party; its client_id."""
    body = {
        "redirect_uris": [redirect_uri],
        "client_name": name,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid profile email read",
    }
    answer = httpx.post(f"{auth.url}/register", json=body, timeout=10, trust_env=False)
    assert answer.status_code == 201, answer.text
    client_id: str = answer.json()["client_id"]
    return client_id


class App:
    """The app's side of one authorization: its PKCE pair, the URL it sends the browser to."""

    def __init__(self, auth: AuthServer, client_id: str, redirect_uri: str = APP, **extra: str):
        self.auth, self.client_id, self.redirect_uri = auth, client_id, redirect_uri
        self.verifier, challenge = pkce_pair()
        self.state = secrets.token_urlsafe(8)
        params = {
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "state": self.state, "code_challenge": challenge, "code_challenge_method": "S256",
            **extra,
        }  # fmt: skip
        self.url = f"{auth.url}/authorize?{urlencode(params)}"

    def answer(self, location: str) -> dict[str, str]:
        assert location.startswith(self.redirect_uri + "?"), location
        got = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert got["state"] == self.state and got["iss"] == self.auth.url, got
        return got

    def tokens(self, code: str) -> dict[str, str]:
        fields = {
            "grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
            "code_verifier": self.verifier, "client_id": self.client_id,
        }  # fmt: skip
        response = httpx.post(f"{self.auth.url}/token", data=fields, timeout=10, trust_env=False)
        assert response.status_code == 200, response.text
        body: dict[str, str] = response.json()
        return body


def refreshed(auth: AuthServer, client_id: str, refresh_token: str) -> httpx.Response:
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    return httpx.post(f"{auth.url}/token", data=fields, timeout=10, trust_env=False)


def to_app(page: Page, action: Callable[[], object]) -> str:
    """What `action` (a goto, a click) sends the browser to at the app: the redirect URI with
    the answer. The app's host is not served (nothing listens for it), so the browser's own
    request is what is read, and its failing to load is no error here."""
    with page.expect_request(lambda request: request.url.startswith(APP + "?")) as sent:
        try:
            action()
        except PlaywrightError as exc:
            if "net::ERR_" not in exc.message and "chrome-error:" not in exc.message:
                raise
    # Settled on the browser's error page, then off it, so the next navigation is not cut
    # short by it.
    page.wait_for_url(lambda url: url.startswith("chrome-error:"))
    page.wait_for_load_state()
    page.goto("about:blank")
    return sent.value.url


def consent_page_shown(page: Page) -> None:
    """The browser is on the consent page (not already back at the app)."""
    assert urlsplit(page.url).path == "/consent", page.url
    assert page.locator("button[value=allow]").count() == 1


def test_consent_in_chromium(chromium: Path, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    settings = {"AUTHSERVER_REGISTRATION": "open"}
    user = ("--scope", "read", "--scope", "email")  # the API's scope, and one to ask later
    with authserver(tmp_path, [], settings, user) as auth, sync_playwright() as playwright:
        auth.cli("resources", "create", API, "--scope", "read", "--access-token-ttl", "300")
        calendar = registered(auth, "Calendar", APP)
        local = registered(auth, "Local Tool", "http://127.0.0.1:9/cb")
        browser = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            walk(browser, auth, calendar, local)
            framed(browser, auth, calendar)
        finally:
            browser.close()


def walk(browser: Browser, auth: AuthServer, calendar: str, local: str) -> None:
    page = browser.new_page(viewport=DESKTOP)
    page.set_default_timeout(TIMEOUT_MS)

    # Sign in, then the consent page: who asks, where the answer goes, what, in words.
    first = App(auth, calendar, scope="openid profile read", resource=API)
    page.goto(first.url)
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    with page.expect_navigation(url=lambda url: "/consent" in url) as shown:
        page.click("button[type=submit]")
    response = shown.value
    assert response is not None
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    consent_page_shown(page)
    assert "Allow Calendar access?" in page.inner_text("h1")
    lead = page.inner_text(".lead")
    assert USERNAME in lead and "calendar.example" in lead
    asked = page.inner_text("#asked")
    assert "Know who you are on this server" in asked
    assert "See your name and profile" in asked
    assert "Use the permission “read”" in asked
    assert "Use the service at api.example (https://api.example/) for you" in asked
    assert page.locator("text=loopback address").count() == 0
    shoot(page, "consent")
    page.set_viewport_size(PHONE)
    shoot(page, "consent-375px")
    page.set_viewport_size(DESKTOP)
    page.set_extra_http_headers({"Accept-Language": "de"})
    page.reload()
    assert page.locator("html").get_attribute("lang") == "de"
    assert "Erlauben" in page.inner_text("form")
    shoot(page, "consent-de")
    page.set_extra_http_headers({"Accept-Language": "en"})
    page.reload()

    # Allow: the code, and tokens for the resource.
    landed = to_app(page, lambda: page.click("button[value=allow]"))
    tokens = first.tokens(first.answer(landed)["code"])
    assert tokens["scope"] == "openid profile read"  # the identity scopes and the API's

    # The same again: single sign-on, no page.
    again = App(auth, calendar, scope="openid profile", resource=API)
    assert "code" in again.answer(to_app(page, lambda: page.goto(again.url)))

    # More (email): asked again; Deny is access_denied at the app.
    more = App(auth, calendar, scope="openid profile email")
    page.goto(more.url)
    consent_page_shown(page)
    assert "See your email address" in page.inner_text("#asked")
    denied = to_app(page, lambda: page.click("button[value=deny]"))
    assert more.answer(denied)["error"] == "access_denied"

    # prompt=consent asks though the grant covers it.
    forced = App(auth, calendar, scope="openid", prompt="consent")
    page.goto(forced.url)
    consent_page_shown(page)
    assert "code" in forced.answer(to_app(page, lambda: page.click("button[value=allow]")))

    # An app whose every redirect URI is on this computer: the warning.
    page.goto(App(auth, local, redirect_uri="http://127.0.0.1:9/cb", scope="openid").url)
    consent_page_shown(page)
    assert "loopback address" in page.inner_text(".error")
    shoot(page, "consent-loopback")
    page.set_viewport_size(PHONE)
    shoot(page, "consent-loopback-375px")
    page.set_viewport_size(DESKTOP)

    # The account page lists the app; revoking ends its refresh tokens.
    live = refreshed(auth, calendar, tokens["refresh_token"])
    assert live.status_code == 200, live.text
    page.goto(f"{auth.url}/account")
    allowed = page.locator("section[aria-labelledby=allowed-heading]")
    assert "Calendar" in allowed.inner_text()
    allowed.locator("li", has_text="Calendar").locator("button").click()
    page.wait_for_url("**/account?done=app_revoked")
    assert "Calendar" not in page.locator("section[aria-labelledby=allowed-heading]").inner_text()
    dead = refreshed(auth, calendar, live.json()["refresh_token"])
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    page.close()


def framed(browser: Browser, auth: AuthServer, calendar: str) -> None:
    """A page of another origin frames the consent page (to overlay a decoy over Allow):
    Chromium refuses to render it, per the page's frame-ancestors and X-Frame-Options."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    # Signed in in this browser too, so the page would have something to show.
    page.goto(App(auth, calendar, scope="openid").url)
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/consent?*")
    target = page.url

    def evil(route: Route) -> None:
        html = f'<h1>Win a prize</h1><iframe id="f" src="{target}" width="600" height="400">'
        route.fulfill(status=200, content_type="text/html", body=html + "</iframe>")

    page.route(EVIL + "**", evil)
    page.goto(EVIL)
    page.wait_for_timeout(1500)  # the frame's load, refused
    [frame] = [f for f in page.frames if f != page.main_frame]
    # Chromium shows its error page in place of a refused frame: nothing of ours is in it.
    assert frame.url.startswith("chrome-error:"), frame.url
    assert frame.locator("button[value=allow]").count() == 0
    shoot(page, "consent-framed")
    context.close()
