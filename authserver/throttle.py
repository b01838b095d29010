"""Login throttling: a failure budget per username and per client address, shared by every
instance through the store.

A few failures are free; after that each failure blocks further attempts for a delay that
doubles, up to a cap, and a quiet period forgets the count. While blocked, the password is not
even checked (no argon2 work for the attacker's requests), and the answer is 429 `slow_down`
with Retry-After. The cap bounds how long a guesser can keep a real user out: the worst case
is one blocked window after each of the guesser's own failures, never a permanent lock.
A success clears the username's count, not the address's, so an attacker cannot reset their
own address's budget by logging into an account of their own between guesses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from authserver.errors import InvalidGrant, SlowDown

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    free: int  # failures that cost nothing; each one past them blocks for a while
    base: int  # the first delay, seconds
    cap: int  # the longest delay, seconds
    forget: int  # seconds without a failure after which the count starts again

    def delay(self, failures: int) -> int:
        if failures <= self.free:
            return 0
        return min(self.cap, self.base << min(failures - self.free - 1, 32))


# One person mistyping does not reach these; a guesser meets them after a handful of tries.
USERNAME = Policy(free=5, base=1, cap=300, forget=900)
# Looser: many people may share one address (offices, carrier NAT).
ADDRESS = Policy(free=20, base=1, cap=900, forget=3600)


class ThrottleStore(Protocol):
    """Failure counts by bucket. Every method is one transaction of its own."""

    async def blocked_until(self, buckets: Sequence[str]) -> int:
        """The latest `blocked_until` of these buckets; 0 when none is known."""
        ...

    async def record_failure(
        self, bucket: str, now: int, forget_before: int, delay: Callable[[int], int]
    ) -> int:
        """Atomically counts one failure (restarting from 1 when the last one was before
        `forget_before`), blocks the bucket until now + delay(count) unless it is blocked
        longer already, and returns the count."""
        ...

    async def clear(self, bucket: str) -> None: ...

    async def purge(self, before: int) -> None:
        """Forgets buckets whose last failure was before `before` and that block nothing."""
        ...


def username_bucket(username: str) -> str:
    # Hashed: the table need not hold every name a guesser tried, and its key stays short.
    return "user:" + hashlib.sha256(username.encode()).hexdigest()


def address_bucket(address: str) -> str:
    return "addr:" + hashlib.sha256(address.encode()).hexdigest()


async def guard(
    store: ThrottleStore,
    *,
    username: str | None,
    address: str | None,
    clock: Callable[[], int],
    attempt: Callable[[], Awaitable[T]],
) -> T:
    """Runs the login `attempt` unless a bucket is blocked (SlowDown); counts its InvalidGrant."""
    buckets = [
        (bucket, policy)
        for bucket, policy in (
            (username_bucket(username) if username else None, USERNAME),
            (address_bucket(address) if address else None, ADDRESS),
        )
        if bucket is not None
    ]
    now = clock()
    until = await store.blocked_until([bucket for bucket, _ in buckets])
    if until > now:
        raise SlowDown(until - now, detail="login throttled")
    try:
        result = await attempt()
    except InvalidGrant:
        now = clock()
        for bucket, policy in buckets:
            await store.record_failure(bucket, now, now - policy.forget, policy.delay)
        await store.purge(now - max(USERNAME.forget, ADDRESS.forget))
        raise
    if username:
        await store.clear(username_bucket(username))
    return result
