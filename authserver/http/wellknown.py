"""GET /.well-known/jwks.json and the RFC 8414 metadata documents."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authserver.actions import metadata as discovery
from authserver.config import Settings
from authserver.http.context import services
from authserver.http.responses import etag_matches

JWKS_PATH = "/.well-known/jwks.json"
JWKS_TYPE = "application/jwk-set+json"


async def jwks(request: Request) -> Response:
    """The key set; a plain GET is answered by http/fast_path.py, with the same bytes."""
    found = services(request)
    ring = found.keys.ring
    headers = {"Cache-Control": jwks_cache_control(found.settings), "ETag": ring.jwks_etag}
    if etag_matches(request.headers.get("if-none-match"), ring.jwks_etag):
        return Response(status_code=304, headers=headers)
    return Response(ring.jwks_body, media_type=JWKS_TYPE, headers=headers)


def jwks_cache_control(settings: Settings) -> str:
    # Verifiers may cache this long; a next key is published at least this long before it
    # signs, so a cache that follows the rules never meets an unknown kid.
    return f"public, max-age={settings.jwks_max_age}"


async def oauth_metadata(request: Request) -> Response:
    return _metadata(await discovery.metadata(services(request)))


async def openid_configuration(request: Request) -> Response:
    return _metadata(await discovery.metadata(services(request)))


def _metadata(document: dict[str, Any]) -> Response:
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})
