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
    sessions,
    token,
    wellknown,
)

routes = [
    Route(wellknown.JWKS_PATH, wellknown.jwks, methods=["GET"]),
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
    # The operator lifecycle (API.md): one use case per endpoint, shared with the CLI.
    Route("/admin/clients", admin.list_clients, methods=["GET"]),
    Route("/admin/clients/{client_id}", admin.show_client, methods=["GET"]),
    Route("/admin/clients/{client_id}", admin.update_client, methods=["PATCH"]),
    Route("/admin/clients/{client_id}", admin.delete_client, methods=["DELETE"]),
    Route("/admin/clients/{client_id}/secret", admin.rotate_client_secret, methods=["POST"]),
    Route("/admin/users", admin.list_users, methods=["GET"]),
    Route("/admin/users/{sub}", admin.show_user, methods=["GET"]),
    Route("/admin/users/{sub}", admin.update_user, methods=["PATCH"]),
    Route("/admin/users/{sub}", admin.delete_user, methods=["DELETE"]),
    Route("/admin/users/{sub}/password", admin.set_password, methods=["PUT"]),
    Route("/admin/users/{sub}/sessions", admin.user_sessions, methods=["GET"]),
    Route("/admin/sessions/{sid}/revoke", admin.revoke_session, methods=["POST"]),
    Route("/sessions", sessions.my_sessions, methods=["GET"]),
    Route("/sessions/{sid}", sessions.end_my_session, methods=["DELETE"]),
    Route("/admin/audit", audit.audit, methods=["GET"]),
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint.metrics_endpoint, methods=["GET"]),
    # Every route is described in http/openapi.py's OPERATIONS (tests/http/test_openapi.py).
    Route("/openapi.json", openapi.openapi, methods=["GET"]),
]
