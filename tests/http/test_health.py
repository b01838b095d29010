"""GET /healthz and GET /readyz.

To take the database away from a running server honestly, the Postgres case puts a TCP proxy
of our own between the app and the real database and then closes it: the server sees exactly
what it sees when the database host goes away (connections reset, new ones refused). SQLite is
embedded: a file the process already has open cannot become unreachable in a way `SELECT 1`
would notice, so that case is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from authserver.app import create_app
from tests.conftest import ISSUER, make_settings


async def test_healthz_answers_200(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


async def test_readyz_answers_200_with_database_and_keys(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `stop` drops every connection and stops
    listening, `start` listens on the same port again."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)


@pytest.fixture
async def proxied(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, TcpProxy]]:
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("an embedded SQLite database cannot be made unreachable from outside")
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = create_app(make_settings(via_proxy, tmp_path / "keys"))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                yield http, proxy
    finally:
        await proxy.stop()


async def test_readyz_answers_503_while_the_database_is_unreachable(
    proxied: tuple[httpx.AsyncClient, TcpProxy],
) -> None:
    client, proxy = proxied
    assert (await client.get("/readyz")).status_code == 200

    await proxy.stop()
    down = await client.get("/readyz")
    alive = await client.get("/healthz")

    assert down.status_code == 503
    assert down.headers["content-type"].startswith("application/json")
    assert down.headers["cache-control"] == "no-store"
    body = down.json()
    assert body["error"] == "temporarily_unavailable"
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert "127.0.0.1" not in down.text and "postgres" not in down.text.lower()
    assert alive.status_code == 200  # the process itself is fine

    await proxy.start()
    assert (await client.get("/readyz")).status_code == 200
