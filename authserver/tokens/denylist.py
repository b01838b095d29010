"""Is this access token revoked? Answered here, for every endpoint that takes one back.

An access token is a JWT that verifies offline until it expires, so revoking it means keeping
a list: its `jti` denied (logout, RFC 7009), its session (`sid`) revoked or over (logout
everywhere, reuse, a disabled user), the key that signed it revoked, or its client disabled,
deleted or marked "tokens issued until T are revoked" (which reaches client_credentials tokens,
which have no session). One query asks all four, so a change made on another instance counts
at once, not after this one's next reload.
Verifiers that work offline read the same facts from the feed (actions/revocation_feed.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from authserver.tokens.access_tokens import TokenRejected, signing_kid


class Denylist(Protocol):
    """Denied access tokens, and the revocation check. Every method is one transaction."""

    async def deny(self, jti: str, expires_at: int, now: int) -> None:
        """Denies an access token until it expires; expired entries are cleared on the way."""
        ...

    async def access_revoked(
        self,
        jti: str,
        sid: str | None,
        now: int,
        kid: str = "",
        client_id: str = "",
        issued_at: int = 0,
    ) -> bool:
        """True when the jti is denied, the key `kid` that signed it is revoked, the session
        `sid` is revoked or over, or the client is disabled, deleted or revoked its tokens
        issued at or before `issued_at`."""
        ...

    async def recent_revocations(self, since: int, now: int) -> Revocations:
        """The ids of families revoked at or after `since`, the jtis denied past `now`, and the
        clients whose tokens issued until a time are revoked (marked since `since`, or
        disabled or deleted now: then until `now`)."""
        ...


@dataclass(frozen=True)
class Revocations:
    sids: list[str]
    jtis: list[str]
    clients: dict[str, int]  # client_id -> its access tokens with iat at or before it are dead


async def live_claims(
    token: str,
    *,
    verify: Callable[[str], dict[str, Any]],
    denylist: Denylist,
    now: int,
) -> dict[str, Any] | None:
    """The claims of a valid (`verify`: signature, iss, aud, exp), unrevoked access token;
    None otherwise."""
    try:
        claims = verify(token)
    except TokenRejected:
        return None
    sid = claims.get("sid")
    if sid is not None and not isinstance(sid, str):
        return None
    client_id, issued_at = claims.get("client_id"), claims.get("iat")
    if not isinstance(client_id, str) or not isinstance(issued_at, int):
        return None
    # One query covers the jti, the session, the signing key and the client.
    kid = signing_kid(token)
    if await denylist.access_revoked(claims["jti"], sid, now, kid, client_id, issued_at):
        return None
    return claims


async def deny_until_expiry(
    denylist: Denylist, claims: dict[str, Any], *, leeway: int, now: int
) -> None:
    """Denies the token whose verified `claims` these are, for as long as it could verify."""
    # Verification grants `leeway` past exp, so the entry must outlive exp by as much: swept
    # at exp, a denied token would verify again for the rest of the leeway.
    await denylist.deny(claims["jti"], claims["exp"] + leeway, now)
