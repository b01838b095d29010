"""Is this access token revoked? Answered here, for every endpoint that takes one back.

An access token is a JWT that verifies offline until it expires, so revoking it means keeping
a list: its `jti` denied (logout, RFC 7009), its session (`sid`) revoked or over (logout
everywhere, reuse, a disabled user), or the key that signed it revoked. One query asks all
three, so a key revoked on another instance counts at once, not after this one's next reload.
Verifiers that work offline read the same facts from the revocation feed (revocation_feed.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from authserver.access_tokens import TokenRejected, signing_kid


class Denylist(Protocol):
    """Denied access tokens, and the revocation check. Every method is one transaction."""

    async def deny(self, jti: str, expires_at: int, now: int) -> None:
        """Denies an access token until it expires; expired entries are cleared on the way."""
        ...

    async def access_revoked(self, jti: str, sid: str | None, now: int, kid: str = "") -> bool:
        """True when the jti is denied, the key `kid` that signed it is revoked, or the
        session `sid` is revoked or over."""
        ...

    async def recent_revocations(self, since: int, now: int) -> tuple[list[str], list[str]]:
        """The ids of families revoked at or after `since`, and the jtis denied past `now`."""
        ...


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
    # One query covers the jti, the session and the signing key.
    if await denylist.access_revoked(claims["jti"], sid, now, signing_kid(token)):
        return None
    return claims


async def deny_until_expiry(
    denylist: Denylist, claims: dict[str, Any], *, leeway: int, now: int
) -> None:
    """Denies the token whose verified `claims` these are, for as long as it could verify."""
    # Verification grants `leeway` past exp, so the entry must outlive exp by as much: swept
    # at exp, a denied token would verify again for the rest of the leeway.
    await denylist.deny(claims["jti"], claims["exp"] + leeway, now)
