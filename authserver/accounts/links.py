"""One-time links in mail: a password reset's and an email verification's (API.md "Accounts").

A link carries a token of 256 random bits (`secrets.token_urlsafe(32)`); the store keeps only
its SHA-256, as it does refresh tokens, with the link's kind, its user, its end and, once
used, when. Spending is one statement in the store (`LinkStore.spend_reset`,
`LinkStore.spend_verification`): of two requests racing with one token, exactly one finds it
unspent. A GET of the link never spends it: mail scanners fetch links (http/links.py shows a
page whose one button posts the token).

A reset link is bound to the password it was mailed under: it holds the SHA-256 of the user's
password hash then (`password_fingerprint`), and the store sets a new password only while the
stored hash still has that fingerprint, on the user's row locked. A new password by any way
(another reset link, the account page, the admin API, the CLI) makes a new hash (argon2 salts
every one), so every link mailed before it is dead.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from authserver.audit import AuditEvent
from authserver.mail.compose import Mail

RESET = "reset"
VERIFY = "verify"
# A sign-up's first link in AUTHSERVER_SIGNUP=verified: verifies the address and lets the
# account, stored disabled until then, sign in (actions/sign_up.py).
SIGNUP = "signup"
MAX_TOKEN = 100  # token_urlsafe(32) is 43 characters; anything much longer is not ours


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_fingerprint(password_hash: str | None) -> str:
    """What a reset link remembers of the password it may replace: not the hash itself (a
    copy of it would be one more place to steal it from)."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()


@dataclass(frozen=True)
class Link:
    """A link to be stored with its mail. `token_hash` only: the token is in the mail."""

    token_hash: str
    kind: str
    user_id: str
    created_at: int
    expires_at: int
    password_fingerprint: str | None = None  # a reset link's
    email: str | None = None  # a verification link's address


@dataclass(frozen=True)
class ResetTarget:
    """Whom an address asking for a reset belongs to."""

    user_id: str
    email: str
    password_hash: str
    locale: str | None


class Spent(Enum):
    DONE = "done"
    DEAD = "dead"  # unknown, spent, expired, or (a reset) the password changed since
    EMAIL_TAKEN = "email taken"  # a verification: another live user has the address now
    ACTIVATED = "activated"  # a sign-up's link: the address verified, the account may sign in


@dataclass(frozen=True)
class ResetRequest:
    email: str
    locale: str | None


class LinkStore(Protocol):
    async def issue(self, link: Link, *mails: Mail) -> None:
        """Stores the link and queues its mails in one transaction: all or nothing."""
        ...

    async def ask_reset(self, request: ResetRequest, now: int) -> None:
        """Queues a reset request of an address, known or not (one INSERT either way)."""
        ...

    async def take_reset_requests(self, limit: int) -> list[ResetRequest]:
        """Removes and returns up to `limit` queued requests, oldest first (one statement:
        two takers never get one request)."""
        ...

    async def email_in_use(self, email: str, by_other_than: str) -> bool:
        """Whether a live user other than `by_other_than` has this address (any case)."""
        ...

    async def reset_target(self, email: str) -> ResetTarget | None:
        """The live, enabled user with this address (any case), who has a password."""
        ...

    async def user_of(self, token_hash: str, kind: str, now: int) -> str | None:
        """The user of a live (unspent, unexpired) link of `kind`: a hint for the caller's
        checks before spending; spending decides."""
        ...

    async def spend_reset(
        self,
        token_hash: str,
        new_password_hash: str,
        now: int,
        audit: Callable[[str], AuditEvent],
    ) -> str | None:
        """Spends the reset link and sets the password, with `audit`, in one transaction on
        the user's row locked: only if the link is unspent, unexpired, its user live and
        enabled and the stored hash still the one it was mailed under; `audit(user_id)` is
        the event. The user's id, or None (and nothing changed but the link, dead either way)."""
        ...

    async def spend_verification(
        self, token_hash: str, now: int, audit: Callable[[str, str], AuditEvent]
    ) -> Spent:
        """Spends the verification link and makes its address the user's email, verified,
        with `audit(user_id, email)`. EMAIL_TAKEN leaves the link unspent and nothing changed.
        A sign-up's link (SIGNUP) verifies the address the account was made with and enables
        the account (ACTIVATED); only while it is still disabled with that address, so an
        operator's later change is not undone by an old link."""
        ...
