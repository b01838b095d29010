"""Who the operator behind a console request is: the console session the cookie names, its
access token put to the admin API's own guard (require_admin) on every request, so whatever
ends the operator's admin rights there (a disable, a demotion, a sign-out, a revoked session)
ends them here at once. An expired access token is refreshed first, by one request at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from authserver.actions import token
from authserver.actions.admin import require_admin
from authserver.actions.console import NotAnOperator, SignInNeeded, StaleSignIn, seal, unseal
from authserver.actions.grants import GrantRequest
from authserver.clients import ClientCredentials
from authserver.console_sessions import CONSOLE_CLIENT_ID, Held, cookie_hash
from authserver.errors import (
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidToken,
    OAuthError,
)
from authserver.services import Services

# Refreshed this long before the access token expires, so it does not expire mid-request.
EARLY = 30
# How long a request waits for another one's refresh of the same session.
WAIT_STEPS, WAIT_STEP = 20, 0.1
# A destructive action (a key revoke, a client or user delete, a password set, the admin role
# granted: docs/console.md lists them) needs a sign-in at most this old, with the second
# factor when the operator has one: a console left open is not enough for them.
RECENT_SIGN_IN = 300


@dataclass(frozen=True)
class Operator:
    sub: str
    username: str
    # The browser sign-in behind the console's token (RFC 9068 §2.2.1's auth_time and acr).
    auth_time: int | None = None
    acr: str | None = None


async def operator(services: Services, cookie: str | None) -> Operator:
    """The operator; SignInNeeded without a live console session, NotAnOperator when the admin
    API would refuse the session's token now."""
    if not cookie:
        raise SignInNeeded()
    id_hash = cookie_hash(cookie)
    held = await _live(services, id_hash)
    access = str(unseal(services, id_hash, held.sealed)["access_token"])
    try:
        sub = await require_admin(services, access)
    except InvalidToken:
        # Revoked (a sign-out elsewhere, a disable, the session ended): sign in again.
        await services.console_sessions.end(id_hash)
        raise SignInNeeded() from None
    except (InsufficientScope, InsufficientUserAuthentication):
        raise NotAnOperator() from None
    user = await services.users.by_id(sub)
    claims = services.verify_any_audience(access)
    name = user.username or sub if user else sub
    return Operator(sub, name, claims.get("auth_time"), claims.get("acr"))


async def recent_operator(services: Services, cookie: str | None) -> Operator:
    """The operator, if signed in within RECENT_SIGN_IN seconds, with the second factor when
    they have one; else StaleSignIn (the confirmation pages and the actions they ask for)."""
    who = await operator(services, cookie)
    mfa = bool(await services.second_factors.kinds(who.sub))
    recent = who.auth_time is not None and services.clock() - who.auth_time <= RECENT_SIGN_IN
    if not recent or (mfa and who.acr != "mfa"):
        raise StaleSignIn(mfa)
    return who


async def renew(services: Services, cookie: str | None) -> None:
    """A new access token for the session now, whatever the old one's expiry: after a revoke
    of the key that signed it, which the admin API's guard would refuse from now on."""
    if not cookie:
        raise SignInNeeded()
    id_hash = cookie_hash(cookie)
    now = services.clock()
    held = await services.console_sessions.find(id_hash, now)
    if held is not None and await services.console_sessions.claim_refresh(id_hash, now):
        await _refresh(services, held, now)


async def _live(services: Services, id_hash: str) -> Held:
    """The session, its access token fresh."""
    for _ in range(WAIT_STEPS):
        now = services.clock()
        held = await services.console_sessions.find(id_hash, now)
        if held is None:
            raise SignInNeeded()
        if held.access_expires_at > now + EARLY:
            return held
        if await services.console_sessions.claim_refresh(id_hash, now):
            return await _refresh(services, held, now)
        await anyio.sleep(WAIT_STEP)  # another request of this session is refreshing
    raise SignInNeeded()


async def _refresh(services: Services, held: Held, now: int) -> Held:
    tokens = unseal(services, held.id_hash, held.sealed)
    fields = {"grant_type": "refresh_token", "refresh_token": str(tokens["refresh_token"])}
    credentials = ClientCredentials(CONSOLE_CLIENT_ID, None)
    try:
        issued = await token.issue(services, GrantRequest(credentials, fields))
    except OAuthError:
        # The family ended (expired, revoked, the user disabled): sign in again.
        await services.console_sessions.end(held.id_hash)
        raise SignInNeeded() from None
    fresh = {"access_token": issued.access_token, "refresh_token": issued.refresh_token}
    sealed = seal(services, held.id_hash, fresh)
    expires_at = now + issued.expires_in
    await services.console_sessions.refreshed(held.id_hash, sealed, expires_at)
    return Held(held.id_hash, held.sub, sealed, expires_at, held.expires_at)
