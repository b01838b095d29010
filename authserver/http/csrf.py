"""The hosted forms' CSRF token (signed double submit), shared by the sign-in and sign-out pages.

The form's hidden `csrf_token` must equal a SameSite=Strict cookie set with the form, which a
page on another site can neither read nor have the browser send; and an Origin, when the
browser sends one, must be ours.

The token is `random.signature`, the signature an HMAC under a key derived from the KEK
(`Services.csrf_keys`) over the random part and the browser's login-session cookie (OWASP's
"signed double-submit cookie"). So a value planted in the cookie (without `__Host-`, a sibling
host can set it) is not adopted but replaced, and a token from before a sign-in is worth
nothing after it: the sign-in gives the browser a new one, bound to its new login session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from authserver.config import Settings
from authserver.http import pages
from authserver.http.context import services
from authserver.http.cookies import read_csrf_cookie, read_session_cookie, set_csrf_cookie

FIELD = "csrf_token"
MAX_TOKEN = 200


def token_for(request: Request, settings: Settings) -> str:
    """The browser's token: its cookie's, if we signed it for the browser's login session,
    else a new one (see `remember`)."""
    session = read_session_cookie(request, settings)
    held = read_csrf_cookie(request, settings)
    if held is not None and _signed(request, held, session):
        return held
    return new_token(request, session)


def new_token(request: Request, session_cookie: str | None) -> str:
    """A token for a browser holding `session_cookie` (None: not signed in)."""
    random = secrets.token_urlsafe(24)
    return f"{random}.{_signature(services(request).csrf_keys[0], random, session_cookie)}"


def remember(response: Response, settings: Settings, token: str) -> None:
    set_csrf_cookie(response, settings, token)


def same_browser(
    request: Request,
    settings: Settings,
    fields: dict[str, str],
    *,
    field: str = FIELD,
    signed_in: bool = True,
    pending: str | None = None,
) -> bool:
    """The form's `field` is the browser's cookie, which we signed for its login session (or,
    `signed_in=False`, for no login session: a form rendered for a request without one; or
    for the `pending` sign-in's cookie, the second-factor form's)."""
    cookie = read_csrf_cookie(request, settings)
    value = fields.get(field)
    if not cookie or not value or not hmac.compare_digest(cookie.encode(), value.encode()):
        return False
    if pending is not None:
        session: str | None = pending
    else:
        session = read_session_cookie(request, settings) if signed_in else None
    if not _signed(request, cookie, session):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == pages.origin_of(settings.issuer)


HEADER = "x-csrf-token"


def same_browser_json(request: Request, settings: Settings, *, pending: str | None = None) -> bool:
    """As `same_browser`, for the pages' JSON calls (the passkeys'): the page's token in the
    X-CSRF-Token header, and an Origin that must be there and be ours (a fetch() always sends
    one)."""
    if request.headers.get("origin") != pages.origin_of(settings.issuer):
        return False
    header = {FIELD: request.headers.get(HEADER, "")}
    return same_browser(request, settings, header, pending=pending)


def _signed(request: Request, token: str, session_cookie: str | None) -> bool:
    random, dot, signature = token.partition(".")
    if not dot or len(token) > MAX_TOKEN:
        return False
    # Every key: during a KEK switch, instances still on the previous KEK signed with its key.
    return any(
        hmac.compare_digest(signature.encode(), _signature(key, random, session_cookie).encode())
        for key in services(request).csrf_keys
    )


def _signature(key: bytes, random: str, session_cookie: str | None) -> str:
    message = f"{random}|{session_cookie or ''}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def console_token(request: Request, console_cookie: str) -> str:
    """The console's forms' token: an HMAC of the console session's cookie (OWASP's HMAC
    synchronizer token). The cookie is HttpOnly, so a page elsewhere cannot compute it, and the
    hosted pages' CSRF cookie is left to them."""
    return _signature(services(request).csrf_keys[0], "console", console_cookie)


def console_same_browser(
    request: Request, settings: Settings, fields: dict[str, str], console_cookie: str | None
) -> bool:
    value = fields.get(FIELD, "")
    if not console_cookie or not value or len(value) > MAX_TOKEN:
        return False
    if not any(
        hmac.compare_digest(value.encode(), _signature(key, "console", console_cookie).encode())
        for key in services(request).csrf_keys
    ):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == pages.origin_of(settings.issuer)
