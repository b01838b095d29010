"""The admin console's server-side sessions (a backend-for-frontend): the browser holds a
random cookie, the server the console's tokens, sealed, in a row found by the cookie's hash.

A session is one of two things: a sign-in under way (`Pending`: the PKCE verifier and the
`state` of the console's authorization request) or a signed-in operator (`Held`: the tokens
the code exchange gave the console). Neither ever reaches the browser.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Protocol

# The console's own client (actions/console/client.py registers it at startup).
CONSOLE_CLIENT_ID = "authserver-console"
CALLBACK_PATH = "/console/callback"
# A sign-in under way is given this long to come back from /authorize.
PENDING_TTL = 600
# A claim to refresh the tokens that was not released (the request died) lapses after this.
REFRESH_CLAIM_SECONDS = 30


def new_cookie() -> str:
    return secrets.token_urlsafe(32)


def cookie_hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Held:
    """A signed-in operator's session row."""

    id_hash: str
    sub: str
    sealed: bytes
    access_expires_at: int
    expires_at: int


class ConsoleSessionStore(Protocol):
    async def begin(self, id_hash: str, sealed: bytes, now: int) -> None:
        """Stores a sign-in under way (for PENDING_TTL); expired rows go as new ones come."""
        ...

    async def take_pending(self, id_hash: str, now: int) -> bytes | None:
        """The sealed part of a live sign-in under way, deleted in the same statement (single
        use: of two callbacks with one cookie, one goes on)."""
        ...

    async def hold(
        self, id_hash: str, sub: str, sealed: bytes, access_expires_at: int, now: int, until: int
    ) -> None:
        """Stores a signed-in operator's session until `until`."""
        ...

    async def find(self, id_hash: str, now: int) -> Held | None:
        """The live signed-in session, or None."""
        ...

    async def claim_refresh(self, id_hash: str, now: int) -> bool:
        """True for the one request that may refresh the session's tokens now."""
        ...

    async def refreshed(self, id_hash: str, sealed: bytes, access_expires_at: int) -> None:
        """Stores the new tokens and releases the claim."""
        ...

    async def end(self, id_hash: str) -> None: ...
