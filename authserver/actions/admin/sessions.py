"""Operators' use cases for users' sessions: refresh-token families (list, revoke) and
signed-in browsers (login sessions: end one)."""

from __future__ import annotations

from typing import Any

from authserver.actions.admin import existing_user
from authserver.errors import NotFound
from authserver.i18n.translations import N_
from authserver.services import Services
from authserver.tokens.refresh import Session, family_revoked


def session_view(session: Session, current: str | None = None) -> dict[str, Any]:
    return {
        "sid": session.sid,
        "client_id": session.client_id,
        "created_at": session.created_at,
        "last_used_at": session.last_used_at,
        "expires_at": session.expires_at,
        "user_agent": session.user_agent,
        "current": session.sid == current,
    }


async def user_sessions(services: Services, sub: str) -> list[dict[str, Any]]:
    await existing_user(services, sub)
    sessions = await services.families.sessions(sub, services.clock())
    return [session_view(s) for s in sessions]


async def revoke_session(services: Services, actor: str, sid: str) -> None:
    family = await services.families.get(sid)
    if family is None:
        raise NotFound("No session has this sid.")
    now = services.clock()
    event = family_revoked(
        sid, family.user_id, family.client_id, reason="admin_revoked", actor=actor, now=now
    )
    await services.families.revoke(sid, "admin_revoked", now, [event])


async def end_browser(services: Services, actor: str, sub: str, session_id: str) -> None:
    """Ends one signed-in browser of the user (its login session, and the families it started),
    as the user can on their account page; `end_session` audited with the operator as actor."""
    now = services.clock()
    if await services.login_sessions.end_by_id(session_id, sub, now, actor) is None:
        raise NotFound(N_("The user has no signed-in browser with this id."))
