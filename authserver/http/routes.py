"""The URL map: the contract of API.md at a glance."""

from __future__ import annotations

from starlette.routing import Route

from authserver.http import (
    admin,
    audit,
    authorize,
    health,
    introspection,
    logout,
    metrics_endpoint,
    oidc,
    openapi,
    pages,
    revocation_feed,
    token,
    wellknown,
)

routes = [
    Route("/.well-known/jwks.json", wellknown.jwks, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", wellknown.oauth_metadata, methods=["GET"]),
    Route("/.well-known/openid-configuration", wellknown.openid_configuration, methods=["GET"]),
    Route("/authorize", authorize.authorize, methods=["GET"]),
    Route("/login", authorize.login_form, methods=["GET"]),
    Route("/login", authorize.login, methods=["POST"]),
    Route("/assets/signin.css", pages.stylesheet, methods=["GET"]),
    Route("/userinfo", oidc.userinfo, methods=["GET", "POST"]),
    Route("/end-session", oidc.end_session, methods=["GET", "POST"]),
    Route("/token", token.token, methods=["POST"]),
    Route("/refresh", token.refresh, methods=["POST"]),
    Route("/logout", logout.logout, methods=["POST"]),
    Route("/logout/all", logout.logout_all, methods=["POST"]),
    Route("/revoke", logout.revoke, methods=["POST"]),
    Route("/introspect", introspection.introspect, methods=["POST"]),
    Route("/revocations", revocation_feed.revocations, methods=["GET"]),
    Route("/admin/keys", admin.list_keys, methods=["GET"]),
    Route("/admin/keys/rotate", admin.rotate_keys, methods=["POST"]),
    Route("/admin/keys/{kid}/revoke", admin.revoke_key, methods=["POST"]),
    Route("/admin/users", admin.create_user, methods=["POST"]),
    Route("/admin/users/{sub}/logout-all", admin.logout_user_everywhere, methods=["POST"]),
    Route("/admin/users/{sub}/disable", admin.disable_user, methods=["POST"]),
    Route("/admin/clients", admin.create_client, methods=["POST"]),
    Route("/admin/audit", audit.audit, methods=["GET"]),
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint.metrics_endpoint, methods=["GET"]),
    # Every route is described in http/openapi.py's OPERATIONS (tests/http/test_openapi.py).
    Route("/openapi.json", openapi.openapi, methods=["GET"]),
]
