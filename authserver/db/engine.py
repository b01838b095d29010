"""Engine construction: the per-dialect settings that make SQLite a safe embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from authserver.config import Settings
from authserver.db.liveness import ping_when_idle
from authserver.db.pool_metrics import count_connections_in_use
from authserver.db.primary import drop_when_read_only


def make_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    engine = _sqlite_engine(url) if url.startswith("sqlite") else _postgres_engine(settings)
    count_connections_in_use(engine)
    return engine


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def behind_pooler(settings: Settings) -> bool:
    """Whether the URL reaches Postgres through a transaction pooler (PgBouncer's
    pool_mode=transaction): said by giving AUTHSERVER_DATABASE_DIRECT_URL beside it."""
    direct = settings.database_direct_url
    return direct is not None and direct != settings.database_url


def _postgres_engine(settings: Settings) -> AsyncEngine:
    connect_args: dict[str, Any] = {
        # Server-side statement timeout: no request waits on a stuck lock forever.
        "server_settings": {"statement_timeout": "5000"},
        "timeout": 5,  # to connect
        # Client-side bound on every query, pings included: a database host that stops
        # answering (no reset, no refusal) would otherwise hold a request for as long as
        # TCP keeps the connection open. Past statement_timeout, so that fires first.
        "command_timeout": 6,
    }
    if behind_pooler(settings):
        # Each transaction may run on another server connection, so nothing may outlive one:
        # no named prepared statements, neither asyncpg's nor SQLAlchemy's (unnamed ones are
        # parsed, bound and run before the Sync that lets the pooler reassign the
        # connection); and no startup parameters beyond those PgBouncer passes on (set
        # statement_timeout on the role: docs/high-availability.md).
        connect_args.update(statement_cache_size=0, prepared_statement_cache_size=0)
        connect_args["server_settings"] = {}
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        # No overflow: connections past the pool size were closed as soon as they were given
        # back and opened again on the next burst (a Postgres backend forked each time).
        # Requests beyond the pool wait their turn, which a statement's millisecond ends.
        max_overflow=0,
        pool_timeout=5,  # seconds a request waits for a free connection
        connect_args=connect_args,
    )
    # Instead of pool_pre_ping's three round trips on every checkout (db/liveness.py).
    ping_when_idle(engine)
    # After a failover, no connection left on the old primary is used again (db/primary.py).
    drop_when_read_only(engine)
    return engine


def _sqlite_engine(url: str) -> AsyncEngine:
    path = make_url(url).database
    if path and path != ":memory:" and not Path(path).parent.is_dir():
        # Said here, in one line: aiosqlite's own failure surfaces from its thread, late.
        raise FileNotFoundError(
            f"AUTHSERVER_DATABASE_URL: the folder {Path(path).parent} does not exist"
        )
    engine = create_async_engine(url, connect_args={"timeout": 10})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        # then writes can fail with SQLITE_BUSY at once instead of waiting its turn.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def single_statements(engine: AsyncEngine) -> AsyncEngine:
    """The engine for work that is one statement. On Postgres it runs without BEGIN and
    COMMIT: the statement is its own transaction, atomic all the same, and two round trips
    fewer. SQLite keeps its BEGIN IMMEDIATE (engine.py)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT") if is_postgres(engine) else engine


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
