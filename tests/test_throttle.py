"""The throttle's pure rules: free failures, then a doubling delay up to a cap."""

from __future__ import annotations

from authserver.throttle import (
    ADDRESS,
    USERNAME,
    Bucket,
    Count,
    Held,
    Policy,
    Reservation,
    address_bucket,
    reserve,
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
user = Bucket("user:x", Policy(free=2, base=1, cap=8, forget=60))
addr = Bucket("addr:x", Policy(free=4, base=1, cap=8, forget=60))


def test_a_reservation_counts_one_failure_on_each_bucket_and_blocks_past_the_free_ones() -> None:
    reservation = reserve([user, addr], [Count(2, NOW - 5, NOW - 9), Count()], NOW)
    assert reservation.blocked_until == 0
    [on_user, on_addr] = reservation.held
    assert on_user == Held("user:x", Count(2, NOW - 5, NOW - 9), Count(3, NOW, NOW + 1))
    assert on_addr == Held("addr:x", Count(), Count(1, NOW, 0))


def test_a_blocked_bucket_refuses_the_reservation_and_nothing_is_counted() -> None:
    reservation = reserve([user, addr], [Count(3, NOW - 1, NOW + 1), Count(9, NOW, NOW + 7)], NOW)
    assert reservation == Reservation(NOW + 7)


def test_a_quiet_period_restarts_the_count() -> None:
    assert user.charged(Count(7, NOW - 61, NOW - 50), NOW) == Count(1, NOW, NOW - 50)
    assert user.charged(Count(7, NOW - 60, NOW - 50), NOW) == Count(8, NOW, NOW + 8)


def test_giving_back_removes_the_failure_and_the_block_it_raised() -> None:
    [held] = reserve([user], [Count(2, NOW - 5, NOW - 9)], NOW).held
    assert held.given_back(held.after) == Count(2, NOW, NOW - 9)  # the last attempt's time stays


def test_giving_back_leaves_a_block_someone_else_raised_or_extended() -> None:
    [held] = reserve([user], [Count(3, NOW - 5, NOW - 1)], NOW).held
    assert held.after == Count(4, NOW, NOW + 2)
    # Our block ran out, another attempt was let in and blocked for longer.
    later = Count(5, NOW + 2, NOW + 6)
    assert held.given_back(later) == Count(4, NOW + 2, NOW + 6)
    # A reservation that raised no block takes none away.
    [free] = reserve([addr], [Count(1, NOW - 5, NOW - 3)], NOW).held
    assert free.given_back(Count(2, NOW, NOW - 3)) == Count(1, NOW, NOW - 3)


def test_giving_back_never_goes_below_zero() -> None:
    [held] = reserve([user], [Count()], NOW).held
    assert held.given_back(Count()) == Count()  # the row was cleared meanwhile
