"""Browser origins: CORS for the allowed SPAs, and the Origin check of the cookie endpoints.

Answered, always by name and with credentials (the Fetch standard forbids `*` with
credentials): the exact origins of AUTHSERVER_ALLOWED_ORIGINS and those registered on an
enabled client (`allowed_origins`), read through the clients' memory, which any client's change
empties on every instance (db/notify.py). A preflight names no client, so CORS answers an origin
of any client; which client's cookie it may use is checked at the cookie endpoints
(actions/token.require_cookie_origin).

The public documents under /.well-known/ (the metadata, the JWKS) are answered to any origin
with `Access-Control-Allow-Origin: *` and no credentials (API.md): they are the same for
everyone, so they carry no `Vary: Origin` either.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authserver.actions.token import require_cookie_origin
from authserver.config import Settings
from authserver.errors import InvalidRequest, TemporarilyUnavailable
from authserver.http.cookies import read_refresh_cookie
from authserver.http.errors import error_json
from authserver.services import Services

METHODS = ("GET", "POST")
# DPoP (RFC 9449 §4.1): a browser app sends its proofs across origins, and reads the server's
# nonce (§8) from the answer.
HEADERS = ("Authorization", "Content-Type", "DPoP")
EXPOSED = ("Retry-After", "DPoP-Nonce")  # Retry-After: so a SPA can wait out a 429
PREFLIGHT_MAX_AGE = 600
PUBLIC_PREFIX = "/.well-known/"
# What every answer under PUBLIC_PREFIX carries (http/fast_path.py's JWKS too).
PUBLIC_CORS = (b"access-control-allow-origin", b"*")
_PUBLIC_PREFLIGHT = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Allow-Headers": "If-None-Match",
    "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
}


# The clients' origins as this request read them: per request, not on the shared middleware,
# so a slower request's older read never decides for a later one.
_REGISTERED: ContextVar[frozenset[str]] = ContextVar("authserver_cors_registered")


class _CORS(CORSMiddleware):
    """Starlette's CORS, with the clients' origins besides the settings', the public documents
    open to all, and refused preflights answered in the JSON of API.md."""

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        super().__init__(app, **options)
        self._configured = frozenset(self.allow_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["path"].startswith(PUBLIC_PREFIX):
            await _public(self.app, scope, receive, send, headers)
            return
        origin = headers.get("origin")
        registered: frozenset[str] = frozenset()
        if origin is not None and origin not in self._configured:
            found: Services = scope["app"].state.services
            try:
                registered = await found.clients.origins_in_use()
            except TemporarilyUnavailable:
                pass  # none, then: the handler answers the outage itself
        token = _REGISTERED.set(registered)
        try:
            await super().__call__(scope, receive, send)
        finally:
            _REGISTERED.reset(token)

    def is_allowed_origin(self, origin: str) -> bool:
        return origin in self._configured or origin in _REGISTERED.get()

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        headers = {"Vary": response.headers["vary"]}
        refused = InvalidRequest("This cross-origin request is not allowed.")
        return error_json(refused.code, refused.description, refused.status, headers)


def cors_middleware(settings: Settings) -> Middleware:
    return Middleware(
        _CORS,
        allow_origins=list(settings.allowed_origins),
        allow_methods=list(METHODS),
        allow_headers=list(HEADERS),
        allow_credentials=True,
        expose_headers=list(EXPOSED),
        max_age=PREFLIGHT_MAX_AGE,
    )


async def _public(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, headers: Headers
) -> None:
    if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
        await Response(status_code=204, headers=_PUBLIC_PREFLIGHT)(scope, receive, send)
        return

    async def open_to_all(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), PUBLIC_CORS]
        await send(message)

    await app(scope, receive, open_to_all)


async def presented_refresh_token(
    request: Request, found: Services, fields: dict[str, str]
) -> str | None:
    """The refresh token of the request: the cookie's, once the request has shown it comes
    from an origin allowed for the cookie's client (refused before anything is rotated or
    revoked), or the body's field. Both at once is refused (API.md): picking either would let
    whoever planted the other choose which session is rotated or ended."""
    cookie = read_refresh_cookie(request, found.settings)
    if cookie is not None:
        await require_cookie_origin(found, cookie, request.headers.get("origin"))
    body = fields.get("refresh_token")
    if cookie is not None and body:
        raise InvalidRequest("Send the refresh token in the cookie or in the body, not both.")
    return cookie or body or None
