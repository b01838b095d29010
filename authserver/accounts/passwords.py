"""argon2id password hashing, run off the event loop under a memory bound.

argon2 releases the GIL, so threads give real parallelism; a pool of
`password_hash_concurrency` threads caps how many hashes hold their `memory_cost` of RAM at
once. Those threads run at a lower OS priority than the event loop: logins take whatever CPU
is left, and a JWKS GET or a refresh is not kept waiting behind argon2's threads. Unknown
users are checked against a dummy hash made with the same parameters, so "no such user" costs
the same time as "wrong password".
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from authserver.config import Settings

T = TypeVar("T")
# Added to the nice value (Linux: -20 to 19): the loop's threads get the CPU first.
HASHING_NICENESS = 10


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
        self._threads = ThreadPoolExecutor(
            max_workers=settings.password_hash_concurrency,
            thread_name_prefix="argon2",
            initializer=run_below_the_event_loop,
        )
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await self._off_the_loop(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> Verdict:
        """Checks `password`; with no stored hash (no such user) takes the same time and fails."""
        if stored_hash is None:
            await self._off_the_loop(self._check, await self._dummy(), password)
            return Verdict(ok=False)
        return await self._off_the_loop(self._check_and_upgrade, stored_hash, password)

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

    async def _off_the_loop(self, work: Callable[..., T], *args: str) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, work, *args)

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


def run_below_the_event_loop() -> None:
    """Lowers the calling thread's scheduling priority (Linux: nice is per thread, and the
    threads argon2 starts for its lanes inherit it). Elsewhere, or if refused, nothing."""
    try:
        thread = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(nice + HASHING_NICENESS, 19))
    except (AttributeError, OSError):
        pass
