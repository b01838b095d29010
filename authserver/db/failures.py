"""Fail closed: a database that is down, unreachable or overloaded becomes TemporarilyUnavailable.

The stores raise SQLAlchemy's and the drivers' own errors. `fail_closed` wraps a store so that
the ones meaning "the database cannot answer now" (connection refused or lost, a timeout on
connect, on a statement or on the pool, SQLite's "database is locked", Postgres starting up or
shutting down, a failover under way: no primary yet, or a write reaching a demoted one) reach
the use cases as the domain's `TemporarilyUnavailable` (503 `temporarily_unavailable`), the
driver's words kept as its private detail for the log. Anything else (a bug in a statement, a
constraint) is left as it is: that is a 500, not a reason to tell clients to retry.

Nothing is retried here: every store method is one transaction, so a failed one changed nothing
(the refresh rotation is one statement), and the client's retry finds the database as it was.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from authserver.errors import TemporarilyUnavailable

T = TypeVar("T")

_ASYNCPG_CANNOT_NOW = (
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: canceled, starting, shutting down
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
    # A failover: the server no longer takes writes (25006; db/primary.py drops the
    # connection), or none of the URL's hosts does yet (target_session_attrs=read-write).
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)
# The same by SQLSTATE, for a driver error seen through an adapter that keeps the code.
_SQLSTATE_CLASSES_CANNOT_NOW = ("08", "53", "57")
_SQLSTATES_CANNOT_NOW = ("25006",)


def unavailable(exc: BaseException) -> TemporarilyUnavailable | None:
    """The domain error for `exc` when it means the database cannot answer now; else None."""
    if isinstance(exc, PoolTimeout):
        return TemporarilyUnavailable(detail=f"database pool exhausted: {_first_line(exc)}")
    # OperationalError: the database's own "cannot now" (refused, timed out, locked, shutting
    # down); a lost connection is flagged by SQLAlchemy whatever the class. SQLAlchemy's
    # asyncpg adapter wraps every other server error as a plain DBAPIError, at checkout too
    # ("the database system is starting up", 57P03, while Postgres restarts or recovers), so
    # the driver's error under it decides. An InterfaceError without any of these is misuse (a
    # parameter of the wrong type): a bug, so a 500.
    if isinstance(exc, DBAPIError) and (
        exc.connection_invalidated
        or isinstance(exc, OperationalError)
        or _cannot_answer_now(exc.orig)
    ):
        return TemporarilyUnavailable(detail=f"database unavailable: {_driver_words(exc)}")
    # asyncpg's own, from statements run on the driver directly (db/direct.py): the server
    # cancelled the statement (statement_timeout), is starting or shutting down, or has no room.
    if _cannot_answer_now(exc):
        return TemporarilyUnavailable(
            detail=f"database unavailable: {type(exc).__name__}: {_first_line(exc)}"
        )
    # Raised by the drivers outside SQLAlchemy's wrapping: refused or reset connections, and
    # connect timeouts (TimeoutError is an OSError).
    if isinstance(exc, OSError):
        return TemporarilyUnavailable(
            detail=f"database unreachable: {type(exc).__name__}: {_first_line(exc)}"
        )
    return None


def fail_closed(store: T) -> T:
    """`store`, with every coroutine method translating database outages (see `unavailable`)."""
    return cast(T, _FailClosed(store))


class _FailClosed:
    def __init__(self, store: object) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not inspect.iscoroutinefunction(found):
            return found
        store = self._store

        @functools.wraps(cast(Callable[..., Coroutine[Any, Any, Any]], found))
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                # Looked up at each call, not kept: the store's method as it is now.
                return await getattr(store, name)(*args, **kwargs)
            except Exception as exc:
                translated = unavailable(exc)
                if translated is None:
                    raise
                raise translated from exc

        # Made once per method: the next lookup finds it here, not through __getattr__ (a
        # wrapper made per call was 6 % of a rotation's CPU in the worker).
        setattr(self, name, guarded)
        return guarded

    def __repr__(self) -> str:
        return f"fail_closed({self._store!r})"


def _cannot_answer_now(error: BaseException | None) -> bool:
    """Whether a driver's error, or one it was raised from, is the server saying it cannot
    answer now: asyncpg's classes for SQLSTATE classes 08, 53 and 57, or any error carrying
    such a SQLSTATE (SQLAlchemy's adapter copies it as `sqlstate`)."""
    for _ in range(4):  # the adapter's error, the driver's under it; never a long chain
        if error is None:
            return False
        if isinstance(error, _ASYNCPG_CANNOT_NOW):
            return True
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate[:2] in _SQLSTATE_CLASSES_CANNOT_NOW or sqlstate in _SQLSTATES_CANNOT_NOW
        ):
            return True
        error = error.__cause__
    return False


def _driver_words(exc: DBAPIError) -> str:
    # asyncpg's own error sits under SQLAlchemy's adapter; its first line names the problem.
    driver_error = (exc.orig.__cause__ if exc.orig is not None else None) or exc.orig or exc
    return f"{type(driver_error).__name__}: {_first_line(driver_error)}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().partition("\n")[0]
