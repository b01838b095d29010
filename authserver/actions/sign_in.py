"""The hosted sign-in page's login: the password grant's check, throttling and audit, ending in
a login session instead of tokens.

Throttled exactly as the password grant (throttle.guard: the attempt is counted in the database
before argon2 runs), refused with the same single InvalidGrant for every cause, and audited as
`login.failed` with the username hashed. Success starts a login session, which the store stores
only if the user is still enabled as it commits.
"""

from __future__ import annotations

from authserver import throttle
from authserver.audit import ANONYMOUS, AuditEvent, username_digest
from authserver.errors import InvalidGrant
from authserver.login_sessions import LoginSession, start_login_session
from authserver.services import Services
from authserver.users import MAX_PASSWORD, authenticate


async def sign_in(
    services: Services,
    *,
    username: str,
    password: str,
    address: str | None,
    client_id: str | None,
    replaces: str | None = None,
) -> tuple[LoginSession, str]:
    """(the new login session, its cookie value); InvalidGrant or SlowDown otherwise.
    `replaces`: the browser's login-session cookie, if any, ended by a success (see
    start_login_session)."""
    return await throttle.guard(
        services.throttle,
        username=username or None,
        address=address,
        clock=services.clock,
        turns=services.login_turns,
        attempt=lambda: _check(services, username, password, client_id, replaces),
    )


async def _check(
    services: Services, username: str, password: str, client_id: str | None, replaces: str | None
) -> tuple[LoginSession, str]:
    try:
        if not username or not password or len(password) > MAX_PASSWORD:
            raise InvalidGrant(detail="username or password missing or oversized")
        user = await authenticate(services.users, services.passwords, username, password)
    except InvalidGrant:
        detail = {"client_id": client_id, "via": "sign_in_page"}
        event = AuditEvent(
            services.clock(), ANONYMOUS, "login.failed", username_digest(username), detail
        )
        await services.audit.record([event])
        raise
    settings = services.settings
    return await start_login_session(
        services.login_sessions, user.id, services.clock(), settings.login_session_ttl, client_id,
        replaces,
    )  # fmt: skip
