"""A TCP proxy of our own between the app and the real Postgres, to take the database away.

`cut` is the database host going away: every connection reset, new ones refused.
`black_hole` is the worse case, a host that stops answering: connections stay open and new ones
are accepted, but nothing gets through in either direction, so only timeouts can end a wait.
`starting_up` is a restart's first moments: every connection reset, and every new one answered
as Postgres answers while it starts or recovers (FATAL 57P03, "the database system is starting
up"). `restore` forwards again (connections held in the black hole are dropped then).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette

from authserver.app import create_app
from tests.conftest import ISSUER, make_settings

# The protocol's SSLRequest code (a client asking for TLS before its startup message).
_SSL_REQUEST = 80877103


def _starting_up_error() -> bytes:
    """The ErrorResponse Postgres sends a new connection while it starts (protocol §55.7)."""
    fields = b"".join(
        kind + text + b"\0"
        for kind, text in (
            (b"S", b"FATAL"),
            (b"V", b"FATAL"),
            (b"C", b"57P03"),
            (b"M", b"the database system is starting up"),
        )
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


class FaultyProxy:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._holding = False
        self._starting = False
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stops listening and resets every connection."""
        if self._server is not None:
            self._server.close()
            await self._close_all()
            await self._server.wait_closed()
            self._server = None
        await self._close_all()

    def black_hole(self) -> None:
        """Keeps every connection open (and accepts new ones) but lets nothing through."""
        self._holding = True

    async def starting_up(self) -> None:
        """Resets every connection; new ones are refused with 57P03 until `restore`."""
        await self.cut()
        self._starting = True
        await self.start()

    async def restore(self) -> None:
        self._starting = False
        if self._holding:
            self._holding = False
            await self._close_all()
        if self._server is None:
            await self.start()

    async def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        if self._holding:
            await self._pipe(reader, None)
            return
        if self._starting:
            await self._refuse_as_starting_up(reader, writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _refuse_as_starting_up(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            length, code = struct.unpack("!II", await reader.readexactly(8))
            if code == _SSL_REQUEST:
                writer.write(b"N")  # no TLS here; the client sends its startup message next
                length, code = struct.unpack("!II", await reader.readexactly(8))
            await reader.readexactly(length - 8)  # the rest of the startup message
            writer.write(_starting_up_error())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if writer is None or self._holding:
                    continue  # swallowed: the far end never hears of it
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer is not None:
                writer.close()
                self._writers.discard(writer)


def _through_proxy(database_url: str) -> tuple[FaultyProxy, str]:
    """A proxy to `database_url`'s Postgres (not yet started) and the URL that goes through it;
    skips the test on SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("an embedded SQLite database cannot be made unreachable from outside")
    proxy = FaultyProxy(url.host or "127.0.0.1", url.port or 5432)
    return proxy, url.render_as_string(hide_password=False)


def _via(proxy: FaultyProxy, database_url: str) -> str:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


@asynccontextmanager
async def engine_through_proxy(
    database_url: str, **engine_args: object
) -> AsyncIterator[tuple[AsyncEngine, FaultyProxy]]:
    """A Postgres engine whose connections all pass through a FaultyProxy."""
    proxy, url = _through_proxy(database_url)
    await proxy.start()
    engine = create_async_engine(_via(proxy, url), **engine_args)
    try:
        yield engine, proxy
    finally:
        await engine.dispose()
        await proxy.cut()


@asynccontextmanager
async def app_through_proxy(
    database_url: str, keys_dir: Path, **settings_overrides: str
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, FaultyProxy]]:
    """The server, started, with its database behind a FaultyProxy; and a client for it."""
    proxy, url = _through_proxy(database_url)
    await proxy.start()
    app = create_app(make_settings(_via(proxy, url), keys_dir, **settings_overrides))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                yield app, http, proxy
    finally:
        await proxy.restore()
        await proxy.cut()


async def lose_every_connection(proxy: FaultyProxy) -> None:
    """What a database restart does to a pool: every open connection is reset."""
    await proxy.cut()
    await proxy.restore()
