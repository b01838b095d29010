"""argon2id password hashing, run off the event loop under a memory bound.

argon2 releases the GIL, so threads give real parallelism; the limiter caps how many hashes
hold their `memory_cost` of RAM at once. Unknown users are checked against a dummy hash made
with the same parameters, so "no such user" costs the same time as "wrong password".
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import anyio.to_thread
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from authserver.config import Settings


@dataclass(frozen=True)
class Verdict:
    ok: bool
    # A fresh hash at today's parameters when the stored one was made with older ones.
    upgraded_hash: str | None = None


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._limiter = anyio.CapacityLimiter(settings.password_hash_concurrency)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, stored_hash: str | None, password: str) -> Verdict:
        """Checks `password`; with no stored hash (no such user) takes the same time and fails."""
        if stored_hash is None:
            await anyio.to_thread.run_sync(
                self._check, await self._dummy(), password, limiter=self._limiter
            )
            return Verdict(ok=False)
        return await anyio.to_thread.run_sync(
            self._check_and_upgrade, stored_hash, password, limiter=self._limiter
        )

    def hash_sync(self, password: str) -> str:
        """For the command line, where no event loop runs."""
        return self._hasher.hash(password)

    async def prepare(self) -> None:
        """Makes the dummy hash now, so even the first unknown username costs one verify."""
        await self._dummy()

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("dummy password that matches no one")
        return self._dummy_hash

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _check_and_upgrade(self, stored_hash: str, password: str) -> Verdict:
        if not self._check(stored_hash, password):
            return Verdict(ok=False)
        if self._hasher.check_needs_rehash(stored_hash):
            return Verdict(ok=True, upgraded_hash=self._hasher.hash(password))
        return Verdict(ok=True)
