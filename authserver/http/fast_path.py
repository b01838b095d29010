"""The hot paths the short way: what services call in bulk skips the layers it does not need.

`bench/asgi_overhead.py` (CPU per request, in-process) showed where a request's time went
before these: the layers between Observe and the handler (CORS, Starlette's exception
middleware, the router, its Request/Response wrapping) cost about four fifths of a JWKS GET
and a third of a client_credentials token. Both classes here sit inside Observe, so every
request is still logged, counted, given its request id and the security headers; neither
changes an answer, and a request either does not fully handle goes the long way:

- `JwksShortcut` answers a GET of the key set itself, from any origin (its bytes and ETag are
  made once per key change, keys/ring.py), with the status, headers and body of
  `wellknown.jwks`.
- `HotRoutes` calls the handler of `POST /token`, `/introspect` and `/revoke` directly when
  the request has no Origin, i.e. comes from a service rather than a browser page (which CORS
  must answer), and renders what it raises with the app's own handlers (http/errors.py). It
  sits inside BodyDeadline: the body stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authserver.http.cors import PUBLIC_CORS
from authserver.http.errors import HANDLERS
from authserver.http.responses import etag_matches
from authserver.http.wellknown import JWKS_PATH, JWKS_TYPE, jwks_cache_control
from authserver.keys.ring import KeyRing

RawHeaders = list[tuple[bytes, bytes]]


class JwksShortcut:
    def __init__(self, app: ASGIApp, *, routes: list[Route]) -> None:
        self.app = app
        # Observe labels its metrics and access line with the route, as the router would.
        self._route = next(route for route in routes if route.path == JWKS_PATH)
        self._made_for: tuple[KeyRing, str] | None = None
        self._headers: RawHeaders = []
        self._not_modified: RawHeaders = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != JWKS_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        if_none_match = None
        for name, value in scope["headers"]:  # any Origin: the key set is open to all (cors.py)
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        app = scope["app"]
        ring: KeyRing = app.state.services.keys.ring
        if self._made_for != (ring, ring.jwks_etag):
            self._prepare(ring, jwks_cache_control(app.state.services.settings))
        scope["route"] = self._route
        if etag_matches(if_none_match, ring.jwks_etag):
            await send(
                {"type": "http.response.start", "status": 304, "headers": self._not_modified}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await send({"type": "http.response.body", "body": ring.jwks_body})

    def _prepare(self, ring: KeyRing, cache_control: str) -> None:
        # As the long way answers: Starlette's Response adds content-length and content-type,
        # CORS opens /.well-known/ to every origin (cors.PUBLIC_CORS).
        common = [
            (b"cache-control", cache_control.encode()),
            (b"etag", ring.jwks_etag.encode()),
        ]
        self._not_modified = [*common, PUBLIC_CORS]
        self._headers = [
            *common,
            (b"content-length", str(len(ring.jwks_body)).encode()),
            (b"content-type", JWKS_TYPE.encode()),
            PUBLIC_CORS,
        ]
        self._made_for = (ring, ring.jwks_etag)


# What Starlette's ExceptionMiddleware would answer; `Exception` is left to Observe (a logged
# 500), as ServerErrorMiddleware would have it.
_HANDLED = {cls: handler for cls, handler in HANDLERS.items() if cls is not Exception}
HOT = {("POST", "/token"), ("POST", "/introspect"), ("POST", "/revoke")}


class HotRoutes:
    def __init__(self, app: ASGIApp, *, routes: list[Route]) -> None:
        self.app = app
        self._routes = {
            (method, route.path): route
            for route in routes
            for method in route.methods or ()
            if (method, route.path) in HOT
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self._routes.get((scope["method"], scope["path"]))
        if route is None or any(name == b"origin" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # Observe's label, as the router sets it
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = next((_HANDLED[cls] for cls in type(exc).__mro__ if cls in _HANDLED), None)
            if handler is None:
                raise
            response = await handler(request, exc)
            exc.__traceback__ = None  # as Starlette: a reused exception would pile them up

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _vary_origin(message.get("headers", []))
            await send(message)

        await response(scope, receive, send_with_vary)


def _vary_origin(headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """What CORS does to the answer to a request without an Origin: Origin joins Vary (the
    Vary values joined in one header, as Starlette's MutableHeaders leaves them)."""
    kept: RawHeaders = []
    vary: list[bytes] = []
    for name, value in headers:
        if name.lower() == b"vary":
            vary.append(value)
        else:
            kept.append((name, value))
    return [*kept, (b"vary", b", ".join([*vary, b"Origin"]))]
