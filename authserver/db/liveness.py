"""Checking that a pooled connection is alive, only when it has been idle.

`pool_pre_ping` checks every connection the pool hands out, and with asyncpg a check is three
round trips (BEGIN, an empty query, ROLLBACK): more than the one statement a refresh needs. A
connection given back less than `IDLE_SECONDS` ago is taken as alive, as HikariCP's
aliveBypassWindowMs does. If the database went away within that second, the request's own
statement fails and is answered 503 (db/failures.py), and SQLAlchemy drops every pooled
connection made before the failure, so the requests after it connect afresh.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

IDLE_SECONDS = 1.0
_GIVEN_BACK_AT = "authserver.given_back_at"


def ping_when_idle(engine: AsyncEngine, idle_seconds: float = IDLE_SECONDS) -> None:
    dialect = engine.dialect

    def remember(_dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        entry.info[_GIVEN_BACK_AT] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, entry: ConnectionPoolEntry, _proxy: Any) -> None:
        given_back_at = entry.info.get(_GIVEN_BACK_AT)
        if given_back_at is None or time.monotonic() - given_back_at < idle_seconds:
            return  # just connected, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool replaces this connection and tries again (pool/base.py).
            raise DisconnectionError("pooled connection failed its ping") from exc

    # On the engine, not its pool: dispose() makes a new pool, and these carry over to it.
    event.listen(engine.sync_engine, "checkin", remember)
    event.listen(engine.sync_engine, "checkout", ping_if_idle)


def idle_since(info: dict[Any, Any], since: float) -> None:
    """For a connection just given back that was idle before that, since `since` (monotonic):
    db/direct.py keeps one between statements, and its idle time counts as the pool's."""
    info[_GIVEN_BACK_AT] = min(info.get(_GIVEN_BACK_AT, since), since)
