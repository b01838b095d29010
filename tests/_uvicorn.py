"""An ASGI app under a real uvicorn, in a thread of its own, on a loopback socket the test
binds first: the test knows the app's URL before the app exists (to register it as a
redirect URI, say).

    sock = loopback_socket()
    ... register f"{url_of(sock)}/callback" ...
    async with served(app, sock) as app_server:
        ... app_server.url ...
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import uvicorn
from starlette.types import ASGIApp


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1, not yet listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"http://{host}:{port}"


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    async def stop(self) -> None:
        """Stops the server now, before the block ends (a server going away mid-test)."""
        self.server.should_exit = True
        await anyio.to_thread.run_sync(self.thread.join, 30)


@asynccontextmanager
async def served(app: ASGIApp, sock: socket.socket) -> AsyncIterator[Served]:
    """Serves `app` on `sock` until the block ends. Closes the socket."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    running = Served(url_of(sock), server, thread)
    thread.start()
    try:
        with anyio.fail_after(30):
            while not server.started:
                assert thread.is_alive(), "uvicorn stopped during startup"
                await anyio.sleep(0.02)
        yield running
    finally:
        await running.stop()
        sock.close()
    assert not thread.is_alive(), "uvicorn did not shut down"
