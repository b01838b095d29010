"""Where all of a user's sessions are ended: disable (the endpoint and PATCH `disabled`),
delete, a new password, and log out everywhere (the admin's and the user's own) call
`end_sessions`, so each ends the same things and writes the same audit events.

Ending only the sessions that hold a scope (a demotion ends the admin ones) is not this:
FamilyStore.revoke_user_holding, called by actions/admin/users.py."""

from __future__ import annotations

from authserver.audit import AuditEvent
from authserver.services import Services


async def end_sessions(
    services: Services,
    user: str,
    *,
    reason: str,
    actor: str,
    now: int,
    announce: str | None = None,
    keep_login_session: str | None = None,
) -> int:
    """Ends the user's login sessions and revokes every live refresh family (one
    `family.revoked` each, reason `reason`); returns how many families were live. With
    `announce`, one event of that type on the user, `{"sessions": n}`, after them. With
    `keep_login_session`, that login session and the families it started stay (the browser
    that changed its password on the account page)."""
    # The login sessions first: once they are over, no single sign-on issues a code that
    # starts a family the revocation below would miss.
    keep = keep_login_session
    await services.login_sessions.end_user(user, now, keep)
    ended = await services.families.revoke_user(
        user, reason, now, actor=actor, keep_login_session=keep
    )
    if announce is not None:
        event = AuditEvent(now, actor, announce, user, {"sessions": ended}, user=user)
        await services.audit.record([event])
    return ended
