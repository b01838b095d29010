"""Browser origins: CORS for the allowed SPAs, and the Origin check of the cookie endpoints.

Answered, always by name and with credentials (the Fetch standard forbids `*` with
credentials): the exact origins of AUTHSERVER_ALLOWED_ORIGINS and those registered on an
enabled client (`allowed_origins`), read through the clients' memory, which any client's change
empties on every instance (db/notify.py). A preflight names no client, so CORS answers an origin
of any client; which client's cookie it may use is checked at the cookie endpoints
(actions/token.require_cookie_origin).

The public documents under /.well-known/ (the metadata, the JWKS) are answered to any origin
with `Access-Control-Allow-Origin: *` and no credentials (API.md): they are the same for
everyone, so they carry no `Vary: Origin` either. So is client registration (/register, RFC
7591/7592): a browser-based MCP client registers itself from an origin nobody listed, and
nothing there rides on a cookie (its only credentials are bearer tokens the page must hold),
so a page can do there exactly what any HTTP client can.

A browser-based client that registered itself has its pages on an origin nobody listed, and
needs /token (its code, its refreshes) and /revoke. Listing its origin would give it
credentialed CORS everywhere; instead, as node-oidc-provider's clientBasedCORS does, those two
paths answer such an origin once the request names its client: by name, WITHOUT credentials,
when the client is public and the origin is one of its redirect URIs' (or its allowed_origins,
clients.page_of_public_client). Their preflight, which carries no body and so names no client,
is answered to any http(s) origin for `Content-Type` and `DPoP` only: not `Authorization`,
which only a confidential client's secret would ride in. A page's fetch sends no cookie
cross-origin unless it asks to (`credentials: "include"`, whose answer it then cannot read),
and such a cookie is still refused from an origin not allowed for its client
(presented_refresh_token), so such a page never uses the refresh cookie.
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
from authserver.clients import Client, origin_of, page_of_public_client
from authserver.config import Settings
from authserver.errors import InvalidRequest, RequestTimeout, TemporarilyUnavailable
from authserver.http.cookies import read_refresh_cookie
from authserver.http.errors import error_json
from authserver.http.forms import MAX_BODY_BYTES, fields_of
from authserver.services import Services

METHODS = ("GET", "POST")
# DPoP: a SPA's proof (RFC 9449 §4.1) is a request header of its own, so a preflight must
# allow it; a server nonce (§8) comes back in DPoP-Nonce, and `Date` lets a page whose clock is
# off put our time in its proofs' `iat`, which we accept only within a minute of our clock.
HEADERS = ("Authorization", "Content-Type", "DPoP")
EXPOSED = ("Retry-After", "DPoP-Nonce", "Date")  # Retry-After: so a SPA can wait out a 429
PREFLIGHT_MAX_AGE = 600
PUBLIC_PREFIX = "/.well-known/"
REGISTRATION_PATH = "/register"
# What every answer under PUBLIC_PREFIX and REGISTRATION_PATH carries (http/fast_path.py's
# JWKS too).
PUBLIC_CORS = (b"access-control-allow-origin", b"*")
_REGISTRATION_EXPOSED = (b"access-control-expose-headers", b"Retry-After")
# The MCP SDKs send MCP-Protocol-Version when they read the metadata (a preflight first).
_PUBLIC_PREFLIGHT = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Allow-Headers": "If-None-Match, MCP-Protocol-Version",
    "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
}
_REGISTRATION_PREFLIGHT = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
}

# A public client's own page calls these (the code, a refresh; its own tokens' revocation).
CLIENT_PAGE_PATHS = frozenset({"/token", "/revoke"})
_CLIENT_PAGE_HEADERS = ("Content-Type", "DPoP")
_CREDENTIALS = b"access-control-allow-credentials"
# The preflight's answer depends on what it asks, not only on who asks.
_PREFLIGHT_VARY = {"Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}


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
        path = scope["path"]
        if path.startswith(PUBLIC_PREFIX):
            await _public(self.app, scope, receive, send, headers, _PUBLIC_PREFLIGHT)
            return
        if path == REGISTRATION_PATH or path.startswith(REGISTRATION_PATH + "/"):
            preflight, exposed = _REGISTRATION_PREFLIGHT, _REGISTRATION_EXPOSED
            await _public(self.app, scope, receive, send, headers, preflight, exposed)
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
            if (
                path in CLIENT_PAGE_PATHS
                and origin is not None
                and not self.is_allowed_origin(origin)
            ):
                await self._client_page(scope, receive, send, headers, origin)
            else:
                await super().__call__(scope, receive, send)
        finally:
            _REGISTERED.reset(token)

    async def _client_page(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, origin: str
    ) -> None:
        """/token or /revoke from an origin not allowed with credentials: answered by name,
        without credentials, when the request's client is public and the origin its page's."""
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await _client_page_preflight(headers, origin)(scope, receive, send)
            return
        body, replay = await _buffered(receive)
        found: Services = scope["app"].state.services
        client = await _named(found, body, headers.get("content-type", ""))
        if not page_of_public_client(client, origin):
            await super().__call__(scope, replay, send)
            return
        granted = (b"access-control-allow-origin", origin.encode())

        async def to_the_page(message: Message) -> None:
            # Starlette's answer to an origin it does not allow: Vary, the exposed headers,
            # and Allow-Credentials (which, with no Allow-Origin, allows nothing): this origin
            # is allowed, but never with credentials.
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", []) if h[0] != _CREDENTIALS]
                message["headers"] = [*kept, granted]
            await send(message)

        await super().__call__(scope, replay, to_the_page)

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
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: Headers,
    preflight: dict[str, str],
    *added: tuple[bytes, bytes],
) -> None:
    """Any origin, no credentials: `preflight` answers the browser's question, and every
    answer carries PUBLIC_CORS (and `added`)."""
    if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
        await Response(status_code=204, headers=preflight)(scope, receive, send)
        return

    async def open_to_all(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), PUBLIC_CORS, *added]
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


def _client_page_preflight(headers: Headers, origin: str) -> Response:
    """The preflight of /token or /revoke from an origin not allowed with credentials: it names
    no client, so any web origin may go on to ask (POST, `Content-Type`, `DPoP`); whether the
    page may read the answer is decided on the request itself."""
    asked = headers.get("access-control-request-headers", "")
    offered = {name.lower() for name in _CLIENT_PAGE_HEADERS}
    names = {name.strip().lower() for name in asked.split(",") if name.strip()}
    method = headers["access-control-request-method"]
    if origin_of(origin) != origin or method != "POST" or not names <= offered:
        refused = InvalidRequest("This cross-origin request is not allowed.")
        return error_json(refused.code, refused.description, refused.status, _PREFLIGHT_VARY)
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": ", ".join(_CLIENT_PAGE_HEADERS),
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            **_PREFLIGHT_VARY,
        },
    )


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The body (empty past MAX_BODY_BYTES, which the endpoint refuses itself), and a receive
    that hands the endpoint the same messages again. A timeout while reading is raised to the
    endpoint, whose handlers answer it (408), not here, outside them."""
    messages: list[Message] = []
    failed: RequestTimeout | None = None
    size = 0
    try:
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > MAX_BODY_BYTES or not message.get("more_body", False):
                break
    except RequestTimeout as exc:
        failed = exc

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        if failed is not None:
            raise failed
        return await receive()

    complete = failed is None and size <= MAX_BODY_BYTES
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
    return (body if complete else b""), replay


async def _named(found: Services, body: bytes, content_type: str) -> Client | None:
    """The client the body names (client_id), as stored: a client ID metadata document is not
    fetched for CORS; its client is stored by the /authorize that gave it its code."""
    try:
        client_id = fields_of(body, content_type).get("client_id")
    except InvalidRequest:
        return None  # the endpoint refuses the body itself
    if not client_id:
        return None
    try:
        return await found.clients.get(client_id)
    except TemporarilyUnavailable:
        return None
