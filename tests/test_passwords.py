"""Password hashing: argon2id at the configured cost, upgrades, and never on the event loop."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Literal

import anyio
import pytest
from argon2 import PasswordHasher, Type

from authserver.accounts.passwords import HASHING_NICENESS, Passwords, Verdict
from authserver.config import Settings

# Cheap parameters: these tests are about behaviour, not cost.
CHEAP = Settings(argon2_memory_kib=1024, argon2_time_cost=1, argon2_parallelism=1)


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(CHEAP)


async def test_hashes_are_argon2id_with_the_configured_parameters() -> None:
    settings = Settings(argon2_memory_kib=2048, argon2_time_cost=2, argon2_parallelism=2)
    hashed = await Passwords(settings).hash("correct horse")
    assert hashed.startswith("$argon2id$v=19$m=2048,t=2,p=2$")
    assert "correct horse" not in hashed


async def test_the_default_cost_is_rfc_9106s_second_recommendation() -> None:
    hashed = await Passwords(Settings()).hash("correct horse")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


async def test_the_same_password_hashes_differently_each_time(passwords: Passwords) -> None:
    assert await passwords.hash("correct horse") != await passwords.hash("correct horse")


async def test_verify_accepts_the_password_and_refuses_another(passwords: Passwords) -> None:
    hashed = await passwords.hash("correct horse")
    assert await passwords.verify(hashed, "correct horse") == Verdict(ok=True)
    assert await passwords.verify(hashed, "correct horse ") == Verdict(ok=False)
    assert await passwords.verify(hashed, "") == Verdict(ok=False)


async def test_hash_sync_makes_hashes_the_async_verify_accepts(passwords: Passwords) -> None:
    hashed = passwords.hash_sync("from the command line")
    assert hashed.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert await passwords.verify(hashed, "from the command line") == Verdict(ok=True)


@pytest.mark.parametrize("password", ["anything", "dummy password that matches no one", ""])
async def test_an_unknown_user_fails_whatever_the_password(
    passwords: Passwords, password: str
) -> None:
    assert await passwords.verify(None, password) == Verdict(ok=False)


@pytest.mark.parametrize(
    "stored", ["", "plaintext", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"]
)
async def test_a_stored_value_that_is_not_an_argon2_hash_fails(
    passwords: Passwords, stored: str
) -> None:
    assert await passwords.verify(stored, "plaintext") == Verdict(ok=False)


@pytest.mark.parametrize(
    "old",
    [
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID),
        PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1, type=Type.I),
    ],
)
async def test_a_hash_at_older_parameters_is_upgraded_on_login(old: PasswordHasher) -> None:
    current = Passwords(Settings(argon2_memory_kib=2048, argon2_time_cost=2, argon2_parallelism=1))
    verdict = await current.verify(old.hash("correct horse"), "correct horse")
    assert verdict.ok
    assert verdict.upgraded_hash is not None
    assert verdict.upgraded_hash.startswith("$argon2id$v=19$m=2048,t=2,p=1$")
    # The upgraded hash is current: it verifies and asks for no further upgrade.
    assert await current.verify(verdict.upgraded_hash, "correct horse") == Verdict(ok=True)


async def test_a_wrong_password_against_an_old_hash_gives_no_upgrade() -> None:
    old = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
    current = Passwords(Settings(argon2_memory_kib=2048, argon2_time_cost=2))
    assert await current.verify(old.hash("correct horse"), "wrong") == Verdict(ok=False)


async def test_hashing_does_not_block_the_event_loop() -> None:
    # Dear enough that one hash is far longer than a tick (32 MiB at time cost 2 took 49 ms
    # here, under the 50 ms this test needs to mean anything).
    settings = Settings(
        argon2_memory_kib=32_768,
        argon2_time_cost=6,
        argon2_parallelism=1,
        password_hash_concurrency=2,
    )
    passwords = Passwords(settings)
    started = time.perf_counter()
    hashed = passwords.hash_sync("correct horse")
    one_hash = time.perf_counter() - started

    longest_gap = 0.0
    hashing = True

    async def ticker() -> None:
        nonlocal longest_gap
        last = time.perf_counter()
        while hashing:
            await anyio.sleep(0.005)
            now = time.perf_counter()
            longest_gap = max(longest_gap, now - last)
            last = now

    async def work() -> None:
        nonlocal hashing
        async with anyio.create_task_group() as hashes:
            for _ in range(2):
                hashes.start_soon(passwords.hash, "correct horse")
            hashes.start_soon(passwords.verify, hashed, "correct horse")
            hashes.start_soon(passwords.verify, None, "correct horse")
        hashing = False

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        group.start_soon(work)

    # Had any hash run on the loop, one tick would have waited a whole hash.
    assert one_hash > 0.05, "the hash is too cheap for this test to mean anything"
    assert longest_gap < one_hash / 2


class CountingHasher(PasswordHasher):
    """The real argon2 hasher, counting how many threads are inside it at once."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._lock = threading.Lock()
        self.inside = 0
        self.most_inside = 0

    def _enter(self) -> None:
        with self._lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        time.sleep(0.02)  # widen the window in which an overlap would be seen

    def _leave(self) -> None:
        with self._lock:
            self.inside -= 1

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self._enter()
        try:
            return super().hash(password, salt=salt)
        finally:
            self._leave()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self._enter()
        try:
            return super().verify(hash, password)
        finally:
            self._leave()


async def most_hashes_at_once(concurrency: int) -> int:
    settings = Settings(
        argon2_memory_kib=1024,
        argon2_time_cost=1,
        argon2_parallelism=1,
        password_hash_concurrency=concurrency,
    )
    passwords = Passwords(settings)
    hashed = await passwords.hash("correct horse")
    counting = CountingHasher(settings)
    passwords._hasher = counting  # instrumented, still the real argon2
    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(passwords.hash, "correct horse")
            group.start_soon(passwords.verify, hashed, "correct horse")
            group.start_soon(passwords.verify, hashed, "wrong")
            group.start_soon(passwords.verify, None, "correct horse")
    assert counting.inside == 0
    return counting.most_inside


async def test_at_most_the_configured_number_of_hashes_run_at_once() -> None:
    assert await most_hashes_at_once(1) == 1
    assert await most_hashes_at_once(2) == 2


async def test_hashes_do_run_in_parallel_up_to_the_cap() -> None:
    # Shows the measure above can see an overlap: with room for 3, more than one runs at once.
    assert 2 <= await most_hashes_at_once(3) <= 3


class NiceRecordingHasher(PasswordHasher):
    """The real argon2, noting the OS priority (nice) of each thread it runs in."""

    def __init__(self) -> None:
        super().__init__(memory_cost=1024, time_cost=1, parallelism=1, type=Type.ID)
        self.niceness: list[int] = []

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return super().hash(password, salt=salt)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux")
async def test_hashes_run_at_a_lower_priority_than_the_event_loop() -> None:
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    passwords = Passwords(CHEAP)
    recording = NiceRecordingHasher()
    passwords._hasher = recording
    await passwords.hash("correct horse")
    await passwords.hash("correct horse")

    assert recording.niceness == [min(loop_nice + HASHING_NICENESS, 19)] * 2
    # ...and the event loop's own thread is left as it was.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice
