"""Browser origins: CORS for the allowed SPAs, and the Origin check of the cookie endpoints.

Only the exact origins of AUTHSERVER_ALLOWED_ORIGINS are answered, always by name and with
credentials (the Fetch standard forbids `*` with credentials, and we never send it).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from authserver.config import Settings
from authserver.errors import ForbiddenOrigin, InvalidRequest
from authserver.http.cookies import read_refresh_cookie
from authserver.http.errors import error_json

METHODS = ("GET", "POST")
HEADERS = ("Authorization", "Content-Type")
EXPOSED = ("Retry-After",)  # so a SPA can wait out a 429
PREFLIGHT_MAX_AGE = 600


class _CORS(CORSMiddleware):
    """Starlette's CORS, with refused preflights answered in the JSON of API.md."""

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


def refresh_cookie(request: Request, settings: Settings) -> str | None:
    """The refresh cookie, once the request has shown it comes from an allowed origin.

    A cookie rides along with any request the browser makes, whoever's page made it; the
    Origin header is set by the browser and a page cannot forge it. So a request carrying the
    cookie must name an allowed origin, or it is refused before anything is rotated or revoked.
    """
    cookie = read_refresh_cookie(request, settings)
    if cookie is not None:
        require_allowed_origin(request, settings)
    return cookie


def presented_refresh_token(
    request: Request, settings: Settings, fields: dict[str, str]
) -> str | None:
    """The refresh token of the request: the cookie's (origin-checked) or the body's field.
    Both at once is refused (API.md): picking either would let whoever planted the other
    choose which session is rotated or ended."""
    cookie = refresh_cookie(request, settings)
    body = fields.get("refresh_token")
    if cookie is not None and body:
        raise InvalidRequest("Send the refresh token in the cookie or in the body, not both.")
    return cookie or body or None


def require_allowed_origin(request: Request, settings: Settings) -> None:
    origin = request.headers.get("origin")
    if origin not in settings.allowed_origins:
        raise ForbiddenOrigin(detail=f"refresh cookie endpoint called from origin {origin!r}")
