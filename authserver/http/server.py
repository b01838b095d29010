"""What one connection may hold: the bounds uvicorn does not set itself.

uvicorn waits for a request's head and body as long as bytes keep coming (Slowloris), accepts
heads of any size that arrive in one read, keeps a connection whose request carried both
Content-Length and Transfer-Encoding (h11), and accepts connections until the process runs out
of file descriptors. So `serve` runs its two HTTP/1.1 protocols (h11 and httptools) subclassed
here to:

- answer 408 and close when a request's head is not complete `header_timeout` seconds after
  the connection opened or the previous response ended (close silently if nothing came);
- answer 414 past MAX_URL_BYTES of URL, 431 past MAX_HEADERS headers or MAX_HEADER_BYTES of
  them, 400 to ambiguous framing, and close;
- answer 503 with Retry-After and close at once past `max_connections` open connections.

Each such answer is counted in authserver_http_refused_total{status} (telemetry/metrics.py).

`BodyDeadline` (ASGI middleware) bounds the time to read a request's body: 408, then close.
Every refusal is the JSON error of the rest of the server (http/errors.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib.util
import json
import logging
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from authserver.config import Settings
from authserver.errors import RequestTimeout
from authserver.http.errors import error_body
from authserver.telemetry.metrics import count_refused

logger = logging.getLogger("authserver.http")
# Its lines can come once per connection under a flood: telemetry/logs.py rate-limits them.
BUSY_LOGGER = "authserver.http.busy"
busy_logger = logging.getLogger(BUSY_LOGGER)

MAX_URL_BYTES = 8 * 1024
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16 * 1024
# The most a head that has not ended yet may occupy in memory.
MAX_HEAD_BYTES = MAX_URL_BYTES + MAX_HEADER_BYTES
RETRY_AFTER_BUSY = 1


@dataclass(frozen=True)
class Bounds:
    header_timeout: float
    max_connections: int


class Refused(Exception):
    """A request answered by the connection itself, before (or instead of) the app."""

    def __init__(self, status: int, description: str, code: str = "invalid_request") -> None:
        super().__init__(description)
        self.status, self.description, self.code = status, description, code


def head_refusal(url_bytes: int, headers: int, header_bytes: int) -> Refused | None:
    if url_bytes > MAX_URL_BYTES:
        return Refused(414, f"The URL is longer than {MAX_URL_BYTES} bytes.")
    if headers > MAX_HEADERS:
        return Refused(431, f"The request has more than {MAX_HEADERS} header fields.")
    if header_bytes > MAX_HEADER_BYTES:
        return Refused(431, f"The header fields are longer than {MAX_HEADER_BYTES} bytes.")
    return None


MALFORMED = "The request is not valid HTTP/1.1."
HEAD_TOO_LARGE = Refused(431, f"The request head is longer than {MAX_HEAD_BYTES} bytes.")


def _answer(refused: Refused, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    # Written by hand: uvicorn answers these before (or instead of) the app, so no Response
    # object exists; the members are http/errors.py's all the same.
    body = json.dumps(error_body(refused.code, refused.description)).encode()
    head = [
        f"HTTP/1.1 {refused.status} {HTTPStatus(refused.status).phrase}",
        "content-type: application/json",
        "cache-control: no-store",
        "pragma: no-cache",
        "x-content-type-options: nosniff",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in extra),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Guard:
    """One connection's head deadline and its way of refusing."""

    def __init__(self, loop: asyncio.AbstractEventLoop, bounds: Bounds) -> None:
        self.loop = loop
        self.bounds = bounds
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.pending = 0  # bytes received since the head clock started

    def admit(self, transport: asyncio.BaseTransport, open_connections: int) -> bool:
        self.transport = transport
        if open_connections > self.bounds.max_connections:
            # Refused before anything is read, so a flood of connections costs each one an
            # accept and a close, never a file descriptor held.
            busy_logger.warning(
                "connection refused: %d connections open (AUTHSERVER_MAX_CONNECTIONS %d)",
                open_connections - 1,
                self.bounds.max_connections,
            )
            busy = Refused(503, "The server is busy; try again shortly.", "temporarily_unavailable")
            self.refuse(busy, [("retry-after", str(RETRY_AFTER_BUSY))], quiet=True)
            return False
        return True

    def track(self, awaiting_head: bool) -> None:
        """Starts the head clock when the connection waits for a request head (if it is not
        running already: bytes that trickle in do not reset it), stops it once one is in."""
        if not awaiting_head:
            self._stop()
        elif self.timer is None and not self._closing():
            self.pending = 0
            # In a context of its own: not the one of the request that armed it (its log id).
            self.timer = self.loop.call_later(
                self.bounds.header_timeout, self._expired, context=contextvars.Context()
            )

    def received(self, size: int) -> None:
        if self.timer is not None:
            self.pending += size

    def closed(self) -> None:
        self._stop()

    def refuse(
        self, refused: Refused, extra: Sequence[tuple[str, str]] = (), *, quiet: bool = False
    ) -> None:
        self._stop()
        if self.transport is None or self._closing():
            return
        if not quiet:
            logger.info("refused a request: %d %s", refused.status, refused.description)
        self.transport.write(_answer(refused, extra))  # type: ignore[attr-defined]
        self.transport.close()
        # Counted here: the app, and so Observe's request counter, never sees these.
        count_refused(refused.status)

    def _expired(self) -> None:
        self.timer = None
        if self.pending:
            self.refuse(Refused(408, "The request head did not arrive in time."))
        elif self.transport is not None:
            self.transport.close()  # nothing came: nobody to answer

    def _stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()


