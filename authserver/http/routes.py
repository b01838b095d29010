"""The URL map: the contract of API.md at a glance."""

from __future__ import annotations

from starlette.routing import Route

from authserver.http import health, revocation, token, wellknown

routes = [
    Route("/.well-known/jwks.json", wellknown.jwks, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", wellknown.oauth_metadata, methods=["GET"]),
    Route("/.well-known/openid-configuration", wellknown.openid_configuration, methods=["GET"]),
    Route("/token", token.token, methods=["POST"]),
    Route("/refresh", token.refresh, methods=["POST"]),
    Route("/logout", revocation.logout, methods=["POST"]),
    Route("/logout/all", revocation.logout_all, methods=["POST"]),
    Route("/revoke", revocation.revoke, methods=["POST"]),
    Route("/introspect", revocation.introspect, methods=["POST"]),
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
]
