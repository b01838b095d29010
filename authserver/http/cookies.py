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


# The login session (API.md, "Login session"): SameSite=Lax, not Strict, because the browser
# arrives at /authorize by a top-level navigation from the client's site, and single sign-on
# needs the cookie on exactly that request. Lax still keeps it off cross-site POSTs and
# sub-resource requests.
SESSION_SECURE_NAME = "__Host-authserver_session"
SESSION_INSECURE_NAME = "authserver_session"
# The sign-in form's CSRF token (double submit): Strict, so a form posted from another site
# arrives without it and is refused.
CSRF_SECURE_NAME = "__Host-authserver_csrf"
CSRF_INSECURE_NAME = "authserver_csrf"


# A pending sign-in (a password checked, the second factor awaited: actions/sign_in_steps.py):
# Strict, since only our own pages post to /login/factor and redirect to it.
PENDING_SECURE_NAME = "__Host-authserver_pending"
PENDING_INSECURE_NAME = "authserver_pending"


def _pending_name(settings: Settings) -> str:
    return PENDING_SECURE_NAME if settings.cookie_secure else PENDING_INSECURE_NAME


def read_pending_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(_pending_name(settings)) or None


def set_pending_cookie(response: Response, settings: Settings, token: str, max_age: int) -> None:
    name = _pending_name(settings)
    response.headers.append("Set-Cookie", _named(settings, name, token, max(0, max_age), "Strict"))


def clear_pending_cookie(response: Response, settings: Settings) -> None:
    response.headers.append(
        "Set-Cookie", _named(settings, _pending_name(settings), "", 0, "Strict")
    )


def session_cookie_name(settings: Settings) -> str:
    return SESSION_SECURE_NAME if settings.cookie_secure else SESSION_INSECURE_NAME


def read_session_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(session_cookie_name(settings)) or None


def set_session_cookie(response: Response, settings: Settings, token: str, max_age: int) -> None:
    name = session_cookie_name(settings)
    response.headers.append("Set-Cookie", _named(settings, name, token, max(0, max_age), "Lax"))


def clear_session_cookie(response: Response, settings: Settings) -> None:
    name = session_cookie_name(settings)
    response.headers.append("Set-Cookie", _named(settings, name, "", 0, "Lax"))


def read_csrf_cookie(request: Request, settings: Settings) -> str | None:
    name = CSRF_SECURE_NAME if settings.cookie_secure else CSRF_INSECURE_NAME
    return request.cookies.get(name) or None


def set_csrf_cookie(response: Response, settings: Settings, token: str) -> None:
    name = CSRF_SECURE_NAME if settings.cookie_secure else CSRF_INSECURE_NAME
    # No Max-Age: it lives as long as the browser session, like the form it protects.
    response.headers.append("Set-Cookie", _named(settings, name, token, None, "Strict"))


def _named(settings: Settings, name: str, value: str, max_age: int | None, same_site: str) -> str:
    flags = [f"{name}={value}", "Path=/"]
    if max_age is not None:
        flags.append(f"Max-Age={max_age}")
    flags.append("HttpOnly")
    if settings.cookie_secure:
        flags.append("Secure")
    flags.append(f"SameSite={same_site}")
    return "; ".join(flags)


# The admin console's session (console_sessions.py): Lax, as the login session, since the
# browser comes back to /console/callback by a redirect from /authorize.
CONSOLE_SECURE_NAME = "__Host-authserver_console"
CONSOLE_INSECURE_NAME = "authserver_console"


def _console_name(settings: Settings) -> str:
    return CONSOLE_SECURE_NAME if settings.cookie_secure else CONSOLE_INSECURE_NAME


def read_console_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(_console_name(settings)) or None


def set_console_cookie(response: Response, settings: Settings, token: str) -> None:
    # No Max-Age: the row's expiry bounds the session; the browser forgets it when it closes.
    name = _console_name(settings)
    response.headers.append("Set-Cookie", _named(settings, name, token, None, "Lax"))


def clear_console_cookie(response: Response, settings: Settings) -> None:
    name = _console_name(settings)
    response.headers.append("Set-Cookie", _named(settings, name, "", 0, "Lax"))
