"""authserver_db_pool_connections_in_use, kept by the pool's own checkout and checkin events.

A connection counts from the moment the pool hands it out until it comes back (or is detached,
never to come back); one that db/direct.py keeps between statements (a lease) counts all the
while, up to direct.HOLD_SECONDS idle. Each entry is marked when counted, and only a marked
entry is uncounted: a checkout that fails (the database is down, the pre-ping and the
reconnect fail) checks its entry back in without a checkout event, and must not take the gauge
below the truth.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

from authserver.telemetry.metrics import DB_CONNECTIONS_IN_USE

_COUNTED = "authserver.in_use"


def count_connections_in_use(engine: AsyncEngine) -> None:
    # Listened for on the engine, not its pool: dispose() replaces the pool, and the
    # engine's listeners carry over to the new one.
    event.listen(engine.sync_engine, "checkout", _checked_out)
    event.listen(engine.sync_engine, "checkin", _given_back)
    event.listen(engine.sync_engine, "detach", _given_back)


def _checked_out(_dbapi_connection: Any, entry: ConnectionPoolEntry, _proxy: Any) -> None:
    if entry.record_info is not None and not entry.record_info.get(_COUNTED):
        entry.record_info[_COUNTED] = True
        DB_CONNECTIONS_IN_USE.inc()


def _given_back(_dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
    if entry.record_info is not None and entry.record_info.pop(_COUNTED, False):
        DB_CONNECTIONS_IN_USE.dec()
