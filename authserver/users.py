"""Resource owners: who they are and how a password login is checked."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from authserver.errors import InvalidGrant
from authserver.passwords import Passwords
from authserver.scopes import ADMIN


@dataclass(frozen=True)
class User:
    id: str  # the `sub` of their tokens: stable and opaque, unlike the username
    username: str
    password_hash: str
    scopes: tuple[str, ...]
    disabled: bool = False

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes


class UserStore(Protocol):
    async def by_username(self, username: str) -> User | None: ...

    async def by_id(self, user_id: str) -> User | None: ...

    async def disable(self, user_id: str) -> bool:
        """Marks the user disabled; False when no user has this id."""
        ...

    async def create(self, user: User, now: int) -> bool:
        """Stores a new user; False when the username is taken."""
        ...

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> None:
        """Swaps the hash only if it is still `old_hash` (a concurrent change wins)."""
        ...


MAX_USERNAME = 256
MAX_PASSWORD = 1024


def new_user(username: str, password_hash: str, scopes: list[str], admin: bool) -> User:
    granted = list(dict.fromkeys(scopes + ([ADMIN] if admin else [])))
    return User(str(uuid.uuid4()), username, password_hash, tuple(granted))


async def authenticate(
    users: UserStore, passwords: Passwords, username: str, password: str
) -> User:
    """The user these credentials name, or InvalidGrant; every failure looks and costs the same."""
    user = await users.by_username(username) if len(username) <= MAX_USERNAME else None
    verdict = await passwords.verify(user.password_hash if user else None, password)
    if user is None or not verdict.ok or user.disabled:
        raise InvalidGrant(detail="password login failed")
    if verdict.upgraded_hash is not None:
        await users.replace_password_hash(user.id, user.password_hash, verdict.upgraded_hash)
    return user
