"""GET /.well-known/jwks.json and the RFC 8414 metadata documents."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authserver.http.context import services

GRANT_TYPES = ["password", "refresh_token", "client_credentials"]
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


async def jwks(request: Request) -> Response:
    ring = services(request).keys.ring
    headers = {
        # Verifiers may cache this long; a next key is published at least this long before it
        # signs, so a cache that follows the rules never meets an unknown kid.
        "Cache-Control": f"public, max-age={services(request).settings.jwks_max_age}",
        "ETag": ring.jwks_etag,
    }
    if _etag_matches(request.headers.get("if-none-match"), ring.jwks_etag):
        return Response(status_code=304, headers=headers)
    return Response(ring.jwks_body, media_type="application/jwk-set+json", headers=headers)


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates or "*" in candidates


async def oauth_metadata(request: Request) -> Response:
    return JSONResponse(await _metadata(request), headers={"Cache-Control": "public, max-age=300"})


async def openid_configuration(request: Request) -> Response:
    metadata = await _metadata(request)
    # OpenID Discovery requires these members. authserver issues no ID tokens; the values
    # describe the access tokens so generic clients can read the document.
    metadata["subject_types_supported"] = ["public"]
    metadata["id_token_signing_alg_values_supported"] = metadata[
        "access_token_signing_alg_values_supported"
    ]
    return JSONResponse(metadata, headers={"Cache-Control": "public, max-age=300"})


async def _metadata(request: Request) -> dict[str, Any]:
    found = services(request)
    issuer = found.settings.issuer
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": [],  # no authorization endpoint: nothing to ask it for
        "scopes_supported": await found.clients.scopes_in_use(),
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS[:2],
        "access_token_signing_alg_values_supported": found.keys.ring.signing_algs,
    }
