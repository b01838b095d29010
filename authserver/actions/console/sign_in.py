"""Signing an operator in to the console: authserver's own authorization code flow with PKCE
(RFC 7636), the exchange made inside the server, the tokens kept in the console's session row.

`start`: a sign-in under way is stored (verifier and state, sealed) behind a new cookie, and
the browser goes to /authorize. `finish`: the callback's `state` and `iss` are checked, the code
exchanged through the token endpoint's own use case, and the access token put to the admin
API's own guard; the operator gets a new cookie (the sign-in's is spent: no fixation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from authserver.actions import token
from authserver.actions.admin import require_admin
from authserver.actions.console import NotAnOperator, SignInNeeded, seal, unseal
from authserver.actions.console.client import SCOPES
from authserver.actions.console.operator import RECENT_SIGN_IN
from authserver.actions.grants import GrantRequest, TokenResponse
from authserver.actions.logout import logout
from authserver.clients import ClientCredentials
from authserver.console_sessions import (
    CALLBACK_PATH,
    CONSOLE_CLIENT_ID,
    cookie_hash,
    new_cookie,
)
from authserver.errors import InsufficientScope, InsufficientUserAuthentication, OAuthError
from authserver.services import Services

# Where a sign-in lands when it names no page to come back to.
HOME = "/console/clients"


@dataclass(frozen=True)
class Started:
    cookie: str  # the sign-in under way's
    authorize_url: str


@dataclass(frozen=True)
class SignedIn:
    cookie: str  # the console session's
    then: str  # the console page to go to


@dataclass(frozen=True)
class StepUp:
    """The operator has a second factor but signed in without it: ask again, for `mfa`."""

    then: str
    recent: bool


def landing(then: str | None) -> str:
    """`then` if it is a console page of this server (a path only: never another site's, no
    `//`, no backslash, no dot segment a browser would resolve out of /console), else HOME."""
    if not then or not then.startswith("/console/") or len(then) > 512:
        return HOME
    if not (then.isascii() and then.isprintable()) or any(bad in then for bad in BAD):
        return HOME
    return then


BAD = ("//", "\\", "/.")


def callback_uri(services: Services) -> str:
    return services.settings.issuer.rstrip("/") + CALLBACK_PATH


async def start(
    services: Services,
    *,
    mfa: bool = False,
    recent: bool = False,
    then: str | None = None,
    replacing: str | None = None,
) -> Started:
    """`recent`: a sign-in within RECENT_SIGN_IN seconds is asked for (`max_age`), for a
    destructive action; `then`: the console page to come back to; `replacing`: the console
    cookie this browser held, whose session (and its tokens) ends here."""
    await sign_out(services, replacing)
    verifier = secrets.token_urlsafe(48)
    # RFC 7636 §4.2: code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier))).
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    state = secrets.token_urlsafe(24)
    cookie = new_cookie()
    id_hash = cookie_hash(cookie)
    pending = {"state": state, "verifier": verifier, "then": landing(then), "recent": recent}
    sealed = seal(services, id_hash, pending)
    await services.console_sessions.begin(id_hash, sealed, services.clock())
    params = {
        "response_type": "code",
        "client_id": CONSOLE_CLIENT_ID,
        "redirect_uri": callback_uri(services),
        "scope": " ".join(SCOPES),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if mfa:
        params["acr_values"] = "mfa"
    if recent:
        # OpenID Connect Core §3.1.2.1: past max_age the OP "MUST attempt to actively
        # re-authenticate the End-User".
        params["max_age"] = str(RECENT_SIGN_IN)
    return Started(cookie, f"{services.settings.issuer.rstrip('/')}/authorize?{urlencode(params)}")


async def finish(
    services: Services, cookie: str | None, answer: Mapping[str, str]
) -> SignedIn | StepUp:
    """SignInNeeded: no sign-in under way for this browser, or an answer not its own (start
    again); NotAnOperator: the user may not use the console."""
    if not cookie:
        raise SignInNeeded()
    id_hash = cookie_hash(cookie)
    sealed = await services.console_sessions.take_pending(id_hash, services.clock())
    if sealed is None:
        raise SignInNeeded()
    pending = unseal(services, id_hash, sealed)
    # RFC 6749 §10.12: the client "MUST implement CSRF protection for its redirection URI";
    # the state binds the answer to the browser that asked. RFC 9207 §2.4: the `iss` must be
    # the issuer the request went to.
    state = answer.get("state", "")
    if not hmac.compare_digest(state.encode(), str(pending["state"]).encode()):
        raise SignInNeeded()
    if answer.get("iss") != services.settings.issuer or "code" not in answer:
        raise NotAnOperator()  # access_denied and every other error the sign-in answered
    fields = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": callback_uri(services),
        "code_verifier": str(pending["verifier"]),
    }
    credentials = ClientCredentials(CONSOLE_CLIENT_ID, None)
    try:
        issued = await token.issue(services, GrantRequest(credentials, fields))
    except OAuthError:
        raise SignInNeeded() from None
    try:
        sub = await require_admin(services, issued.access_token)
    except (InsufficientScope, InsufficientUserAuthentication):
        await logout(services, issued.refresh_token, issued.access_token)
        raise NotAnOperator() from None
    claims = services.verify_any_audience(issued.access_token)
    if claims.get("acr") != "mfa" and await services.second_factors.kinds(sub):
        await logout(services, issued.refresh_token, issued.access_token)
        return StepUp(str(pending.get("then", HOME)), bool(pending.get("recent")))
    return SignedIn(await _hold(services, sub, issued), landing(pending.get("then")))


async def _hold(services: Services, sub: str, issued: TokenResponse) -> str:
    now = services.clock()
    cookie = new_cookie()
    id_hash = cookie_hash(cookie)
    tokens = {"access_token": issued.access_token, "refresh_token": issued.refresh_token}
    until = issued.session_expires_at or now + services.settings.session_ttl
    await services.console_sessions.hold(
        id_hash, sub, seal(services, id_hash, tokens), now + issued.expires_in, now, until
    )
    return cookie


async def sign_out(services: Services, cookie: str | None) -> None:
    """Ends the console session and its tokens' family (the browser's login session stays)."""
    if not cookie:
        return
    id_hash = cookie_hash(cookie)
    held = await services.console_sessions.find(id_hash, services.clock())
    await services.console_sessions.end(id_hash)
    if held is not None:
        tokens = unseal(services, id_hash, held.sealed)
        await logout(services, tokens.get("refresh_token"), tokens.get("access_token"))
