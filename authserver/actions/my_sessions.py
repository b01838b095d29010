"""Self-service sessions: a user lists and ends their own (API.md, "Self-service sessions")."""

from __future__ import annotations

from typing import Any

from authserver.actions.admin.sessions import session_view
from authserver.actions.introspection import authenticate_bearer
from authserver.errors import InvalidToken, NotFound
from authserver.services import Services
from authserver.tokens.dpop import DPoPRequest
from authserver.tokens.refresh import family_revoked


async def _caller(
    services: Services, bearer: str | None, presented: DPoPRequest | None
) -> tuple[str, str | None]:
    """The user behind a live access token (with a DPoP proof, `presented`, when it came as
    `Authorization: DPoP`), and the session it came from."""
    claims = await authenticate_bearer(services, bearer, presented)
    sid = claims.get("sid")
    if not isinstance(sid, str):
        # A client_credentials token speaks for a client, which has no sessions.
        raise InvalidToken(detail="a token with no session")
    return str(claims["sub"]), sid


async def my_sessions(
    services: Services, bearer: str | None, presented: DPoPRequest | None = None
) -> list[dict[str, Any]]:
    sub, current = await _caller(services, bearer, presented)
    return [
        session_view(s, current) for s in await services.families.sessions(sub, services.clock())
    ]


async def end_my_session(
    services: Services, bearer: str | None, sid: str, presented: DPoPRequest | None = None
) -> None:
    """Another user's sid is answered as an unknown one: 404, nothing revoked."""
    sub, _ = await _caller(services, bearer, presented)
    family = await services.families.get(sid)
    if family is None or family.user_id != sub:
        raise NotFound("You have no session with this sid.")
    now = services.clock()
    event = family_revoked(
        sid, family.user_id, family.client_id, reason="user_revoked", actor=sub, now=now
    )
    await services.families.revoke(sid, "user_revoked", now, [event])
