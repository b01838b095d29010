"""Login throttling: failure budgets per username, per client address and per pair of them,
shared by every instance through the store.

Three buckets meet each login, so that a guesser cannot lock the owner out (ASVS 5.0 §6.1.1)
while guessing stays slow:

- the username at the client's address group (USERNAME): the tight budget. A guesser at one
  address blocks only that username from that address;
- the username from everywhere (USERNAME_EVERYWHERE): a much looser budget, which slows every
  address only once failures from many address groups add up. It counts a wrong password only
  while that pair still had it free, and forgets in fixed windows no longer than the pair's
  quiet period: a pair frees more only after that period without a failure, which outlasts the
  window, so one address group adds at most USERNAME.free to a window, never enough to block;
- the client's address group (ADDRESS): one address spraying many usernames.

An address group is an IPv4 address, or the /64 of an IPv6 address (one host usually holds a
whole /64, RFC 7421); an IPv4-mapped IPv6 address is its IPv4 address.

A few failures are free; after that each failure blocks further attempts for a delay that
doubles, up to a cap, and a quiet period (or the window's end) forgets the count. While
blocked, the password is not even checked (no argon2 work for the attacker's requests), and
the answer is 429 `slow_down` with Retry-After. A guesser at one address keeps the owner out
of that address only; from elsewhere, only failures from many address groups within a window
slow the owner down, and then for at most the cap after each of them, never for good.

Reserve, then check. An attempt takes a place in its buckets before its password is checked,
in one transaction holding the buckets' rows locked (in key order, so two attempts never wait
on each other crosswise), from any number of instances. The rows count failures apart from
attempts in flight (`pending`):

- A bucket blocked past now refuses the attempt (429): nothing is counted.
- Otherwise the attempt is let in when no attempt is in flight (the sequential case: one try
  per block window, as before), or when every attempt in flight could fail and the count
  would still be within the free budget. So a burst of wrong passwords gets free + 1 of them
  checked, exactly as a sequence would, and nothing is decided from a row read before
  argon2's ~150 ms.
- Else it is busy: the attempt waits a little and asks again (`guard`), since the ones in
  flight may well succeed. A busy bucket never blocks anyone: logins in flight from one office
  or one proxy address wait their turn for milliseconds rather than meeting a 429.

Then the attempt settles its place: a wrong password (InvalidGrant, or an error raised while
handling one, such as its audit write failing) counts a failure and may block (in the
username's shared bucket only while it is free at its address: `settle`); a success
clears the username's counts, not the address's (an attacker must not reset their own
address's budget by logging into an account of their own between guesses); any other failure
(wrong client, missing field, database error) only frees the place. A place not freed (the
process died mid-attempt) stops counting once the bucket has had attempts in flight for
PENDING_LEASE seconds, so it can never lock a bucket for good.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol, TypeVar

import anyio

from authserver.accounts.users import username_key
from authserver.errors import InvalidGrant, SlowDown

T = TypeVar("T")
log = logging.getLogger("authserver.throttle")


@dataclass(frozen=True)
class Policy:
    free: int  # failures that cost nothing; each one past them blocks for a while
    base: int  # the first delay, seconds
    cap: int  # the longest delay, seconds
    forget: int  # seconds without a failure after which the count starts again
    # When set, `forget` counts from the window's first failure instead: a count fed by many
    # addresses is never kept alive for good by addresses taking turns.
    window: bool = False

    def delay(self, failures: int) -> int:
        if failures <= self.free:
            return 0
        return min(self.cap, self.base << min(failures - self.free - 1, 32))


# A username at one address group. One person mistyping does not reach these; a guesser meets
# them after a handful of tries.
USERNAME = Policy(free=5, base=1, cap=300, forget=900)
# A username from every address: ten times the above, fed by at most USERNAME.free per address
# group and window (see the module's docstring), so it takes failures from more than 10 address
# groups within 15 minutes to slow the owner down too.
USERNAME_EVERYWHERE = Policy(free=50, base=1, cap=300, forget=900, window=True)
# Looser: many people may share one address (offices, carrier NAT).
ADDRESS = Policy(free=20, base=1, cap=900, forget=3600)
# The longest a bucket's failures count: quieter rows may be purged.
FORGET = max(USERNAME.forget, USERNAME_EVERYWHERE.forget, ADDRESS.forget)


# Seconds after which attempts still in flight stop counting: far beyond any password check.
PENDING_LEASE = 60


@dataclass(frozen=True)
class Count:
    """A bucket's row; an unknown bucket reads as Count()."""

    failures: int = 0
    last_failure_at: int = 0  # for a Policy.window: when the window's first failure was
    blocked_until: int = 0
    pending: int = 0  # attempts in flight
    pending_since: int = 0  # when `pending` last rose from zero

    def in_flight(self, now: int) -> int:
        return self.pending if now - self.pending_since <= PENDING_LEASE else 0


