"""The refresh cookie: its name and flags live here and nowhere else.

`__Host-` (RFC 6265bis §4.1.3.2) makes the browser refuse the cookie unless it is Secure, has
`Path=/` and no `Domain`, so no sibling subdomain can plant or shadow it. HttpOnly keeps it from
script (XSS cannot read the refresh token); SameSite=Strict keeps it off cross-site requests.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.config import Settings

SECURE_NAME = "__Host-authserver_rt"
# Browsers refuse `__Host-` cookies without Secure, so plain-http development drops the prefix.
INSECURE_NAME = "authserver_rt"


def cookie_name(settings: Settings) -> str:
    return SECURE_NAME if settings.cookie_secure else INSECURE_NAME


def read_refresh_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(cookie_name(settings)) or None


def set_refresh_cookie(response: Response, settings: Settings, token: str, max_age: int) -> None:
    response.headers.append("Set-Cookie", _cookie(settings, token, max(0, max_age)))


def clear_refresh_cookie(response: Response, settings: Settings) -> None:
    response.headers.append("Set-Cookie", _cookie(settings, "", 0))


def _cookie(settings: Settings, value: str, max_age: int) -> str:
    # The value is URL-safe base64, which needs no quoting (RFC 6265 §4.1.1 cookie-octet).
    flags = [f"{cookie_name(settings)}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly"]
    if settings.cookie_secure:
        flags.append("Secure")
    flags.append("SameSite=Strict")
    return "; ".join(flags)
