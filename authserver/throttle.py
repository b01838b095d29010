"""Login throttling: a failure budget per username and per client address, shared by every
instance through the store.

A few failures are free; after that each failure blocks further attempts for a delay that
doubles, up to a cap, and a quiet period forgets the count. While blocked, the password is not
even checked (no argon2 work for the attacker's requests), and the answer is 429 `slow_down`
with Retry-After. The cap bounds how long a guesser can keep a real user out: the worst case
is one blocked window after each of the guesser's own failures, never a permanent lock.

Reserve, then check. Every attempt is counted as a failure before its password is checked, in
one transaction that holds the buckets' rows locked (in key order, so two attempts never wait
on each other crosswise): if a bucket is blocked, nothing is counted and the attempt is refused;
else each bucket counts one failure and raises its block per its Policy. Attempts at once, from
any number of instances, thus meet the budget one after another, exactly as a sequence would:
a burst of wrong passwords gets free + 1 of them checked, the rest wait. Nothing is decided
from a row read before argon2's ~150 ms, so those milliseconds open no window. Then:

- A wrong password (InvalidGrant, or an error raised while handling one, such as its audit
  write failing) keeps the reservation: that is the failure, counted already.
- A success clears the username's count and gives the address's back its one failure. Only
  that one: an attacker must not reset their own address's budget by logging into an account
  of their own between guesses.
- Any other failure (wrong client, missing field, database error) gives the reservation back:
  no password was found wrong.

Giving back removes the one failure, and the block that failure raised if that block still
stands untouched: while it stands nobody else is let in, so it is this attempt's alone. The time
of the last failure stays: a quiet period is counted from the last attempt, given back or not
(restoring it could let a guesser's own failure be dated to an earlier attempt's).
An attempt cancelled half-way (the client went away) keeps its reservation.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from authserver.errors import InvalidGrant, SlowDown

T = TypeVar("T")
log = logging.getLogger("authserver.throttle")


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


@dataclass(frozen=True)
class Count:
    """A bucket's row; an unknown bucket reads as Count()."""

    failures: int = 0
    last_failure_at: int = 0
    blocked_until: int = 0


@dataclass(frozen=True)
class Bucket:
    key: str
    policy: Policy

    def charged(self, count: Count, now: int) -> Count:
        """`count` with one more failure at `now`: restarted after a quiet period, and blocked
        until now + the policy's delay unless it is blocked longer already."""
        quiet = count.last_failure_at < now - self.policy.forget
        failures = 1 if quiet else count.failures + 1
        wait = self.policy.delay(failures)
        blocked_until = max(count.blocked_until, now + wait) if wait else count.blocked_until
        return Count(failures, now, blocked_until)


@dataclass(frozen=True)
class Held:
    """One bucket's part of a reservation: its row before and after the counted failure."""

    key: str
    before: Count
    after: Count

    def given_back(self, current: Count) -> Count:
        """`current` without this reservation's failure, nor its block if that still stands."""
        raised = self.after.blocked_until != self.before.blocked_until
        ours = raised and current.blocked_until == self.after.blocked_until
        blocked_until = self.before.blocked_until if ours else current.blocked_until
        return replace(current, failures=max(current.failures - 1, 0), blocked_until=blocked_until)


@dataclass(frozen=True)
class Reservation:
    blocked_until: int  # past `now` when refused (nothing was counted); else 0
    held: tuple[Held, ...] = ()


def reserve(buckets: Sequence[Bucket], counts: Sequence[Count], now: int) -> Reservation:
    """The decision, on the buckets' rows as they stand locked: refused if any is blocked,
    else one failure counted on each."""
    blocked_until = max((count.blocked_until for count in counts), default=0)
    if blocked_until > now:
        return Reservation(blocked_until)
    charged = zip(buckets, counts, strict=True)
    return Reservation(0, tuple(Held(b.key, c, b.charged(c, now)) for b, c in charged))


class ThrottleStore(Protocol):
    """Failure counts by bucket. Every method is one transaction of its own, and one that
    changes counts locks their rows in key order and decides with the functions above."""

    async def reserve(self, buckets: Sequence[Bucket], now: int) -> Reservation:
        """Locks the buckets' rows and applies `reserve` to them: writes the counted failures,
        or nothing when refused."""
        ...

    async def give_back(self, held: Sequence[Held], clear: Sequence[str] = ()) -> None:
        """Applies each `Held.given_back` to its bucket's row, and deletes the `clear` buckets."""
        ...

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
    """Runs the login `attempt` on a reservation (SlowDown when refused); settles it after."""
    user = Bucket(username_bucket(username), USERNAME) if username else None
    addr = Bucket(address_bucket(address), ADDRESS) if address else None
    now = clock()
    reservation = await store.reserve([b for b in (user, addr) if b is not None], now)
    if reservation.blocked_until > now:
        raise SlowDown(reservation.blocked_until - now, detail="login throttled")
    try:
        result = await attempt()
    except Exception as exc:
        if _wrong_password(exc):
            await store.purge(now - max(USERNAME.forget, ADDRESS.forget))
        else:
            await _give_back_or_log(store, reservation.held)
        raise
    keep = [held for held in reservation.held if user is None or held.key != user.key]
    await store.give_back(keep, clear=[user.key] if user else [])
    return result


def _wrong_password(exc: BaseException) -> bool:
    # The password grant audits a wrong password before re-raising it; when that write fails,
    # the InvalidGrant is in the new error's context. Giving that attempt back would let a
    # guesser who keeps the audit write failing guess for free (503 wrong, 200 right).
    found: BaseException | None = exc
    while found is not None:
        if isinstance(found, InvalidGrant):
            return True
        found = found.__context__
    return False


async def _give_back_or_log(store: ThrottleStore, held: Sequence[Held]) -> None:
    # The attempt's own error is what the client must hear; a failed give-back leaves one
    # failure too many, which the quiet period forgets.
    try:
        await store.give_back(held)
    except Exception:
        log.warning("login throttle: could not give back a reservation", exc_info=True)