class Outcome(Enum):
    WRONG_PASSWORD = "wrong password"
    SUCCESS = "success"
    VOID = "void"  # refused before any password was checked, or the attempt itself failed


@dataclass(frozen=True)
class Bucket:
    key: str
    policy: Policy
    success_clears: bool = False  # the username's buckets; never the address's
    # The key of the bucket whose free failures alone count here (USERNAME_EVERYWHERE's pair).
    free_of: str | None = None

    def failures(self, count: Count, now: int) -> int:
        """The failures that still count: none after a quiet period."""
        return 0 if count.last_failure_at < now - self.policy.forget else count.failures

    def admits(self, count: Count, now: int) -> bool:
        """Whether one more attempt may be in flight (the row is not blocked)."""
        in_flight = count.in_flight(now)
        return in_flight == 0 or self.failures(count, now) + in_flight <= self.policy.free

    def entered(self, count: Count, now: int) -> Count:
        in_flight = count.in_flight(now)
        since = count.pending_since if in_flight else now
        return replace(count, pending=in_flight + 1, pending_since=since)

    def settled(self, count: Count, outcome: Outcome, now: int) -> Count:
        """`count` with one attempt out of flight, and what its outcome means."""
        count = replace(count, pending=max(count.pending - 1, 0))
        if outcome is Outcome.SUCCESS and self.success_clears:
            return replace(count, failures=0, blocked_until=0)
        if outcome is not Outcome.WRONG_PASSWORD:
            return count
        failures = self.failures(count, now) + 1
        wait = self.policy.delay(failures)
        blocked_until = max(count.blocked_until, now + wait) if wait else count.blocked_until
        since = count.last_failure_at if self.policy.window and failures > 1 else now
        return replace(count, failures=failures, last_failure_at=since, blocked_until=blocked_until)


def settle(
    buckets: Sequence[Bucket], counts: Sequence[Count], outcome: Outcome, now: int
) -> list[Count]:
    """The buckets' rows, as they stand locked, once the attempt is settled."""
    before = {bucket.key: (bucket, count) for bucket, count in zip(buckets, counts, strict=True)}
    settled = []
    for bucket, count in zip(buckets, counts, strict=True):
        counted = outcome
        if outcome is Outcome.WRONG_PASSWORD and bucket.free_of in before:
            pair, pair_count = before[bucket.free_of]
            if pair.failures(pair_count, now) >= pair.policy.free:  # this one is not free there
                counted = Outcome.VOID
        settled.append(bucket.settled(count, counted, now))
    return settled


@dataclass(frozen=True)
class Reservation:
    blocked_until: int = 0  # past `now` when refused: nothing was counted
    busy: bool = False  # attempts in flight fill the budget: nothing was counted, ask again

    @property
    def admitted(self) -> bool:
        return not self.busy and not self.blocked_until


def reserve(buckets: Sequence[Bucket], counts: Sequence[Count], now: int) -> Reservation:
    """The decision, on the buckets' rows as they stand locked."""
    blocked_until = max((count.blocked_until for count in counts), default=0)
    if blocked_until > now:
        return Reservation(blocked_until=blocked_until)
    if not all(b.admits(c, now) for b, c in zip(buckets, counts, strict=True)):
        return Reservation(busy=True)
    return Reservation()


class ThrottleStore(Protocol):
    """Counts by bucket. Every method is one transaction of its own, which locks the rows it
    changes in key order and decides with the functions above."""

    async def reserve(self, buckets: Sequence[Bucket], now: int) -> Reservation:
        """Locks the buckets' rows and applies `reserve`: when admitted, each bucket enters
        the attempt (`Bucket.entered`); otherwise nothing is written."""
        ...

    async def settle(self, buckets: Sequence[Bucket], outcome: Outcome, now: int) -> None:
        """Locks the buckets' rows and writes what `settle` makes of them."""
        ...

    async def forget(self, username: str) -> None:
        """Deletes the username's buckets (everywhere and at every address): a new account
        does not inherit the failures of a deleted one of that name."""
        ...

    async def purge(self, before: int) -> None:
        """Forgets buckets whose last failure was before `before`, that block nothing and
        have had nothing in flight since."""
        ...


def username_bucket(username: str) -> str:
    # Hashed: the table need not hold every name a guesser tried, and its key stays short.
    # Folded as logins find accounts (users.username_key): `ALICE` spends alice's budget.
    return "user:" + _digest(username_key(username))


def address_bucket(address: str) -> str:
    return "addr:" + _digest(address)


