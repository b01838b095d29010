"""The throttle's pure rules: free failures, then a doubling delay up to a cap."""

from __future__ import annotations

from dataclasses import replace

import pytest

from authserver.throttle import (
    ADDRESS,
    PENDING_LEASE,
    USERNAME,
    USERNAME_EVERYWHERE,
    Bucket,
    Count,
    Outcome,
    Policy,
    Reservation,
    address_bucket,
    address_group,
    buckets_of,
    pair_bucket,
    pair_prefix,
    reserve,
    settle,
    username_bucket,
)


def test_delays_double_from_the_first_failure_past_the_free_ones() -> None:
    policy = Policy(free=3, base=2, cap=20, forget=60)
    assert [policy.delay(n) for n in range(1, 9)] == [0, 0, 0, 2, 4, 8, 16, 20]


def test_the_delay_never_overflows_the_cap() -> None:
    assert USERNAME.delay(10**6) == USERNAME.cap
    assert ADDRESS.delay(10**6) == ADDRESS.cap


def test_no_real_user_is_kept_out_for_long() -> None:
    assert USERNAME.cap <= 300
    assert USERNAME.free >= 3  # a few typos cost nothing
    assert ADDRESS.free > USERNAME.free  # shared addresses get more room


def test_buckets_are_separate_and_hide_the_name() -> None:
    assert username_bucket("alice") != address_bucket("alice")
    assert "alice" not in username_bucket("alice")
    assert len(username_bucket("x" * 256)) <= 80


NOW = 1_000_000
user = Bucket("user:x", Policy(free=2, base=1, cap=8, forget=60), success_clears=True)
addr = Bucket("addr:x", Policy(free=4, base=1, cap=8, forget=60))


def flight(count: Count, n: int) -> Count:
    """`count` with `n` attempts in flight since NOW."""
    return replace(count, pending=n, pending_since=NOW)


def test_with_nothing_in_flight_an_unblocked_bucket_always_admits() -> None:
    # The sequential case: even past the free failures, one try per block window.
    assert reserve([user, addr], [Count(9, NOW - 5, NOW - 1), Count()], NOW).admitted


def test_a_blocked_bucket_refuses_and_nothing_is_counted() -> None:
    reservation = reserve([user, addr], [Count(3, NOW - 1, NOW + 1), Count(9, NOW, NOW + 7)], NOW)
    assert reservation == Reservation(blocked_until=NOW + 7)


def test_attempts_in_flight_take_the_free_budget_and_then_the_bucket_is_busy() -> None:
    # free=2: with every attempt in flight failing, at most free + 1 are checked at once.
    assert reserve([user], [flight(Count(), 2)], NOW).admitted
    assert reserve([user], [flight(Count(), 3)], NOW) == Reservation(busy=True)
    assert reserve([user], [flight(Count(1, NOW - 5, 0), 2)], NOW).busy
    assert reserve([user, addr], [Count(), flight(Count(), 5)], NOW).busy


def test_places_left_in_flight_stop_counting_after_the_lease() -> None:
    stale = replace(Count(), pending=50, pending_since=NOW - PENDING_LEASE - 1)
    assert reserve([user], [stale], NOW).admitted
    assert user.entered(stale, NOW) == replace(Count(), pending=1, pending_since=NOW)


def test_entering_counts_the_attempt_in_flight_only() -> None:
    assert user.entered(Count(1, NOW - 5, 0), NOW) == Count(1, NOW - 5, 0, 1, NOW)
    assert user.entered(flight(Count(), 1), NOW + 3) == flight(Count(), 2)


def test_a_wrong_password_counts_a_failure_and_blocks_past_the_free_ones() -> None:
    settled = user.settled(flight(Count(2, NOW - 5, NOW - 9), 1), Outcome.WRONG_PASSWORD, NOW)
    assert settled == Count(3, NOW, NOW + 1, 0, NOW)


def test_a_quiet_period_restarts_the_count() -> None:
    quiet = user.settled(Count(7, NOW - 61, NOW - 50), Outcome.WRONG_PASSWORD, NOW)
    assert quiet == Count(1, NOW, NOW - 50)
    loud = user.settled(Count(7, NOW - 60, NOW - 50), Outcome.WRONG_PASSWORD, NOW)
    assert loud == Count(8, NOW, NOW + 8)


