"""Interop: Authlib's Starlette client (`authlib.integrations.starlette_client.OAuth`), written
by nobody here, signs a user into a Starlette app against a live server over real HTTP, and the
app greets the user by name. The app (below) is the one Authlib's docs show: `register` with
`server_metadata_url` and `client_kwargs={"scope": "openid profile email"}`, `/login` calling
`authorize_redirect`, `/callback` calling `authorize_access_token` and reading
`token["userinfo"]` (the ID token's claims, which Authlib has checked: signature against the
JWKS, `iss` against the metadata's issuer, `aud`, `exp`, `nonce` against the one in its session),
and a home page. It runs under uvicorn on a free loopback port; the browser (an HTTP client with
its own cookie jar) goes to its /login, through the hosted sign-in page, back to its /callback,
and reads its home page.

One setting beside the docs' defaults: `code_challenge_method: "S256"`. Authlib sends no PKCE
unless told, and authserver asks it of every client (RFC 9700 §2.1.1); the last test shows
what the defaults get.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from authlib.integrations.starlette_client import OAuth, OAuthError
from joserfc.errors import JoseError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests._uvicorn import loopback_socket, served, url_of
from tests.http.test_verify_live import Live
from tests.interop.browser import INSECURE_COOKIES, browser_sign_in, new_browser
from tests.interop.web_app import EMAIL, NAME, register_web_app, sign_in_at

APP = "starlette-app"
# Authlib's docs, for an OpenID Connect provider (its Starlette client's page).
DOCS_CLIENT_KWARGS = {"scope": "openid profile email"}
# ... and the one setting authserver needs: PKCE, which Authlib leaves off unless asked.
CLIENT_KWARGS = {**DOCS_CLIENT_KWARGS, "code_challenge_method": "S256"}
# joserfc (which Authlib's OpenID client decodes with) warns that RFC 9864 deprecates the alg
# name "EdDSA"; docs/services.md says why the server still signs with it.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture
def live_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


def starlette_app(issuer: str, secret: str, client_kwargs: dict[str, str]) -> Starlette:
    """A Starlette app signing its users in with Authlib, as Authlib's docs write one; it keeps
    the validated ID token's claims in its session cookie."""
    oauth = OAuth()
    oauth.register(
        "authserver",
        client_id=APP,
        client_secret=secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs=client_kwargs,
    )

    async def login(request: Request) -> Response:
        redirect_uri = request.url_for("callback")
        response: Response = await oauth.authserver.authorize_redirect(request, redirect_uri)
        return response

    async def callback(request: Request) -> Response:
        try:
            token = await oauth.authserver.authorize_access_token(request)
        except (OAuthError, JoseError) as error:  # an error answer; an ID token refused
            return PlainTextResponse(f"refused: {error.error}: {error.description}", 400)
        request.session["user"] = dict(token["userinfo"])
        return RedirectResponse("/", 302)

    async def home(request: Request) -> Response:
        user = request.session.get("user")
        if user is None:
            return PlainTextResponse("Signed out")
        return PlainTextResponse(f"Hello, {user['name']} <{user['email']}>")

    async def claims(request: Request) -> Response:
        return JSONResponse(request.session.get("user"))

    return Starlette(
        routes=[
            Route("/", home),
            Route("/login", login),
            Route("/callback", callback),
            Route("/claims", claims),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32))],
    )


@asynccontextmanager
async def signing_in(
    live: Live, client_kwargs: dict[str, str]
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """Alice, the client APP (web_app.register_web_app) and the app with `client_kwargs`
    served where APP's redirect URI points: the app's base URL and a new browser."""
    sock = loopback_socket()
    base = url_of(sock)
    secret = await register_web_app(live, APP, base)
    async with served(starlette_app(live.url, secret, client_kwargs), sock), new_browser() as b:
        yield base, b


async def test_authlib_starlette_client_greets_the_user_by_name(live: Live) -> None:
    async with signing_in(live, CLIENT_KWARGS) as (base, browser):
        signed_in = await sign_in_at(base, browser)
        claims: dict[str, Any] = (await browser.get(f"{base}/claims")).json()

    before, back, page = signed_in.before, signed_in.back, signed_in.page
    assert before.text == "Signed out"
    assert signed_in.authorization_url.startswith(f"{live.url}/authorize?")
    sent = dict(parse_qsl(urlsplit(signed_in.authorization_url).query))
    assert sent["scope"] == "openid profile email"  # as Authlib's docs register it
    assert sent["response_type"] == "code" and sent["code_challenge_method"] == "S256"
    assert sent["client_id"] == APP and sent["redirect_uri"] == f"{base}/callback"
    # Authlib redeemed the code (client_secret_basic, the verifier from its session) and
    # checked the ID token, or its callback would have said "refused".
    assert back.status_code == 302, back.text
    assert back.headers["location"] == "/"
    assert page.status_code == 200, page.text
    assert page.text == f"Hello, {NAME} <{EMAIL}>"
    # What Authlib validated: the nonce it sent, our issuer, itself as the audience.
    assert claims["nonce"] == sent["nonce"]
    assert claims["iss"] == live.url and claims["aud"] == APP
    assert claims["preferred_username"] == "alice" and claims["email_verified"] is True


async def test_authlib_starlette_client_refuses_an_id_token_with_another_nonce(
    live: Live,
) -> None:
    """The control of the validation above: the browser opens the authorization URL with a
    nonce of its own (as an attacker injecting a code would); the sign-in succeeds and the
    ID token carries that nonce, and Authlib, comparing it with the one in its session,
    refuses it and greets nobody."""
    async with signing_in(live, CLIENT_KWARGS) as (base, browser):
        login = await browser.get(f"{base}/login")
        sent = dict(parse_qsl(urlsplit(login.headers["location"]).query))
        tampered = f"{live.url}/authorize?" + urlencode({**sent, "nonce": "another"})
        callback = await browser_sign_in(tampered, browser=browser, callback=f"{base}/callback")
        back = await browser.get(callback)
        page = await browser.get(f"{base}/")

    assert back.status_code == 400, back.text
    assert back.text.startswith("refused: invalid_claim: ") and "nonce" in back.text
    assert page.text == "Signed out"


async def test_authlib_starlette_client_defaults_send_no_pkce_which_we_refuse(
    live: Live,
) -> None:
    """Why the app sets code_challenge_method: with the client_kwargs Authlib's docs show,
    Authlib sends no code_challenge, and authserver asks PKCE of every client (RFC 9700
    §2.1.1). RFC 7636 §4.4.1: "If the server requires Proof Key for Code Exchange (PKCE) by
    OAuth public clients and the client does not send the "code_challenge" in the request, the
    authorization endpoint MUST return the authorization error response with the "error" value
    set to "invalid_request"." The answer goes back to the app's callback with `state` and
    `iss`, and Authlib reports it as an OAuthError with our description."""
    async with signing_in(live, DOCS_CLIENT_KWARGS) as (base, browser):
        login = await browser.get(f"{base}/login")
        answer = await browser.get(login.headers["location"])
        back = await browser.get(answer.headers["location"])
        page = await browser.get(f"{base}/")

    sent = dict(parse_qsl(urlsplit(login.headers["location"]).query))
    assert sent["scope"] == "openid profile email" and "code_challenge" not in sent
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(f"{base}/callback?"), location
    got = dict(parse_qsl(urlsplit(location).query))
    assert got["error"] == "invalid_request" and "code_challenge" in got["error_description"]
    assert got["state"] == sent["state"] and got["iss"] == live.url
    assert back.status_code == 400
    assert back.text == f"refused: invalid_request: {got['error_description']}"
    assert page.text == "Signed out"
