"""The hosted forms' CSRF token (double submit), shared by the sign-in and sign-out pages.

The form's hidden `csrf_token` must equal a SameSite=Strict cookie set with the form, which a
page on another site can neither read nor have the browser send; and an Origin, when the
browser sends one, must be ours.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from authserver.config import Settings
from authserver.http import pages
from authserver.http.cookies import read_csrf_cookie, set_csrf_cookie

FIELD = "csrf_token"


def token_for(request: Request, settings: Settings) -> str:
    """The browser's token: the one its cookie holds, or a new one (see `remember`)."""
    return read_csrf_cookie(request, settings) or secrets.token_urlsafe(32)


def remember(response: Response, settings: Settings, token: str) -> None:
    set_csrf_cookie(response, settings, token)


def same_browser(request: Request, settings: Settings, fields: dict[str, str]) -> bool:
    cookie = read_csrf_cookie(request, settings)
    field = fields.get(FIELD)
    if not cookie or not field or not hmac.compare_digest(cookie.encode(), field.encode()):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == pages.origin_of(settings.issuer)