def pair_prefix(username: str) -> str:
    """What the keys of the username's buckets at each address group start with."""
    return "pair:" + _digest(username_key(username))[:32] + ":"


def pair_bucket(username: str, group: str) -> str:
    # 128 bits of each hash, to fit the 80 characters of the key.
    return pair_prefix(username) + _digest(group)[:32]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def address_group(address: str) -> str:
    """The client's address as the throttle counts it: IPv4 as is, an IPv4-mapped IPv6 address
    as its IPv4 address, other IPv6 addresses by their /64 (a single host is commonly handed a
    whole /64, RFC 7421 and RFC 8981 privacy addresses rotate within it)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP (a test client's name, a Unix socket): counted as it is
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def buckets_of(username: str | None, address: str | None) -> list[Bucket]:
    """The buckets a login counts in, by the username tried and the client's address."""
    buckets = []
    group = address_group(address) if address else None
    if username:
        pair = pair_bucket(username, group or "")
        buckets.append(Bucket(pair, USERNAME, success_clears=True))
        everywhere = username_bucket(username)
        buckets.append(Bucket(everywhere, USERNAME_EVERYWHERE, success_clears=True, free_of=pair))
    if group is not None:
        buckets.append(Bucket(address_bucket(group), ADDRESS))
    return buckets


# How long a login waits for a busy bucket (attempts in flight) before it is told to slow down,
# and how often it asks again meanwhile: soon at first (a password check takes ~150 ms), then
# less often, so waiters cost the database little. A place freed in this process goes to a
# waiter at once (Turns), so the polls are only for places freed by other instances: with a
# cap of 250 ms, 40 logins waiting on one address spent a locked transaction every 6 ms on its
# row, and logins went 10 % faster with the cap at 1 s (bench/RESULTS.md).
BUSY_WAIT = 10.0
BUSY_POLL = (0.02, 1.0)


class Turns:
    """The logins of this process waiting for a busy bucket. Each attempt that settles here
    wakes the one that has waited longest, so the place it freed is asked for at once, not at
    that waiter's next poll (up to BUSY_POLL[1] later). One, not all: one place was freed, and
    every waiter asking would cost the database a locked transaction each. Waiters of other
    instances, and any this one wakes in vain, still poll."""

    def __init__(self) -> None:
        self._waiting: deque[anyio.Event] = deque()

    async def wait(self, seconds: float) -> None:
        """Until the next attempt here settles, or `seconds`, whichever comes first."""
        event = anyio.Event()
        self._waiting.append(event)
        try:
            with anyio.move_on_after(seconds):
                await event.wait()
        finally:
            if not event.is_set():
                self._waiting.remove(event)

    def settled(self) -> None:
        if self._waiting:
            self._waiting.popleft().set()


async def guard(
    store: ThrottleStore,
    *,
    username: str | None,
    address: str | None,
    clock: Callable[[], int],
    attempt: Callable[[], Awaitable[T]],
    turns: Turns,
    clears: Callable[[T], bool] | None = None,
) -> T:
    """Runs the login `attempt` once the throttle lets it in (SlowDown when refused), and
    settles its place after (waking one of `turns`' waiters). `clears(result)` False: a
    success that is only a step (a password right, a second factor still to come) frees its
    place without clearing the username's counts, so wrong second-factor codes counted
    between two right passwords add up as wrong passwords would."""
    buckets = buckets_of(username, address)
    waited_until = anyio.current_time() + BUSY_WAIT
    poll = BUSY_POLL[0]
    while True:
        now = clock()
        reservation = await store.reserve(buckets, now)
        if reservation.blocked_until > now:
            raise SlowDown(reservation.blocked_until - now, detail="login throttled")
        if reservation.admitted:
            break
        if anyio.current_time() >= waited_until:
            raise SlowDown(1, detail="login throttle busy with attempts in flight")
        await turns.wait(poll)
        poll = min(poll * 2, BUSY_POLL[1])
    try:
        try:
            result = await attempt()
        except Exception as exc:
            if _wrong_password(exc):
                await store.settle(buckets, Outcome.WRONG_PASSWORD, clock())
                await store.purge(now - FORGET)
            else:
                await _void_or_log(store, buckets, clock())
            raise
        if clears is None or clears(result):
            await store.settle(buckets, Outcome.SUCCESS, clock())
        else:
            await store.settle(buckets, Outcome.VOID, clock())
    finally:
        turns.settled()
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


async def _void_or_log(store: ThrottleStore, buckets: Sequence[Bucket], now: int) -> None:
    # The attempt's own error is what the client must hear; a place not freed stops counting
    # after PENDING_LEASE.
    try:
        await store.settle(buckets, Outcome.VOID, now)
    except Exception:
        log.warning("login throttle: could not free an attempt's place", exc_info=True)
