"""The interop tests of web-app sign-in libraries (express-openid-connect, Authlib's Starlette
client): a user with a name and an address, the app registered as a confidential client on its
own callback, and a browser signing in to the app through the app's /login as a person would."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tests.conftest import Registry
from tests.http.test_verify_live import Live
from tests.interop.browser import browser_sign_in

NAME = "Alice Zoë Liddell"  # not ASCII: the name crosses JSON, a JWT and the app's page
EMAIL = "alice@example.org"


async def register_web_app(live: Live, client_id: str, app: str) -> str:
    """Alice with NAME and EMAIL, and `client_id` a confidential client for the code flow with
    the identity scopes, its redirect URI the /callback of the app at `app`: its secret."""
    registry = Registry(live.services)
    await registry.profile("alice", name=NAME, email=EMAIL, email_verified=True)
    secret = await registry.client(
        client_id,
        grant_types=("authorization_code", "refresh_token"),
        scopes=("openid", "profile", "email"),
        redirect_uris=(f"{app}/callback",),
    )
    assert secret is not None
    return secret


@dataclass
class AppSignIn:
    """What a browser saw signing in to an app through its /login."""

    before: httpx.Response  # the app's home page, first
    authorization_url: str  # where the app's /login sent the browser
    back: httpx.Response  # the app's answer at its /callback
    page: httpx.Response  # the app's home page, last


async def sign_in_at(app: str, browser: httpx.AsyncClient) -> AppSignIn:
    """Opens the home page and /login of the app at `app`, signs in on the hosted page
    (browser_sign_in), brings the answer to the app's /callback and opens its home page again,
    all in `browser`."""
    before = await browser.get(f"{app}/")
    login = await browser.get(f"{app}/login")
    assert login.status_code == 302, login.text
    authorization_url = login.headers["location"]
    callback = await browser_sign_in(authorization_url, browser=browser, callback=f"{app}/callback")
    back = await browser.get(callback)
    page = await browser.get(f"{app}/")
    return AppSignIn(before, authorization_url, back, page)
