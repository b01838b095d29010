"""Resource owners: who they are and how a password login is checked."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from authserver.accounts.passwords import Passwords
from authserver.accounts.profiles import Profile, ProfileChanges
from authserver.audit import AuditEvent
from authserver.errors import InvalidGrant
from authserver.tokens.scopes import ADMIN


@dataclass(frozen=True)
class User:
    id: str  # the `sub` of their tokens: stable and opaque, unlike the username
    username: str
    password_hash: str
    scopes: tuple[str, ...]
    disabled: bool = False
    created_at: int = 0
    last_login_at: int | None = None  # the last sign-in: a password grant or a hosted page
    profile: Profile = Profile()  # email, names, locale, roles (profiles.py)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes


@dataclass(frozen=True)
class UserChanges:
    """A PATCH: None leaves a field as it is. `admin` adds or removes the admin scope."""

    scopes: tuple[str, ...] | None = None
    admin: bool | None = None
    disabled: bool | None = None
    profile: ProfileChanges = ProfileChanges()


class EmailTaken(Exception):
    """A store's answer to a create or update: another live user has this address (in any
    case), so nothing was stored."""


class UserStore(Protocol):
    """Deleted users are never returned: their row keeps only the sub."""

    async def by_username(self, username: str) -> User | None:
        """The user whose name has the same `username_key`: any case, any Unicode form."""
        ...

    async def by_id(self, user_id: str) -> User | None: ...

    async def page(self, limit: int, after: str | None, prefix: str | None) -> list[User]:
        """Users by username, those after `after` and starting with `prefix` only."""
        ...

    async def update(
        self, user_id: str, changes: UserChanges, audit: Sequence[AuditEvent]
    ) -> User | None:
        """Applies `changes` to the row as it is when the transaction locks it, with `audit`;
        None when no such user; EmailTaken (and nothing changed) when the new address is
        another live user's."""
        ...

    async def set_password_hash(
        self,
        user_id: str,
        password_hash: str,
        audit: Sequence[AuditEvent],
        expected: str | None = None,
    ) -> bool:
        """Replaces the hash, with `audit`, in one transaction; False when no such user (or,
        with `expected`, when the hash is no longer that one: a concurrent change won). A
        login that checked the previous hash starts no session afterwards (FamilyStore.start)."""
        ...

    async def delete(self, user_id: str, now: int, audit: Sequence[AuditEvent]) -> bool:
        """Clears the username, password hash and profile and disables the row (no login can start a
        session from then on), with `audit`; False when no such user."""
        ...

    async def disable(self, user_id: str) -> bool:
        """Marks the user disabled; False when no user has this id."""
        ...

    async def create(self, user: User, now: int, signup_expires_at: int | None = None) -> bool:
        """Stores a new user; False when the username, or one with its `username_key`, is
        taken; EmailTaken when the address is another live user's (`profiles.email_key`).
        `signup_expires_at`: a `verified` sign-up, deleted by the purge if still disabled then."""
        ...

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> None:
        """Swaps the hash only if it is still `old_hash` (a concurrent change wins)."""
        ...


MAX_USERNAME = 256
MAX_PASSWORD = 1024

# What a username may not hold: controls (Cc: tab, newline, DEL, C1), format characters (Cf:
# bidi overrides and isolates, LRM/RLM, zero-width ones, the BOM), line and paragraph
# separators, surrogates. Each can make one name look like another, or like none.
_REFUSED_IN_USERNAMES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def username_key(username: str) -> str:
    """What makes two usernames one account: NFKC, case folded, NFKC again (Unicode's
    compatibility caseless match, D146). `Alice`, `ALICE` and full-width `ａｌｉｃｅ` are one
    name; it is unique in the store, and a login finds the account by it."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def username_problem(username: str) -> str | None:
    """Why a new username is refused (a sentence), or None. The name is stored as given, for
    display; its key (`username_key`) is what must be unique."""
    if any(unicodedata.category(c) in _REFUSED_IN_USERNAMES for c in username):
        return "username contains a control or format character (a bidi or zero-width one)."
    if len(username_key(username)) > MAX_USERNAME:
        return f"username is longer than {MAX_USERNAME} characters once normalised."
    return None


def new_user(
    username: str,
    password_hash: str,
    scopes: list[str],
    admin: bool,
    profile: Profile | None = None,
) -> User:
    scopes_held = granted_scopes(scopes, admin)
    return User(
        str(uuid.uuid4()), username, password_hash, scopes_held, profile=profile or Profile()
    )


def granted_scopes(scopes: Sequence[str], admin: bool) -> tuple[str, ...]:
    plain = [s for s in scopes if s != ADMIN]
    return tuple(dict.fromkeys(plain + ([ADMIN] if admin else [])))


def normalise_password(password: str) -> str:
    """NFKC: the forms of one password a keyboard may send (composed or not, full-width
    digits, ligatures) are one password (NIST SP 800-63B §5.1.1.2)."""
    return unicodedata.normalize("NFKC", password)


async def authenticate(
    users: UserStore, passwords: Passwords, username: str, password: str
) -> User:
    """The user these credentials name, or InvalidGrant; every failure looks and costs the same."""
    user = await users.by_username(username) if len(username) <= MAX_USERNAME else None
    stored = user.password_hash if user else None
    normalised = normalise_password(password)
    verdict = await passwords.verify(stored, normalised)
    upgraded = verdict.upgraded_hash
    if not verdict.ok and normalised != password and user is not None:
        # A hash set before passwords were normalised: the form the user typed then.
        verdict = await passwords.verify(stored, password)
        upgraded = await passwords.hash(normalised) if verdict.ok else None
    if user is None or not verdict.ok or user.disabled:
        raise InvalidGrant(detail="password login failed")
    if upgraded is not None:
        await users.replace_password_hash(user.id, user.password_hash, upgraded)
        # The session starts only if the hash is still the one checked (FamilyStore.start).
        user = replace(user, password_hash=upgraded)
    return user
