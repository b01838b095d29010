"""examples/spa/ in a real browser: Debian's Chromium, headless, driven by Playwright.

authserver (real uvicorn, `authserver serve`), the SPA and the protected API each run on their
own loopback port, so CORS, the Origin check and the SameSite cookie all happen for real: the
SPA on http://127.0.0.1:A and authserver on http://127.0.0.1:B are different origins of one
site, so the `SameSite=Strict` cookie travels, and only the Origin check keeps a same-site
foreign page out. A page on http://localhost:D is another site altogether.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Response, sync_playwright

from tests.e2e.servers import (
    PASSWORD,
    SPA_DIR,
    USERNAME,
    AuthServer,
    api,
    authserver,
    foreign_pages,
    spa_config,
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
    if not CHROMIUM.exists() and os.environ.get("CI"):
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(
                command,
                check=True,
                timeout=900,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                stdout=subprocess.DEVNULL,
            )
        if not CHROMIUM.exists():
            pytest.fail(f"apt-get install chromium did not provide {CHROMIUM}")
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
    spa: str  # the SPA's origin, the only one authserver allows
    api: str
    foreign_port: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e")
    overrides: dict[str, tuple[str, str]] = {}
    with static_server(SPA_DIR, overrides) as spa_port:
        spa = f"http://127.0.0.1:{spa_port}"
        with authserver(workdir, allowed_origin=spa) as auth, api(auth.url, spa) as api_url:
            overrides["/config.js"] = ("text/javascript", spa_config(auth.url, api_url))
            foreign_dir = workdir / "foreign"
            foreign_dir.mkdir()
            with static_server(foreign_dir, foreign_pages(auth.url)) as foreign_port:
                yield Stack(auth, spa, api_url, foreign_port)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile per test: its own cookie jar."""
    created = browser.new_context()
    created.set_default_timeout(TIMEOUT_MS)
    yield created
    created.close()


class Tab:
    """One tab of the SPA, recording what authserver answered it."""

    def __init__(self, context: BrowserContext, stack: Stack) -> None:
        self.page = context.new_page()
        self.stack = stack
        self.answers: list[tuple[str, int]] = []  # (path, status) from authserver
        self.page.on("response", self._seen)

    def _seen(self, response: Response) -> None:
        if response.url.startswith(self.stack.auth.url) and response.request.method == "POST":
            self.answers.append((response.url[len(self.stack.auth.url) :], response.status))

    def open(self) -> Tab:
        self.page.goto(self.stack.spa + "/")
        self.wait_settled()
        return self

    def state(self) -> str:
        value: str = self.page.get_attribute("#app", "data-state") or ""
        return value

    def wait_settled(self) -> None:
        self.page.wait_for_selector("#app:not([data-state=starting])")

    def wait_for(self, state: str) -> None:
        self.page.wait_for_selector(f"#app[data-state={state}]")

    def log_in(self) -> None:
        self.page.fill("input[name=username]", USERNAME)
        self.page.fill("input[name=password]", PASSWORD)
        with self.page.expect_response(lambda r: posted(r, "/token")) as answer:
            self.page.click("#login button")
        assert answer.value.status == 200
        self.wait_for("signed-in")

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


def posted(response: Response, path: str) -> bool:
    """A POST's answer (never a CORS preflight's) from an authserver path."""
    return response.url.endswith(path) and response.request.method == "POST"


def refresh_cookie(context: BrowserContext) -> dict[str, Any] | None:
    found = [dict(c) for c in context.cookies() if c["name"] == COOKIE]
    return found[0] if found else None


def test_log_in_call_the_api_and_stay_logged_in_across_a_reload(
    context: BrowserContext, stack: Stack
) -> None:
    tab = Tab(context, stack).open()
    assert tab.state() == "signed-out"
    before = stack.auth.state()

    tab.log_in()
    first = tab.call_api()

    # The refresh token is in an HttpOnly, SameSite=Strict cookie script cannot see; the page
    # stores nothing anywhere.
    cookie = refresh_cookie(context)
    assert cookie is not None
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["domain"] == "127.0.0.1"
    assert tab.page.evaluate("document.cookie") == ""
    assert tab.page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert first.startswith("200") and '"sub"' in first

    tab.page.reload()
    tab.wait_for("signed-in")  # the silent refresh through the cookie
    assert tab.answers[-1] == ("/refresh", 200)
    assert refresh_cookie(context) != cookie  # rotated
    assert tab.call_api().startswith("200")
    tokens, spent, revoked = stack.auth.state()
    assert (tokens - before[0], spent - before[1], revoked - before[2]) == (2, 1, 0)


def test_the_access_token_is_refreshed_shortly_before_it_expires(
    context: BrowserContext, stack: Stack
) -> None:
    tab = Tab(context, stack)
    tab.page.clock.install()
    tab.open()
    tab.log_in()
    before = stack.auth.state()

    # expires_in is 900 s: the SPA refreshes a minute before.
    with tab.page.expect_response(lambda r: posted(r, "/refresh")) as answer:
        tab.page.clock.run_for(841_000)
    assert answer.value.status == 200
    tab.wait_for("signed-in")
    assert stack.auth.state()[:2] == (before[0] + 1, before[1] + 1)


def test_two_tabs_refresh_at_once_without_killing_the_session(
    context: BrowserContext, stack: Stack
) -> None:
    first = Tab(context, stack).open()
    first.log_in()
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


def test_log_out_ends_the_session_in_every_tab_and_refresh_fails(
    context: BrowserContext, stack: Stack
) -> None:
    first = Tab(context, stack).open()
    first.log_in()
    second = Tab(context, stack).open()
    assert second.state() == "signed-in"
    before = stack.auth.state()
    cookie = refresh_cookie(context)
    assert cookie is not None

    with first.page.expect_response(lambda r: posted(r, "/logout")) as answer:
        first.page.click("#logout")
    assert answer.value.status == 204
    first.wait_for("signed-out")
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


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["same-site", "cross-site"])
def test_a_foreign_origin_gets_nothing_from_the_refresh_cookie(
    context: BrowserContext, stack: Stack, host: str
) -> None:
    spa = Tab(context, stack).open()
    spa.log_in()
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
