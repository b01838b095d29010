"""GET /.well-known/jwks.json and the RFC 8414 metadata documents."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authserver.config import Settings
from authserver.http.context import services
from authserver.http.responses import etag_matches
from authserver.profiles import EMAIL_CLAIMS, PROFILE_CLAIMS
from authserver.scopes import IDENTITY_SCOPES

GRANT_TYPES = ["authorization_code", "password", "refresh_token", "client_credentials"]
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
# What ID tokens (id_tokens.py) and /userinfo (actions/userinfo.py) may carry.
CLAIMS = [
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "amr", "at_hash",
    *PROFILE_CLAIMS, *EMAIL_CLAIMS,
]  # fmt: skip


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
    return JSONResponse(await _metadata(request), headers={"Cache-Control": "public, max-age=300"})


async def openid_configuration(request: Request) -> Response:
    metadata = await _metadata(request)
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
        "authorization_endpoint": f"{issuer}/authorize",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "end_session_endpoint": f"{issuer}/end-session",
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        # RFC 9700 §2.1.1: PKCE for every client, and only S256 (pkce.py).
        "code_challenge_methods_supported": ["S256"],
        # RFC 9207: every authorization response names its issuer.
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": sorted({*IDENTITY_SCOPES, *await found.clients.scopes_in_use()}),
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS[:2],
        "access_token_signing_alg_values_supported": found.keys.ring.signing_algs,
        # OpenID Connect Discovery 1.0 §3.
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": found.keys.ring.signing_algs,
        "claims_supported": CLAIMS,
        # /authorize refuses request objects (request_not_supported, request_uri_not_supported);
        # request_uri_parameter_supported must say so, as it defaults to true.
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }
