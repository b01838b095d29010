"""Login sessions: the single sign-on behind the `authserver_session` cookie.

A password typed into the hosted sign-in page starts one; while it lives (used within the idle
lifetime, younger than the absolute one, not ended, its user enabled), another client's
/authorize answers without the form. The cookie is 256 random bits and only its SHA-256 is
stored, like refresh tokens. Whether a session is alive is decided by the store in the statement
that uses it, so an ended session or a disabled user is seen by every instance at once.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from authserver.audit import AuditEvent
from authserver.errors import InvalidGrant
from authserver.tokens.refresh import USER_AGENT_MAX


@dataclass(frozen=True)
class LoginSession:
    id: str
    user_id: str
    auth_time: int  # the last time the user proved a factor (OpenID Connect's auth_time)
    expires_at: int  # absolute end
    user_agent: str | None = None  # of the browser that signed in, cut to USER_AGENT_MAX
    amr: tuple[str, ...] = ("pwd",)  # how the user proved who they are (RFC 8176)


@dataclass(frozen=True)
class Browser:
    """A live login session as its user sees it on the account page."""

    id: str
    created_at: int  # when the password was typed
    last_used_at: int
    expires_at: int  # absolute end
    user_agent: str | None


@dataclass(frozen=True)
class Ended:
    """What ending a login session ended: the session and the families it started."""

    session: LoginSession
    families: tuple[tuple[str, str], ...]  # (family id, client_id)


class LoginSessionStore(Protocol):
    """Every method is one transaction of its own."""

    async def start(
        self, session: LoginSession, token_hash: str, now: int, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        """Stores the session and appends `audit`, only if its user is enabled as it commits
        (a concurrent disable waits for it, or wins and this stores nothing)."""
        ...

    async def touch(self, token_hash: str, now: int, idle_ttl: int) -> LoginSession | None:
        """The live session of this cookie, its idle clock restarted, in one statement; None
        when it is unknown, ended, idle or past its end, or its user is disabled or gone."""
        ...

    async def step_up(
        self, token_hash: str, user_id: str, amr: tuple[str, ...], now: int, idle_ttl: int,
        new_token_hash: str,
    ) -> LoginSession | None:  # fmt: skip
        """A step-up, in one statement: the live session of this cookie (as `touch` decides),
        if `user_id`'s, takes `amr` as its methods, `now` as its auth_time and
        `new_token_hash` as its cookie's hash; None (nothing changed) otherwise."""
        ...

    async def holder(self, token_hash: str) -> str | None:
        """The user of the session this cookie names unless it was ended, idle or past its end
        included (ending one still revokes the families it started); None for an unknown or
        ended one. Reads only: no idle clock restarted."""
        ...

    async def end(self, token_hash: str, now: int, client_id: str | None) -> Ended | None:
        """Ends the session (if live) and revokes every family it started, in one transaction
        that waits for any code exchange of the session still running; appends an
        `end_session` audit event and one `family.revoked` per family with them."""
        ...

    async def take_over(self, token_hash: str, session_id: str, user_id: str, now: int) -> bool:
        """Ends the live session of this cookie if it is `user_id`'s and moves the live families
        it started to the session `session_id`, in one transaction; False (nothing changed)
        when the cookie names no live session of that user."""
        ...

    async def end_user(self, user_id: str, now: int, keep: str | None = None) -> int:
        """Ends every live login session of the user but the one with the id `keep`;
        returns how many."""
        ...

    async def browsers(self, user_id: str, now: int, idle_ttl: int) -> list[Browser]:
        """The user's live login sessions (as `touch` decides, without touching them),
        newest first."""
        ...

    async def end_by_id(
        self, session_id: str, user_id: str, now: int, actor: str | None = None
    ) -> Ended | None:
        """As `end`, for the session with this id if it is `user_id`'s; None (nothing
        changed) for another user's, an unknown or an ended one. Audited with `actor` (an
        operator's sub), else with the user (their account page)."""
        ...


