"""GET /.well-known/jwks.json the short way: the one request every verifier makes in bulk.

Each instance of each service fetches the key set when it starts, when its cache expires and
when it meets an unknown kid, so this document is served far more often than any other. Its
bytes and ETag are made once per key change (keys/ring.py); what cost time was the way to them:
CORS, the exception middleware, the router, the Request and Response objects took about four
fifths of a request's CPU in `bench/asgi_overhead.py`.

This middleware sits just inside Observe, so the request is still logged, counted, given its
request id and the security headers. It answers a plain GET of the key set itself, with the
same status, headers and body as `http/wellknown.py::jwks`; anything else (another path or
method, a request with an Origin, which CORS must answer) goes the long way, to the same answer.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from authserver.http.responses import etag_matches
from authserver.http.wellknown import JWKS_PATH, JWKS_TYPE, jwks_cache_control
from authserver.keys.ring import KeyRing

RawHeaders = list[tuple[bytes, bytes]]


class JwksShortcut:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: object = None
        self._made_for: tuple[KeyRing, str] | None = None
        self._headers: RawHeaders = []
        self._not_modified: RawHeaders = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != JWKS_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"origin":
                await self.app(scope, receive, send)
                return
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        app = scope["app"]
        ring: KeyRing = app.state.services.keys.ring
        if self._made_for != (ring, ring.jwks_etag):
            self._prepare(ring, jwks_cache_control(app.state.services.settings))
        # Observe labels its metrics and access line with the route, as the router would.
        scope["route"] = self._route or self._find_route(app)
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
        # CORS adds `Vary: Origin` to a request without an Origin.
        common = [
            (b"cache-control", cache_control.encode()),
            (b"etag", ring.jwks_etag.encode()),
        ]
        self._not_modified = [*common, (b"vary", b"Origin")]
        self._headers = [
            *common,
            (b"content-length", str(len(ring.jwks_body)).encode()),
            (b"content-type", JWKS_TYPE.encode()),
            (b"vary", b"Origin"),
        ]
        self._made_for = (ring, ring.jwks_etag)

    def _find_route(self, app: object) -> object:
        routes = getattr(getattr(app, "router", None), "routes", [])
        self._route = next(route for route in routes if getattr(route, "path", None) == JWKS_PATH)
        return self._route
