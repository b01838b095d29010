"""SQL implementation of the login throttle's store: one row per bucket, upserted atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

# ON CONFLICT … DO UPDATE is atomic on both databases: racing instances each add their one.
_COUNT = text("""
INSERT INTO login_throttle (bucket, failures, last_failure_at, blocked_until)
VALUES (:bucket, 1, :now, 0)
ON CONFLICT (bucket) DO UPDATE SET
    failures = CASE WHEN login_throttle.last_failure_at < :forget_before THEN 1
                    ELSE login_throttle.failures + 1 END,
    last_failure_at = :now
RETURNING failures
""")

_BLOCK = text("""
UPDATE login_throttle SET blocked_until = :until
WHERE bucket = :bucket AND blocked_until < :until
""")

_BLOCKED_UNTIL = text(
    "SELECT MAX(blocked_until) FROM login_throttle WHERE bucket IN :buckets"
).bindparams(bindparam("buckets", expanding=True))

_CLEAR = text("DELETE FROM login_throttle WHERE bucket = :bucket")

_PURGE = text(
    "DELETE FROM login_throttle WHERE last_failure_at < :before AND blocked_until < :before"
)


class SqlThrottleStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def blocked_until(self, buckets: Sequence[str]) -> int:
        if not buckets:
            return 0
        async with self._engine.connect() as conn:
            found = (await conn.execute(_BLOCKED_UNTIL, {"buckets": list(buckets)})).scalar()
        return int(found or 0)

    async def record_failure(
        self, bucket: str, now: int, forget_before: int, delay: Callable[[int], int]
    ) -> int:
        async with self._engine.begin() as conn:
            params = {"bucket": bucket, "now": now, "forget_before": forget_before}
            failures = int((await conn.execute(_COUNT, params)).scalar_one())
            wait = delay(failures)
            if wait > 0:
                await conn.execute(_BLOCK, {"bucket": bucket, "until": now + wait})
        return failures

    async def clear(self, bucket: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(_CLEAR, {"bucket": bucket})

    async def purge(self, before: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(_PURGE, {"before": before})
