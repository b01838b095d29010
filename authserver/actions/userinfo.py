"""OpenID Connect's /userinfo (Core §5.3): the claims of the token's user.

ID tokens themselves are minted with the code exchange
(actions/grants/authorization_code.py, id_tokens.py)."""

from __future__ import annotations

from typing import Any

from authserver.accounts.profiles import identity_claims
from authserver.actions.introspection import authenticate_bearer
from authserver.errors import InsufficientScope, InvalidToken
from authserver.services import Services
from authserver.tokens.dpop import DPoPRequest
from authserver.tokens.scopes import OPENID


async def userinfo(
    services: Services, bearer: str | None, presented: DPoPRequest | None = None
) -> dict[str, Any]:
    """The signed-in user's claims for a live access token with scope openid (with a DPoP
    proof, `presented`, when it came as `Authorization: DPoP`)."""
    claims = await authenticate_bearer(services, bearer, presented)
    scopes = str(claims.get("scope", "")).split()
    if OPENID not in scopes:
        raise InsufficientScope(detail="userinfo without the openid scope")
    user = await services.users.by_id(str(claims["sub"]))
    if user is None or user.disabled:
        raise InvalidToken(detail="userinfo for a user gone or disabled")
    # Core §5.3.2: the claims of the identity scopes the token carries, as the user's row
    # holds them now.
    return {"sub": user.id, **identity_claims(user.username, user.profile, scopes)}
