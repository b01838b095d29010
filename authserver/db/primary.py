"""Writes go to the primary only: a connection whose server turned read-only is dropped.

With several hosts in AUTHSERVER_DATABASE_URL and `target_session_attrs=read-write`, a new
connection goes to whichever host takes writes now. A connection made earlier stays on its
host, which a failover may since have demoted (Postgres restarts and ends its sessions) or
fenced read-only (`default_transaction_read_only`, sessions kept). Its next write fails with
SQLSTATE 25006: that request is answered 503 (db/failures.py), and the connection is taken as
lost, so it is never handed out again: SQLAlchemy then drops every pooled connection made
before it too (db/direct.py drops its own), and the next requests connect afresh, to the new
primary.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

READ_ONLY = "25006"  # read_only_sql_transaction


def is_read_only(error: BaseException | None) -> bool:
    """Whether `error`, or one it was raised from, is the server refusing a write."""
    for _ in range(4):  # SQLAlchemy's error, its adapter's, the driver's; never a long chain
        if error is None:
            return False
        if isinstance(error, asyncpg.exceptions.ReadOnlySQLTransactionError):
            return True
        if getattr(error, "sqlstate", None) == READ_ONLY:
            return True
        error = error.__cause__
    return False


def drop_when_read_only(engine: AsyncEngine) -> None:
    def handle_error(context: ExceptionContext) -> None:
        if is_read_only(context.original_exception):
            context.is_disconnect = True

    event.listen(engine.sync_engine, "handle_error", handle_error)
