"""One statement straight through asyncpg, on a connection from SQLAlchemy's pool.

For the statements every refresh, code exchange, DPoP proof and introspection runs.
SQLAlchemy's connection, execution context and result layers cost 0.35 ms of CPU around a
0.07 ms asyncpg call (measured on the rotation CTE; the whole rotation request costs ~0.8 ms),
so here the statement is compiled once for asyncpg and run on the pooled driver connection
itself, outside any transaction: one statement, its own transaction, atomic as before.

Checking that connection out of the pool and back in cost ~40 µs more (a greenlet switch and
the pool's events), twice the asyncpg call. So a connection checked out for these statements is
kept between them while they keep coming (a lease), and the next statement takes it without
the pool. The pool keeps its say:

- A lease stays checked out of SQLAlchemy's pool: AUTHSERVER_DB_POOL_SIZE bounds the leased
  connections and the others together, and authserver_db_pool_connections_in_use counts a
  lease for as long as it is held. At most half the pool is leased (none with a pool of one:
  then each statement checks its connection out and back in); past that a statement waits for
  the next lease given back, no longer than the pool's timeout (then a 503, as for the pool),
  so a full pool never makes leases go back and forth.
- A lease goes back to the pool after its statement when the pool has no connection left, so a
  request waiting for one gets it; and after HOLD_SECONDS idle (a timer), so a request that
  came to an empty pool while leases sat idle waits no longer than that. One idle for
  db/liveness.py's IDLE_SECONDS (a stalled loop) is never used: past that the pool pings it.
- When SQLAlchemy invalidates a connection of the engine (lost; a failover's read-only server,
  db/primary.py; and it then drops every connection older), or a statement here loses its own,
  or the engine is disposed, every lease is closed instead of used again.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
import weakref
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool, PoolProxiedConnection, QueuePool
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.util import greenlet_spawn

from authserver.db.liveness import IDLE_SECONDS, idle_since
from authserver.db.primary import is_read_only


class StatementSpans(Protocol):
    def around(self, statement: str) -> AbstractContextManager[None]: ...


# AUTHSERVER_TRACING's statement spans by engine (db/statement_spans.py registers them): these
# statements pass the engine's events by. Empty when off: one truth test per statement.
TRACED: weakref.WeakKeyDictionary[Engine, StatementSpans] = weakref.WeakKeyDictionary()

# An idle lease goes back to the pool after this: at busy times the next statement comes long
# before, and a request that finds the pool taken by idle leases waits no longer than this.
HOLD_SECONDS = 0.1


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bind parameters in $1, $2, ... order


@functools.cache
def _compiled(statement: TextClause, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    return _Compiled(str(compiled), tuple(compiled.positiontup or ()))


async def fetch_row(
    engine: AsyncEngine, statement: TextClause, params: dict[str, Any]
) -> asyncpg.Record | None:
    """The first row `statement` returns with `params`, or None."""
    compiled = _compiled(statement, engine.dialect)
    args = [params[name] for name in compiled.names]
    sync = engine.sync_engine
    leases: _Leases | None = _LEASES.get(sync, _UNSEEN)
    if leases is _UNSEEN:
        leases = _leases_for(sync)
    lease = None if leases is None else leases.take()
    place = False  # a lease to be made of the connection checked out below
    if lease is None and leases is not None:
        lease, place = await leases.lease_or_place(sync.pool)
    if lease is not None:
        pooled = lease.pooled
    else:
        try:
            pooled = await engine.raw_connection()
        except BaseException:
            if place:
                leases.lost()  # type: ignore[union-attr]
            raise
        if place:
            lease = _Lease(pooled, leases.generation)  # type: ignore[union-attr]
    driver: asyncpg.Connection = pooled.driver_connection
    try:
        spans = TRACED.get(sync) if TRACED else None
        if spans is None:
            row: asyncpg.Record | None = await driver.fetchrow(compiled.sql, *args)
        else:
            with spans.around(compiled.sql):
                row = await driver.fetchrow(compiled.sql, *args)
    except BaseException as exc:
        # An error the server answered leaves the connection fit for the next request;
        # anything else (lost, timed out, cancelled mid-statement) does not, nor does a
        # server that no longer takes writes (db/primary.py).
        if driver.is_closed() or not isinstance(exc, asyncpg.PostgresError) or is_read_only(exc):
            if leases is not None and lease is not None:
                leases.lost()
            # Every other lease goes too, on the pool's invalidate event (_Leases).
            pooled.invalidate(exc if isinstance(exc, Exception) else None)
            if driver.is_closed() and isinstance(exc, Exception):
                # Said as an OSError, as SQLAlchemy's own lost connections are: a 503.
                raise ConnectionResetError(f"database connection lost: {exc}") from exc
            raise
        await _give_back(sync, pooled, leases, lease)
        raise
    await _give_back(sync, pooled, leases, lease)
    return row


async def _give_back(
    sync: Engine, pooled: PoolProxiedConnection, leases: _Leases | None, lease: _Lease | None
) -> None:
    if leases is not None and lease is not None:
        leases.give_back(lease, sync.pool)
    elif isinstance(sync.pool, NullPool):
        # A NullPool closes the connection as it is given back, which for asyncpg awaits:
        # only from SQLAlchemy's greenlet, else the connection is left open (tests' engines).
        await greenlet_spawn(pooled.close)
    else:
        pooled.close()


@dataclass(eq=False)
class _Lease:
    pooled: PoolProxiedConnection
    generation: int  # _Leases.generation when it was checked out
    idle_since: float = 0.0


class _Leases:
    """An engine's leased connections: idle ones, and how many are held in all."""

    def __init__(self) -> None:
        self.idle: list[_Lease] = []  # the most recently used last
        self.held = 0  # idle, or running a statement
        # Statements waiting for a lease, all held and busy: handed the next given back.
        self.waiters: collections.deque[asyncio.Future[_Lease | None]] = collections.deque()
        # Moved on by every invalidation and by dispose(): a lease of an earlier one is closed.
        self.generation = 0
        self._timer: asyncio.TimerHandle | None = None
        self._ending = False

    def take(self) -> _Lease | None:
        idle = self.idle
        while idle:
            lease = idle.pop()
            if (
                lease.generation == self.generation
                and time.monotonic() - lease.idle_since < IDLE_SECONDS
            ):
                return lease
            self._end(lease)  # the timer was late (a stalled loop), or the pool was reset
        return None

    async def lease_or_place(self, pool: Any) -> tuple[_Lease | None, bool]:
        """With no lease idle: one handed over by a statement that finished, or a place for a
        new one (True) while fewer than half the pool is leased; neither with a pool of one."""
        while True:
            if self.held < pool.size() // 2:
                self.held += 1
                return None, True
            if pool.size() < 2:
                return None, False
            lease = await self.wait(pool)
            if lease is not None:
                return lease, False

    async def wait(self, pool: Any) -> _Lease | None:
        """The next lease given back, or None when one ended instead (a statement checks a
        connection out then); PoolTimeout (a 503) after the pool's own timeout."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Lease | None] = loop.create_future()
        self.waiters.append(waiter)
        # One timer that fails the waiter, not asyncio.timeout (a Timeout object, a reschedule
        # and the task's cancel/uncancel): under load most statements of a worker wait here.
        # A waiter handed a lease before its timer fires is done, and the timer leaves it be.
        timer = loop.call_later(pool.timeout(), _time_out, waiter, pool.timeout())
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # handed over as the wait was cancelled: passed on
                if handed is not None:
                    self.give_back(handed, pool)
                else:
                    self._wake()
            raise
        finally:
            timer.cancel()
            if waiter in self.waiters:
                self.waiters.remove(waiter)

    def _wake(self, lease: _Lease | None = None) -> bool:
        """Hands `lease` (None: a free place for one) to the longest waiting statement."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(lease)
                return True
        return False

    def give_back(self, lease: _Lease, pool: Any) -> None:
        """After a statement that left the connection fit for the next: kept idle, or given
        back to the pool when the pool has none left (someone may be waiting for one)."""
        lease.idle_since = time.monotonic()
        if lease.generation != self.generation or pool.checkedout() >= pool.size():
            self._end(lease)
            return
        if self._wake(lease):
            return
        self.idle.append(lease)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(HOLD_SECONDS, self._expire)

    def lost(self) -> None:
        """A lease's connection is being invalidated by its user (or was never had)."""
        self.held -= 1
        self._wake()

    def _end(self, lease: _Lease) -> None:
        self.held -= 1
        self._wake()
        if lease.generation == self.generation:
            info = lease.pooled.info
            lease.pooled.close()  # back to the pool, which pings it if it was idle too long
            idle_since(info, lease.idle_since)
            return
        # The pool was reset since it was checked out: closed, as SQLAlchemy would close it
        # at its next checkout; not taken for a new failure (no new generation).
        self._ending = True
        try:
            lease.pooled.invalidate()
        finally:
            self._ending = False

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        idle, self.idle = self.idle, []
        for lease in idle:
            if now - lease.idle_since >= HOLD_SECONDS:
                self._end(lease)
            else:
                self.idle.append(lease)
        if self.idle:
            wait = self.idle[0].idle_since + HOLD_SECONDS - now
            self._timer = asyncio.get_running_loop().call_later(max(wait, 0.0), self._expire)

    def invalidated(self, _dbapi_connection: Any, _record: Any, _exc: Any) -> None:
        if not self._ending:
            self.generation += 1

    def disposed(self, _engine: Engine) -> None:
        # The old pool is closed by now; what is leased from it is closed here, not given back.
        self.generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        idle, self.idle = self.idle, []
        for lease in idle:
            self._end(lease)


def _time_out(waiter: asyncio.Future[_Lease | None], seconds: float) -> None:
    if not waiter.done():
        waiter.set_exception(PoolTimeout(f"no leased connection free in {seconds} s"))


_UNSEEN: Any = object()
_LEASES: weakref.WeakKeyDictionary[Engine, _Leases | None] = weakref.WeakKeyDictionary()


def _leases_for(engine: Engine) -> _Leases | None:
    """The engine's leases, made on its first statement here; None for a pool that is not a
    QueuePool (a NullPool keeps nothing, so there is nothing to lease)."""
    leases = _Leases() if isinstance(engine.pool, QueuePool) else None
    if leases is not None:
        # On the engine, not its pool: dispose() makes a new pool, and these carry over to it.
        event.listen(engine, "invalidate", leases.invalidated)
        event.listen(engine, "engine_disposed", leases.disposed)
    _LEASES[engine] = leases
    return leases