# RFC 8176 §2 values: "pwd" (a password), "otp" (a one-time password: TOTP or a recovery code),
# "mfa" (more than one factor). What ID tokens say as `amr`, and `acr` below.
PASSWORD_ONLY = ("pwd",)
PASSWORD_AND_OTP = ("pwd", "otp", "mfa")
# A passkey with user verification (passkeys.py): "hwk" (proof of a hardware-secured key) and
# "user" (the authenticator verified the user: a PIN or biometric), so two factors on its own.
PASSKEY_ONLY = ("hwk", "user", "mfa")
PASSWORD_AND_PASSKEY = ("pwd", "hwk", "user", "mfa")


ACR_VALUES = ("pwd", "mfa")  # the weaker first (discovery's acr_values_supported)


def acr_of(amr: tuple[str, ...]) -> str:
    """The `acr` of a sign-in (API.md): `mfa` with two factors, else `pwd`."""
    return "mfa" if "mfa" in amr else "pwd"


def stepped_up(amr: tuple[str, ...], method: tuple[str, ...]) -> tuple[str, ...]:
    """The methods of a session after a step-up: its own, then the factor's (`("otp",)`), then
    `mfa` (RFC 8176 §2: multiple-factor authentication), each once."""
    return tuple(dict.fromkeys((*amr, *method, "mfa")))


MAX_COOKIE = 256  # a longer cookie is none of ours: not even hashed


def new_session_token() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start_login_session(
    store: LoginSessionStore,
    user_id: str,
    now: int,
    ttl: int,
    client_id: str | None,
    replaces: str | None = None,
    user_agent: str | None = None,
    amr: tuple[str, ...] = PASSWORD_ONLY,
) -> tuple[LoginSession, str]:
    """A new session for a user whose password was just checked, and its cookie value.
    InvalidGrant when the user was disabled or deleted meanwhile (the store decides).

    `replaces` is the login-session cookie the browser presented, if any: one browser holds one
    sign-in, so the session it names ends once the new one is stored. The same user's apps stay
    signed in, their families moved to the new session (so /end-session in this browser still
    ends them); another user's session ends as /end-session ends it, with every family it
    started, so nothing of the previous user stays signed in behind the new one."""
    agent = user_agent[:USER_AGENT_MAX] if user_agent else None
    session = LoginSession(str(uuid.uuid4()), user_id, now, now + ttl, agent, amr)
    token = new_session_token()
    event = AuditEvent(
        now, user_id, "login.succeeded", user_id, {"client_id": client_id, "via": "sign_in_page"},
        user=user_id,
    )  # fmt: skip
    if not await store.start(session, hash_session_token(token), now, [event]):
        raise InvalidGrant(detail="user disabled or deleted during the sign-in")
    if replaces and len(replaces) <= MAX_COOKIE:
        old = hash_session_token(replaces)
        if not await store.take_over(old, session.id, user_id, now):
            await store.end(old, now, client_id)
    return session, token


# A password checked for a user with a second factor waits this long for it (5 minutes: an
# authenticator app's code is at hand or not; a long wait only helps someone with the password).
PENDING_TTL = 300


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in past its password, awaiting the second factor (actions/sign_in_steps.py).
    Held server-side by the SHA-256 of its own cookie; never a login session."""

    user_id: str
    client_id: str | None
    password_at: int  # when the password was typed
    expires_at: int


class PendingSignInStore(Protocol):
    """Every method is one statement of its own."""

    async def hold(self, pending: PendingSignIn, token_hash: str) -> None: ...

    async def find(self, token_hash: str, now: int) -> PendingSignIn | None:
        """The unexpired pending sign-in of this cookie, its user enabled; else None."""
        ...

    async def release(self, token_hash: str, now: int) -> PendingSignIn | None:
        """Removes the pending sign-in and returns it if unexpired: at most once."""
        ...
