"""The URL map: the contract of API.md at a glance."""

from __future__ import annotations

from starlette.routing import Route

from authserver.http import (
    account,
    authorize,
    email_verification,
    end_session,
    health,
    introspection,
    logout,
    metrics_endpoint,
    my_sessions,
    openapi,
    pages,
    password_reset,
    revocation_feed,
    sign_in,
    sign_up,
    token,
    userinfo,
    wellknown,
)
from authserver.http.admin import audit
from authserver.http.admin import clients as admin_clients
from authserver.http.admin import keys as admin_keys
from authserver.http.admin import sessions as admin_sessions
from authserver.http.admin import users as admin_users

routes = [
    Route(wellknown.JWKS_PATH, wellknown.jwks, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", wellknown.oauth_metadata, methods=["GET"]),
    Route("/.well-known/openid-configuration", wellknown.openid_configuration, methods=["GET"]),
    Route("/authorize", authorize.authorize, methods=["GET"]),
    Route("/login", sign_in.login_form, methods=["GET"]),
    Route("/login", sign_in.login, methods=["POST"]),
    Route("/login/factor", sign_in.factor_form, methods=["GET"]),
    Route("/login/factor", sign_in.factor, methods=["POST"]),
    Route("/account", account.account, methods=["GET"]),
    Route("/account/password", account.change_password, methods=["POST"]),
    Route("/account/sessions/end", account.end_session, methods=["POST"]),
    Route("/account/sign-out-everywhere", account.sign_out_everywhere, methods=["POST"]),
    Route("/account/totp", account.start_totp, methods=["POST"]),
    Route("/account/totp/confirm", account.confirm_totp, methods=["POST"]),
    Route("/account/factors/remove", account.remove_factors, methods=["POST"]),
    Route("/password-reset", password_reset.ask_form, methods=["GET"]),
    Route("/password-reset", password_reset.ask, methods=["POST"]),
    Route("/password-reset/confirm", password_reset.confirm_form, methods=["GET"]),
    Route("/password-reset/confirm", password_reset.confirm, methods=["POST"]),
    Route("/signup", sign_up.signup_form, methods=["GET"]),
    Route("/signup", sign_up.signup, methods=["POST"]),
    Route("/account/email", email_verification.change_form, methods=["GET"]),
    Route("/account/email", email_verification.change, methods=["POST"]),
    Route("/verify-email", email_verification.verify_form, methods=["GET"]),
    Route("/verify-email", email_verification.verify, methods=["POST"]),
    Route("/assets/signin.css", pages.stylesheet, methods=["GET"]),
    Route("/assets/favicon.svg", pages.favicon, methods=["GET"]),
    Route("/favicon.ico", pages.favicon, methods=["GET"]),
    Route("/userinfo", userinfo.userinfo, methods=["GET", "POST"]),
    Route("/end-session", end_session.end_session, methods=["GET", "POST"]),
    Route("/token", token.token, methods=["POST"]),
    Route("/refresh", token.refresh, methods=["POST"]),
    Route("/logout", logout.logout, methods=["POST"]),
    Route("/logout/all", logout.logout_all, methods=["POST"]),
    Route("/revoke", logout.revoke, methods=["POST"]),
    Route("/introspect", introspection.introspect, methods=["POST"]),
    Route("/revocations", revocation_feed.revocations, methods=["GET"]),
    Route("/admin/keys", admin_keys.list_keys, methods=["GET"]),
    Route("/admin/keys/rotate", admin_keys.rotate_keys, methods=["POST"]),
    Route("/admin/keys/{kid}/revoke", admin_keys.revoke_key, methods=["POST"]),
    Route("/admin/users", admin_users.create_user, methods=["POST"]),
    Route("/admin/users/{sub}/logout-all", admin_users.logout_user_everywhere, methods=["POST"]),
    Route("/admin/users/{sub}/disable", admin_users.disable_user, methods=["POST"]),
    Route("/admin/clients", admin_clients.create_client, methods=["POST"]),
    # The operator lifecycle (API.md): one use case per endpoint, shared with the CLI.
    Route("/admin/clients", admin_clients.list_clients, methods=["GET"]),
    Route("/admin/clients/{client_id}", admin_clients.show_client, methods=["GET"]),
    Route("/admin/clients/{client_id}", admin_clients.update_client, methods=["PATCH"]),
    Route("/admin/clients/{client_id}", admin_clients.delete_client, methods=["DELETE"]),
    Route(
        "/admin/clients/{client_id}/secret", admin_clients.rotate_client_secret, methods=["POST"]
    ),
    Route("/admin/users", admin_users.list_users, methods=["GET"]),
    Route("/admin/users/{sub}", admin_users.show_user, methods=["GET"]),
    Route("/admin/users/{sub}", admin_users.update_user, methods=["PATCH"]),
    Route("/admin/users/{sub}", admin_users.delete_user, methods=["DELETE"]),
    Route("/admin/users/{sub}/password", admin_users.set_password, methods=["PUT"]),
    Route("/admin/users/{sub}/sessions", admin_sessions.user_sessions, methods=["GET"]),
    Route("/admin/users/{sub}/factors", admin_users.reset_factors, methods=["DELETE"]),
    Route("/admin/sessions/{sid}/revoke", admin_sessions.revoke_session, methods=["POST"]),
    Route("/sessions", my_sessions.my_sessions, methods=["GET"]),
    Route("/sessions/{sid}", my_sessions.end_my_session, methods=["DELETE"]),
    Route("/admin/audit", audit.audit, methods=["GET"]),
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint.metrics_endpoint, methods=["GET"]),
    # Every route is described in http/openapi.py's OPERATIONS (tests/http/test_openapi.py).
    Route("/openapi.json", openapi.openapi, methods=["GET"]),
]