def test_a_success_clears_the_username_but_not_the_address() -> None:
    busy = flight(Count(4, NOW - 5, NOW - 1), 2)
    assert user.settled(busy, Outcome.SUCCESS, NOW) == Count(0, NOW - 5, 0, 1, NOW)
    assert addr.settled(busy, Outcome.SUCCESS, NOW) == Count(4, NOW - 5, NOW - 1, 1, NOW)


def test_a_void_attempt_only_frees_its_place_and_never_below_zero() -> None:
    assert addr.settled(flight(Count(3, NOW, NOW + 1), 1), Outcome.VOID, NOW) == Count(
        3, NOW, NOW + 1, 0, NOW
    )
    assert addr.settled(Count(), Outcome.VOID, NOW) == Count()


# --- no lockout by one address ---------------------------------------------------------------


def test_one_address_group_can_never_block_the_username_everywhere() -> None:
    # At most USERNAME.free per group and window, and the owner's own typos besides.
    assert USERNAME_EVERYWHERE.free >= 2 * USERNAME.free
    assert USERNAME_EVERYWHERE.window and USERNAME_EVERYWHERE.forget <= USERNAME.forget


@pytest.mark.parametrize("gaps", [(1,), (300,), (899, 1), (900, 1, 1), (901, 2, 3), (450, 452)])
def test_one_address_group_adds_at_most_its_free_failures_to_any_window(
    gaps: tuple[int, ...],
) -> None:
    """Wrong passwords from one address group at every pace, each let in once its blocks
    lapse (as `reserve` would): the shared count never holds more than the pair's free ones."""
    at_address = Bucket("pair:a", USERNAME, success_clears=True)
    shared = Bucket("user:a", USERNAME_EVERYWHERE, True, free_of="pair:a")
    buckets, counts, now = [at_address, shared], [Count(), Count()], NOW
    for step in range(400):
        now = max(now + gaps[step % len(gaps)], *(c.blocked_until for c in counts))
        counts = settle(buckets, counts, WRONG, now)
        assert shared.failures(counts[1], now) <= USERNAME.free
        assert counts[1].blocked_until == 0


WRONG = Outcome.WRONG_PASSWORD
pair = Bucket("pair:x", Policy(free=2, base=1, cap=8, forget=60), success_clears=True)
everywhere = Bucket(
    "user:x", Policy(free=9, base=1, cap=8, forget=60, window=True), True, free_of="pair:x"
)


def test_the_shared_bucket_counts_only_the_failures_free_at_their_pair() -> None:
    counts = settle([pair, everywhere], [Count(1, NOW, 0), Count(4, NOW, 0)], WRONG, NOW)
    assert [c.failures for c in counts] == [2, 5]
    counts = settle([everywhere, pair], [Count(4, NOW, 0), Count(2, NOW, 0)], WRONG, NOW)
    assert [c.failures for c in counts] == [4, 3]  # past the pair's free ones: not counted


def test_a_window_forgets_from_its_first_failure_not_its_last() -> None:
    started = everywhere.settled(Count(), WRONG, NOW)
    later = everywhere.settled(started, WRONG, NOW + 50)
    assert (later.failures, later.last_failure_at) == (2, NOW)
    assert everywhere.settled(later, WRONG, NOW + 61) == Count(1, NOW + 61, 0)


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::ffff", "2001:db8:1:2::/64"),
        ("testclient", "testclient"),
    ],
)
def test_addresses_are_counted_by_group(address: str, group: str) -> None:
    assert address_group(address) == group


def test_a_login_meets_its_pair_its_username_everywhere_and_its_address() -> None:
    keys = [b.key for b in buckets_of("alice", "2001:db8::1")]
    assert keys == [
        pair_bucket("alice", "2001:db8::/64"),
        username_bucket("alice"),
        address_bucket("2001:db8::/64"),
    ]
    assert keys[0].startswith(pair_prefix("alice")) and len(keys[0]) <= 80
    assert [b.key for b in buckets_of(None, "10.0.0.1")] == [address_bucket("10.0.0.1")]
    assert [b.key for b in buckets_of("alice", None)][0] == pair_bucket("alice", "")
