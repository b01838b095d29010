"""The throttle's pure rules: free failures, then a doubling delay up to a cap."""

from __future__ import annotations

from authserver.throttle import ADDRESS, USERNAME, Policy, address_bucket, username_bucket


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
