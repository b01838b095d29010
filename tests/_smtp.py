"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1, in a thread of its own, keeping
every message it accepts. tests/conftest.py's fixtures: `smtp` (running), `dead_smtp_port`
(nothing listens).

    def test_x(smtp: SmtpServer) -> None:
        ... send to smtp.url ...
        [received] = smtp.wait_for(1)
        assert received.message["Subject"] == "..."
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Recipients in this domain are refused for good (550), as a mailbox that does not exist is.
REFUSED_DOMAIN = "@refused.test"


def password_check(username: str, password: str) -> Any:
    """An aiosmtpd authenticator that lets in one username and password (AUTH PLAIN, LOGIN)."""

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        given = (data.login, data.password) if isinstance(data, LoginPassword) else None
        return AuthResult(success=given == (username.encode(), password.encode()), handled=False)

    return authenticate


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


@dataclass(frozen=True)
class Tls:
    """A server certificate for 127.0.0.1 (or the names given) signed by a CA of the test's own
    (`ca_file`, PEM): clients trust it only when told to (SSL_CERT_FILE)."""

    ca_file: Path
    context: ssl.SSLContext


def make_tls(folder: Path, names: tuple[str, ...] = ("127.0.0.1",)) -> Tls:
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name | None,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(name) for name in names]), False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = certificate("authserver test CA", ca_key, None, ca_key, True)
    server = certificate(names[0], server_key, ca.subject, ca_key, False)
    ca_file, chain, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key_file)
    return Tls(ca_file, context)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class _Controller(Controller):
    """Remembers each connection's server, so that stop() can close what is still open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[Any] = []

    def factory(self) -> Any:
        session = super().factory()  # type: ignore[no-untyped-call]
        self.sessions.append(session)
        return session

    def close_sessions(self) -> None:
        """Closes every connection still open, in the server's own loop. aiosmtpd's stop()
        cancels its tasks but leaves their sockets to the garbage collector, which warned
        (ResourceWarning) during whatever test ran later: a test ending while authserver's
        sender was still connected left one behind."""

        async def close() -> None:
            for session in self.sessions:
                if session.transport is not None:
                    session.transport.close()
            await asyncio.sleep(0)  # the transports' connection_lost closes their sockets

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=5)


class SmtpServer:
    def __init__(self, port: int, **options: Any) -> None:
        """`options`: aiosmtpd's Controller's own, e.g. ssl_context (TLS from the first byte),
        tls_context and require_starttls (STARTTLS), authenticator."""
        self.port = port
        self._options = options
        self._keeper = _Keeper()
        self._controller: _Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        return list(self._keeper.received)

    def start(self) -> None:
        self._controller = _Controller(
            self._keeper, hostname="127.0.0.1", port=self.port, **self._options
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.close_sessions()
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
def smtp_server(port: int | None = None, **options: Any) -> Iterator[SmtpServer]:
    server = SmtpServer(port or unused_port(), **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
