"""SQL implementation of the login throttle's store: one row per bucket, changed only under
its row lock, decided by authserver.throttle."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.throttle import (
    Bucket,
    Count,
    Outcome,
    Reservation,
    pair_prefix,
    reserve,
    settle,
    username_bucket,
)

# Reads a bucket's row and locks it until the transaction ends, making an empty one when the
# bucket is new: ON CONFLICT … DO UPDATE locks the row it meets on Postgres, and one racing
# for a row still being inserted waits for that insert's outcome. (SQLite needs no row lock:
# every transaction begins IMMEDIATE, holding the database's one write lock; db/engine.py.)
_LOCK = text("""
INSERT INTO login_throttle
    (bucket, failures, last_failure_at, blocked_until, pending, pending_since)
VALUES (:bucket, 0, 0, 0, 0, 0)
ON CONFLICT (bucket) DO UPDATE SET failures = login_throttle.failures
RETURNING failures, last_failure_at, blocked_until, pending, pending_since
""")

_WRITE = text("""
UPDATE login_throttle
SET failures = :failures, last_failure_at = :last_failure_at, blocked_until = :blocked_until,
    pending = :pending, pending_since = :pending_since
WHERE bucket = :bucket
""")

# The pair keys' prefix is hex and a colon: nothing LIKE reads as a wildcard.
_FORGET = text("DELETE FROM login_throttle WHERE bucket = :username OR bucket LIKE :pairs")

_PURGE = text(
    "DELETE FROM login_throttle WHERE last_failure_at < :before AND blocked_until < :before"
    " AND (pending = 0 OR pending_since < :before)"
)


class SqlThrottleStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def reserve(self, buckets: Sequence[Bucket], now: int) -> Reservation:
        # Key order: every transaction takes the rows in the same order, so none deadlocks.
        ordered = sorted(buckets, key=lambda bucket: bucket.key)
        async with self._engine.connect() as conn, conn.begin() as transaction:
            counts = [await _lock(conn, bucket.key) for bucket in ordered]
            reservation = reserve(ordered, counts, now)
            if not reservation.admitted:  # not even the empty rows stay
                await transaction.rollback()
                return reservation
            for bucket, count in zip(ordered, counts, strict=True):
                await _write(conn, bucket.key, bucket.entered(count, now))
        return reservation

    async def settle(self, buckets: Sequence[Bucket], outcome: Outcome, now: int) -> None:
        ordered = sorted(buckets, key=lambda bucket: bucket.key)
        async with self._engine.begin() as conn:
            counts = [await _lock(conn, bucket.key) for bucket in ordered]
            for bucket, count in zip(ordered, settle(ordered, counts, outcome, now), strict=True):
                await _write(conn, bucket.key, count)

    async def forget(self, username: str) -> None:
        params = {"username": username_bucket(username), "pairs": pair_prefix(username) + "%"}
        async with self._engine.begin() as conn:
            await conn.execute(_FORGET, params)

    async def purge(self, before: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(_PURGE, {"before": before})


async def _lock(conn: AsyncConnection, key: str) -> Count:
    row = (await conn.execute(_LOCK, {"bucket": key})).one()
    return Count(
        int(row.failures),
        int(row.last_failure_at),
        int(row.blocked_until),
        int(row.pending),
        int(row.pending_since),
    )


async def _write(conn: AsyncConnection, key: str, count: Count) -> None:
    params = {
        "bucket": key,
        "failures": count.failures,
        "last_failure_at": count.last_failure_at,
        "blocked_until": count.blocked_until,
        "pending": count.pending,
        "pending_since": count.pending_since,
    }
    await conn.execute(_WRITE, params)
