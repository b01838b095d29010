"""SQL behind page_limits.py: one UPSERT per request and bucket."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.engine import single_statements

# One statement: concurrent requests of one bucket each get their own count.
_COUNT = text("""
INSERT INTO page_requests (bucket, window_start, count) VALUES (:bucket, :window_start, 1)
ON CONFLICT (bucket) DO UPDATE SET
  count = CASE WHEN page_requests.window_start = :window_start
               THEN page_requests.count + 1 ELSE 1 END,
  window_start = :window_start
RETURNING count
""")


class SqlPageLimitStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._single = single_statements(engine)

    async def count(self, bucket: str, window_start: int) -> int:
        async with self._single.begin() as conn:
            found = await conn.execute(_COUNT, {"bucket": bucket, "window_start": window_start})
            counted: int = found.scalar_one()
        return counted
