"""The resource owner password credentials grant (RFC 6749 §4.3)."""

from __future__ import annotations

from authserver import throttle
from authserver.actions.grants import GrantRequest, TokenResponse, _required, _with_refresh
from authserver.audit import ANONYMOUS, AuditEvent, username_digest
from authserver.clients import authenticate_client
from authserver.errors import InvalidGrant, InvalidScope, UnauthorizedClient
from authserver.refresh import start_family
from authserver.scopes import grant, parse_scope
from authserver.services import Services
from authserver.users import authenticate


async def password_grant(services: Services, request: GrantRequest) -> TokenResponse:
    """Throttled per username and address (throttle.py): a blocked login is refused with
    slow_down before anything is checked, and every wrong password counts."""
    return await throttle.guard(
        services.throttle,
        username=request.fields.get("username"),
        address=request.address,
        clock=services.clock,
        turns=services.login_turns,
        attempt=lambda: _password_login(services, request),
    )


async def _password_login(services: Services, request: GrantRequest) -> TokenResponse:
    credentials, fields = request.credentials, request.fields
    client = await authenticate_client(services.clients, credentials)
    # RFC 9700 §2.4: the password grant MUST NOT be used; we allow it only for first-party
    # clients registered with it explicitly.
    if "password" not in client.grant_types:
        raise UnauthorizedClient()
    username, password = _required(fields, "username"), _required(fields, "password")
    requested = parse_scope(fields.get("scope"))
    if requested is not None and not set(requested) <= set(client.scopes):
        raise InvalidScope()
    try:
        user = await authenticate(services.users, services.passwords, username, password)
    except InvalidGrant:
        # The username is hashed (it may be a password typed in the wrong field); the
        # password never leaves `authenticate`. Success is audited with the new family.
        detail = {"client_id": client.client_id}
        event = AuditEvent(
            services.clock(), ANONYMOUS, "login.failed", username_digest(username), detail
        )
        await services.audit.record([event])
        raise
    scope = grant(requested, client.scopes, user.scopes)
    settings = services.settings
    rotation = await start_family(
        services.families,
        user_id=user.id,
        client_id=client.client_id,
        scope=scope,
        now=services.clock(),
        refresh_ttl=settings.refresh_token_ttl,
        session_ttl=settings.session_ttl,
        user_agent=request.user_agent,
        # A password change committed after the check above starts no session.
        password_hash=user.password_hash,
    )
    return await _with_refresh(services, client, rotation)
