"""Changes one instance makes, heard at once by every other: Postgres LISTEN/NOTIFY.

A key change (rotation, revocation, rewrap, first keys) sends a NOTIFY in its own transaction,
so it is delivered when, and only if, the change commits. Every process keeps one connection
of its own that LISTENs, straight to Postgres (AUTHSERVER_DATABASE_DIRECT_URL when the pool
goes through a transaction pooler, which cannot carry a LISTEN), and reacts: its key ring is
reloaded before it signs again, a client is forgotten (and with it the clients' origins CORS
answers: clients.CachedClients.forget). When that connection is lost it is made
again, with backoff, on whichever host is primary now; meanwhile the periodic reload
(keys.manager.keep_fresh) and the clients' short memory are what bound the lag, as they do
without it. Once listening again, everything is taken as changed, for a change may have
passed unheard. A process ignores its own key notifications: it reloaded when it made them.

Clients have no writer in the API that changes them; an operator who edits a client row by
hand sends `SELECT pg_notify('authserver_clients', '<client_id>')` in the same transaction
(docs/high-availability.md), as `notify_client_changed` does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskStatus
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = logging.getLogger("authserver")

KEYS_CHANNEL = "authserver_keys"
CLIENTS_CHANNEL = "authserver_clients"
_FIRST_DELAY, _MAX_DELAY = 0.1, 5.0  # seconds between attempts to listen again
_CHECK_EVERY, _CHECK_TIMEOUT = 10.0, 5.0  # a silent host is found out by a query that hangs
# The payload of this process's key notifications: it reloaded after its own change already.
_ORIGIN = secrets.token_hex(8)
_READ_ONLY = "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'"
# How the connection shows in pg_stat_activity.
APPLICATION_NAME = "authserver listen"
# Keys of the URL's query that SQLAlchemy's asyncpg dialect reads itself, not asyncpg.
_DIALECT_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func")


@dataclass(frozen=True)
class Reactions:
    keys_changed: Callable[[], None]
    client_changed: Callable[[str], None]
    anything_changed: Callable[[], None]  # (re)listening: a change may have gone unheard


async def notify_keys_changed(conn: AsyncConnection) -> None:
    """Inside the transaction that changes the keys: heard everywhere when it commits."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_notify(:channel, :origin)"),
            {"channel": KEYS_CHANNEL, "origin": _ORIGIN},
        )


async def notify_client_changed(conn: AsyncConnection, client_id: str) -> None:
    """Inside the transaction that changes or removes a client."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_notify(:channel, :client_id)"),
            {"channel": CLIENTS_CHANNEL, "client_id": client_id},
        )


def connect_params(engine: AsyncEngine, url: str) -> dict[str, Any]:
    """asyncpg.connect's arguments for `url`, read as the engine's dialect reads it (several
    hosts, target_session_attrs and all)."""
    _, params = engine.dialect.create_connect_args(make_url(url))
    found = {k: v for k, v in params.items() if k not in _DIALECT_ONLY}
    found["server_settings"] = {"application_name": APPLICATION_NAME}
    return found


async def listen_for_changes(
    engine: AsyncEngine,
    url: str,
    reactions: Reactions,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listens until cancelled, on a connection of its own to `url`, made again when lost.
    Started (`task_status`) once the first attempt to listen succeeded or failed; every later
    success counts as `anything_changed`."""
    params = connect_params(engine, url)
    delay = _FIRST_DELAY
    warned = False  # one warning per outage, not one per attempt
    started = False
    while True:
        try:
            conn = await asyncpg.connect(**params, timeout=_CHECK_TIMEOUT)
        except Exception as exc:  # whatever it is, it must not end the server: retried
            warned = warned or _warn_lost(exc)
            if not started:
                task_status.started()
                started = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)
            continue
        try:
            await _listen(conn, reactions)
            if started:
                reactions.anything_changed()
            else:
                task_status.started()
                started = True
            if warned:
                logger.info("listening for key and client changes again")
            warned, delay = False, _FIRST_DELAY
            await _watch(conn)
        except Exception as exc:
            warned = warned or _warn_lost(exc)
        finally:
            conn.terminate()  # not close(): that waits on a host that may not answer


async def _listen(conn: asyncpg.Connection, reactions: Reactions) -> None:
    def keys_changed(_conn: object, _pid: int, _channel: str, origin: str) -> None:
        if origin != _ORIGIN:
            reactions.keys_changed()

    await conn.add_listener(KEYS_CHANNEL, keys_changed)
    await conn.add_listener(
        CLIENTS_CHANNEL, lambda _conn, _pid, _channel, payload: reactions.client_changed(payload)
    )


async def _watch(conn: asyncpg.Connection) -> None:
    """Returns (raises) when the connection is lost: closed by the server or the network,
    silent past the check's timeout, or left on a server that no longer takes writes (fenced
    by a failover: the new primary's notifications would never arrive here)."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())
    while not conn.is_closed():
        try:
            await asyncio.wait_for(lost.wait(), _CHECK_EVERY)
        except TimeoutError:
            if await conn.fetchval(_READ_ONLY, timeout=_CHECK_TIMEOUT):
                raise ConnectionResetError("the server no longer takes writes") from None
    raise ConnectionResetError("the server closed the connection")


def _warn_lost(exc: BaseException) -> bool:
    logger.warning(
        "not listening for key and client changes (%s: %s); trying again, and until then "
        "other instances' changes arrive with the periodic reload",
        type(exc).__name__,
        str(exc).splitlines()[0] if str(exc) else "",
    )
    return True