class CoalescedWrites:
    """A connection's transport whose writes in one step of the event loop leave as one.

    uvicorn writes a response's head and its body with a write each, so every answer cost two
    send() system calls and two loopback segments: the first was a third of a worker's CPU in
    a rotation benchmark's py-spy profile. Writes wait here until the step ends (call_soon), or
    until COALESCE_BYTES of them wait, or the connection closes; everything else is the
    transport's own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush, context=_EMPTY_CONTEXT)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= COALESCE_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._size = [], 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._size = [], 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


COALESCE_BYTES = 64 * 1024
_EMPTY_CONTEXT = contextvars.Context()


class _BoundedH11Connection(h11.Connection):
    """h11, with the head limits and the framing rule checked as each request head is parsed.
    A refusal raises RemoteProtocolError, which uvicorn answers through send_400_response."""

    refused: Refused | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:  # h11's "Receive buffer too long"
                unended, _ = self.trailing_data
                self.refused = (
                    HEAD_TOO_LARGE
                    if b"\n" in unended
                    else Refused(414, f"The URL is longer than {MAX_URL_BYTES} bytes.")
                )
            raise
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}
            self.refused = head_refusal(
                len(event.target),
                len(event.headers),
                sum(len(name) + len(value) + 4 for name, value in event.headers),
            )
            if self.refused is None and {b"content-length", b"transfer-encoding"} <= names:
                # RFC 9112 §6.1: "a server MAY reject a request that contains both
                # Content-Length and Transfer-Encoding [...]. Regardless, the server MUST close
                # the connection after responding to such a request".
                self.refused = Refused(400, "Send Content-Length or Transfer-Encoding, not both.")
            if self.refused is not None:
                raise h11.RemoteProtocolError(self.refused.description, self.refused.status)
        return event


class BoundedH11Protocol(H11Protocol):
    def __init__(self, *args: Any, bounds: Bounds, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = _Guard(self.loop, bounds)
        self.bounded_conn = _BoundedH11Connection(h11.SERVER, MAX_HEAD_BYTES)
        self.conn = self.bounded_conn

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalesced = cast(asyncio.Transport, CoalescedWrites(transport, self.loop))
        super().connection_made(coalesced)
        if self.guard.admit(coalesced, len(self.connections)):
            self.guard.track(awaiting_head=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.guard.received(len(data))
        super().data_received(data)
        self.guard.track(self._awaiting_head())

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.guard.track(self._awaiting_head())

    def send_400_response(self, msg: str) -> None:
        self.guard.refuse(self.bounded_conn.refused or Refused(400, MALFORMED))

    def _awaiting_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete


def _httptools_protocol() -> type[asyncio.Protocol]:
    """The httptools variant, defined only where httptools is installed (uvicorn's "auto")."""
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, bounds: Bounds, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.guard = _Guard(self.loop, bounds)
            self.url_bytes = self.header_count = self.header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            coalesced = cast(asyncio.Transport, CoalescedWrites(transport, self.loop))
            super().connection_made(coalesced)
            if self.guard.admit(coalesced, len(self.connections)):
                self.guard.track(awaiting_head=True)

        def connection_lost(self, exc: Exception | None) -> None:
            self.guard.closed()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            # uvicorn's, with our refusals: a callback's exception reaches us as the context
            # of httptools' HttpParserCallbackError. llhttp itself refuses Content-Length with
            # Transfer-Encoding (RFC 9112 §6.1), answered here as any malformed request.
            self._unset_keepalive_if_required()
            self.guard.received(len(data))
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError as exc:
                cause = exc.__context__
                self.guard.refuse(cause if isinstance(cause, Refused) else Refused(400, MALFORMED))
                return
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            self.guard.track(self._awaiting_head())
            if self.guard.timer is not None and self.guard.pending > MAX_HEAD_BYTES:
                self.guard.refuse(HEAD_TOO_LARGE)  # one header line that never ends

        def send_400_response(self, msg: str) -> None:
            self.guard.refuse(Refused(400, MALFORMED))

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.url_bytes = self.header_count = self.header_bytes = 0

        def on_url(self, url: bytes) -> None:
            self.url_bytes += len(url)  # called with each piece as it arrives
            if (refused := head_refusal(self.url_bytes, 0, 0)) is not None:
                raise refused
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self.header_count += 1
            self.header_bytes += len(name) + len(value) + 4
            if (refused := head_refusal(0, self.header_count, self.header_bytes)) is not None:
                raise refused
            super().on_header(name, value)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self.guard.track(self._awaiting_head())

        def _awaiting_head(self) -> bool:
            # A pipelined request queued behind this one is self.cycle, its head complete.
            return self.cycle is None or self.cycle.response_complete

    return BoundedHttpToolsProtocol


def protocol(http: str, settings: Settings, open_files: int | None) -> Callable[..., Any]:
    """What `serve` passes uvicorn as `http`: the protocol class for `http` (auto, h11 or
    httptools) with this process's bounds bound in. A partial of a module-level class, so it
    pickles to `serve --workers N`'s processes, where a class made here would not."""
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    bounds = Bounds(settings.header_timeout, connection_cap(settings.max_connections, open_files))
    if http == "httptools":
        return functools.partial(_make_httptools, bounds=bounds)
    return functools.partial(BoundedH11Protocol, bounds=bounds)


def _make_httptools(*args: Any, **kwargs: Any) -> asyncio.Protocol:
    return _httptools_class()(*args, **kwargs)


@functools.cache
def _httptools_class() -> type[asyncio.Protocol]:
    return _httptools_protocol()


def raise_open_files_limit() -> int | None:
    """Raises this process's soft RLIMIT_NOFILE to its hard limit (inherited by the workers);
    the limit now in force, None when there is none."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # macOS refuses RLIM_INFINITY: keep what we have
            pass
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(wanted: int, open_files: int | None) -> int:
    """`wanted`, lowered to leave a quarter of the file descriptors (at least 64) to what else
    the process opens: the listening socket, database connections, log and metrics files."""
    if open_files is None:
        return wanted
    return max(1, min(wanted, open_files - max(64, open_files // 4)))


class BodyDeadline:
    """Bounds the body: a receive that brings nothing for `seconds` (a stall, API.md) or that
    is still waiting `3 × seconds` after the request began (a trickle of a byte now and then)
    raises RequestTimeout, which the app answers 408 (and closes)."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # asyncio's own timer, not anyio's cancel scope: the servers run asyncio, and anyio's
        # scope (its backend lookup, its clock) was 7 % of a client_credentials POST.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * self.seconds
        body_done = False

        async def bounded_receive() -> Message:
            nonlocal body_done
            if body_done:  # a wait for the disconnect, not for the body: not ours to bound
                return await receive()
            try:
                async with asyncio.timeout(min(self.seconds, deadline - loop.time())):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout() from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, bounded_receive, send)
