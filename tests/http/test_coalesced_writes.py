"""CoalescedWrites (http/server.py): what uvicorn writes for one answer in one step of the event
loop (the head, then the body) leaves in one send(), in order, and nothing is lost on close.

A real asyncio transport over a socket pair; the transport's writes are recorded on their way
through, and the peer reads what arrived. (Whole servers run through it in test_server.py.)
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from authserver.http.server import COALESCE_BYTES, CoalescedWrites

pytestmark = pytest.mark.anyio


class Recording:
    """The real transport, with each write it is given kept in a list."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[CoalescedWrites, Recording, socket.socket]]:
    ours, peer = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    recording = Recording(transport)
    try:
        yield CoalescedWrites(recording, loop), recording, peer  # type: ignore[arg-type]
    finally:
        transport.abort()
        peer.close()


async def received(peer: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await asyncio.wait_for(loop.sock_recv(peer, size - len(data)), 5)
        if not chunk:
            break
        data += chunk
    return data


async def test_the_writes_of_one_step_leave_as_one() -> None:
    async with connected() as (coalesced, recording, peer):
        peer.setblocking(False)
        coalesced.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        coalesced.write(b"hello")
        assert recording.writes == []  # not before the step ends
        assert coalesced.get_write_buffer_size() == 43
        await asyncio.sleep(0)
        assert recording.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"]
        coalesced.write(b"next")
        await asyncio.sleep(0)
        assert recording.writes[1:] == [b"next"]
        assert await received(peer, 47) == recording.writes[0] + b"next"


async def test_close_sends_what_waits_first_and_abort_drops_it() -> None:
    async with connected() as (coalesced, recording, peer):
        peer.setblocking(False)
        coalesced.write(b"head ")
        coalesced.write(b"body")
        coalesced.close()
        assert recording.writes == [b"head body"]
        assert await received(peer, 100) == b"head body"  # then the end of the stream
        await asyncio.sleep(0)  # the flush scheduled by the first write finds nothing to send
        assert recording.writes == [b"head body"]

    async with connected() as (coalesced, recording, peer):
        coalesced.write(b"never sent")
        coalesced.abort()
        await asyncio.sleep(0)
        assert recording.writes == []


async def test_a_large_write_does_not_wait() -> None:
    async with connected() as (coalesced, recording, peer):
        peer.setblocking(False)
        coalesced.write(b"h")
        coalesced.write(b"x" * COALESCE_BYTES)
        assert recording.writes == [b"h" + b"x" * COALESCE_BYTES]
        assert len(await received(peer, COALESCE_BYTES + 1)) == COALESCE_BYTES + 1
