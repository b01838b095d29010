"""The browser step of the interop tests: what a user's browser does between the client's
authorization URL and its redirect URI, done by an HTTP client with a cookie jar of its own."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urljoin

import httpx

from tests.http.signin import PASSWORD, csrf_token, form_action

CALLBACK = "https://rp.example/cb"  # never fetched: the browser step stops at its redirect
# The live server's cookies without Secure: the browser talks plain HTTP to the loopback server.
INSECURE_COOKIES = {"cookie_secure": "false"}


def new_browser() -> httpx.AsyncClient:
    """An HTTP client with a cookie jar of its own, following no redirect by itself."""
    return httpx.AsyncClient(trust_env=False, timeout=10)


async def browser_sign_in(
    authorization_url: str,
    username: str = "alice",
    password: str = PASSWORD,
    browser: httpx.AsyncClient | None = None,
    callback: str = CALLBACK,
    code: Callable[[], str] | None = None,
) -> str:
    """Opens the client's authorization URL, follows it to the sign-in page, posts the form
    (with its hidden CSRF token and the cookie set with it) and returns the callback URL the
    server redirects to (on `callback`), without fetching it. In `browser`, if given (it keeps
    the login session and the client's cookies), else in a new one. For a user with a second
    factor, `code` gives the code to post on the page the password leads to."""
    async with new_browser() as own:
        browser = browser or own
        asked = await browser.get(authorization_url)
        assert asked.status_code == 302, asked.text
        page = await browser.get(urljoin(authorization_url, asked.headers["location"]))
        assert page.status_code == 200, page.text
        form = {"csrf_token": csrf_token(page.text), "username": username, "password": password}
        answer = await browser.post(urljoin(str(page.url), form_action(page.text)), data=form)
        assert answer.status_code == 303, answer.text
        if code is not None:
            answer = await _second_step(
                browser, urljoin(str(page.url), answer.headers["location"]), code()
            )
        location: str = answer.headers["location"]
        assert location.startswith(callback + "?"), location
        return location


async def _second_step(browser: httpx.AsyncClient, factor_page: str, code: str) -> httpx.Response:
    """The second-factor page the password led to, its form posted with `code`."""
    assert "/login/factor?" in factor_page, factor_page
    page = await browser.get(factor_page)
    assert page.status_code == 200, page.text
    form = {"csrf_token": csrf_token(page.text), "code": code}
    answer = await browser.post(urljoin(factor_page, form_action(page.text)), data=form)
    assert answer.status_code == 303, answer.text
    return answer
