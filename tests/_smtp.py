"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1, in a thread of its own, keeping
every message it accepts. tests/conftest.py's fixtures: `smtp` (running), `dead_smtp_port`
(nothing listens).

    def test_x(smtp: SmtpServer) -> None:
        ... send to smtp.url ...
        [received] = smtp.wait_for(1)
        assert received.message["Subject"] == "..."
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

# Recipients in this domain are refused for good (550), as a mailbox that does not exist is.
REFUSED_DOMAIN = "@refused.test"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Received:
    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage


@dataclass
class _Keeper:
    """aiosmtpd's handler: keeps each message as the standard library parses it."""

    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.endswith(REFUSED_DOMAIN):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        with self.arrived:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self._keeper = _Keeper()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        return list(self._keeper.received)

    def start(self) -> None:
        self._controller = Controller(self._keeper, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """The first `count` messages, once that many have arrived."""
        deadline = time.monotonic() + timeout
        with self._keeper.arrived:
            while len(self._keeper.received) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self._keeper.received)} of {count} messages arrived"
                self._keeper.arrived.wait(left)
            return list(self._keeper.received[:count])


@contextmanager
def smtp_server(port: int | None = None) -> Iterator[SmtpServer]:
    server = SmtpServer(port or unused_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
