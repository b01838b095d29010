"""What a real `authserver serve` does with hostile HTTP/1.1 on a raw socket: slow or endless
request heads and bodies, oversized heads, ambiguous framing, clients that vanish, and more
connections than the process has file descriptors for.

Each server is the real command line in a subprocess (SQLite, its own port and log), run once
with uvicorn's h11 parser and once with httptools, as production may use either.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.races._instances import instance_env, stop
from tests.test_cli import AUTHSERVER, free_port

# Short bounds, so each attack is over in about a second.
TIMEOUTS = {"HEADER_TIMEOUT": "1", "BODY_TIMEOUT": "1"}
# Longer than any bound the server should apply: a read that waits this long means a hang.
PATIENCE = 6.0
# "Closed at once": well under the 1 s head timeout that closes any idle connection anyway.
AT_ONCE = 0.5


@dataclass
class Served:
    url: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for raw in self.log.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"msg": raw})  # not ours: a traceback printed raw, say
        return lines

    def lines_of(self, request_id: str, wait: float = 3.0) -> list[dict[str, object]]:
        """The log lines of one request, waiting for the batched access line (telemetry/logs.py)."""
        deadline = time.monotonic() + wait
        while True:
            found = [line for line in self.log_lines() if line.get("request_id") == request_id]
            if any(line.get("logger") == "authserver.access" for line in found):
                return found
            if time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def start(tmp: Path, http: str, overrides: dict[str, str], nofile: int | None = None) -> Served:
    port = free_port()
    env = instance_env(f"sqlite+aiosqlite:///{tmp / 'authserver.db'}", tmp / "keys", overrides)
    command = [AUTHSERVER, "serve", "--port", str(port), "--http", http]
    if nofile is not None:  # `ulimit -n` in sh sets the soft and the hard limit
        command = ["sh", "-c", f'ulimit -n {nofile} && exec "$@"', "sh", *command]
    log = tmp / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    served = Served(f"http://127.0.0.1:{port}", port, log, process)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{served.url}/readyz", timeout=2, trust_env=False).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not become ready within 60 s"
        time.sleep(0.1)


@pytest.fixture(scope="module", params=["h11", "httptools"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    served = start(tmp_path_factory.mktemp(f"serve-{request.param}"), request.param, TIMEOUTS)
    try:
        yield served
    finally:
        stop([served.process])


# Raw HTTP


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        value: dict[str, object] = json.loads(self.body)
        return value


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    return sock


def read_answer(sock: socket.socket) -> Answer:
    """One response, read by its Content-Length; a timeout here means the server hung."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a full response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of a response body"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body[:length])


def closed_by_server(sock: socket.socket, within: float = AT_ONCE) -> bool:
    """Whether the server closes the connection (EOF or reset) within `within` seconds,
    discarding anything else it sends."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def everything_until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection (a hang fails after PATIENCE)."""
    sock.settimeout(PATIENCE)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def request_head(path: str = "/healthz", method: str = "GET", *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_oauth_error(answer: Answer, status: int, error: str = "invalid_request") -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("application/json"), answer
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]
    assert answer.headers.get("cache-control") == "no-store"


def refused_count(served: Served, status: int) -> float:
    """authserver_http_refused_total{status} on the server's /metrics: the refusals the
    connection answered itself, which no request counter sees."""
    text = httpx.get(f"{served.url}/metrics", timeout=PATIENCE, trust_env=False).text
    prefix = f'authserver_http_refused_total{{status="{status}"}} '
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


def assert_quiet(served: Served) -> None:
    """Nothing the server logged so far is an error or carries a traceback."""
    for line in served.log_lines():
        assert line.get("level") not in ("error", "critical"), line
        assert "exc" not in line and "Traceback" not in str(line.get("msg")), line


# 1. Slowloris: bounds on the time to receive a request's head and body


def test_a_connection_that_sends_nothing_is_closed(server: Served) -> None:
    with connect(server.port) as sock:
        started = time.monotonic()
        assert closed_by_server(sock, PATIENCE), "an idle new connection was kept open"
        assert time.monotonic() - started < 3


def test_a_head_sent_slowly_is_answered_408_and_closed(server: Served) -> None:
    before = refused_count(server, 408)
    with connect(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        answer = None
        # One header line every 0.2 s: each byte arrives long before any idle timeout.
        for index in range(int(PATIENCE / 0.2)):
            try:
                sock.sendall(f"X-Slow-{index}: a\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.2)
            try:
                answer = read_answer(sock)
                break
            except TimeoutError:
                continue
        assert answer is not None, "the server waited for the head as long as it was fed"
        assert_oauth_error(answer, 408)
        assert answer.headers.get("connection") == "close"
        assert closed_by_server(sock)
        assert time.monotonic() - started < 3
    assert refused_count(server, 408) == before + 1


def test_a_keep_alive_connection_gets_the_same_bound_for_its_next_head(server: Served) -> None:
    before = refused_count(server, 408)
    with connect(server.port) as sock:
        sock.sendall(request_head("/healthz"))
        assert read_answer(sock).status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # ... and nothing more
        started = time.monotonic()
        answer = read_answer(sock)
        assert_oauth_error(answer, 408)
        assert closed_by_server(sock)
        assert time.monotonic() - started < 3
    assert refused_count(server, 408) == before + 1


# From a page on an origin nobody listed, CORS reads /token's body first (http/cors.py).
@pytest.mark.parametrize("origin", [(), ("Origin: https://page.example",)])
def test_a_body_that_stalls_is_answered_408_and_closed(
    server: Served, origin: tuple[str, ...]
) -> None:
    with connect(server.port) as sock:
        sock.sendall(
            request_head(
                "/token",
                "POST",
                "Content-Type: application/x-www-form-urlencoded",
                "Content-Length: 100",
                *origin,
            )
            + b"grant_type="
        )
        started = time.monotonic()
        sock.settimeout(PATIENCE)
        answer = read_answer(sock)
        assert_oauth_error(answer, 408)
        assert closed_by_server(sock)
        assert time.monotonic() - started < 2.5  # one timeout, not the overall three


def test_a_body_sent_slowly_is_answered_408_and_closed(server: Served) -> None:
    with connect(server.port) as sock:
        sock.sendall(
            request_head(
                "/token",
                "POST",
                "Content-Type: application/x-www-form-urlencoded",
                "Content-Length: 100",
                "X-Request-ID: slow-body",
            )
        )
        started = time.monotonic()
        answer = None
        for _ in range(int(PATIENCE / 0.2)):
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.2)
            try:
                answer = read_answer(sock)
                break
            except TimeoutError:
                continue
        assert answer is not None, "the server waited for the body as long as it was fed"
        assert_oauth_error(answer, 408)
        assert answer.headers.get("connection") == "close"
        assert closed_by_server(sock)
        # A byte every 0.2 s never stalls: the bound is the overall one, three timeouts.
        assert 2.5 < time.monotonic() - started < 4.5
    [access] = [
        line for line in server.lines_of("slow-body") if line["logger"] == "authserver.access"
    ]
    assert access["status"] == 408


def test_connections_beyond_the_cap_get_503_and_the_server_recovers(
    tmp_path: Path, http: str
) -> None:
    # 128 file descriptors: the default cap becomes 64 connections (http/server.py).
    served = start(tmp_path, http, TIMEOUTS, nofile=128)
    sockets = []
    try:
        before = refused_count(served, 503)
        for _ in range(100):
            sockets.append(connect(served.port))  # each sends nothing: the cheapest Slowloris
        # Every connection ends: one past the cap with a 503 and a close at once, one held
        # with a silent close at its head timeout (1 s). Told apart by what they received,
        # not by when: a fixed wait for the 503s was too short on a loaded machine.
        received = [everything_until_closed(sock) for sock in sockets]
        refused = [data for data in received if data]
        assert 30 <= len(refused) <= 100 - 50, len(refused)
        for data in refused:
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), data
            assert b"\r\nretry-after: 1\r\n" in head.lower() + b"\r\n"
            assert json.loads(body)["error"] == "temporarily_unavailable"
        # The held ones timed out and freed their descriptors: the server answers again.
        health = httpx.get(f"{served.url}/healthz", timeout=PATIENCE, trust_env=False)
        assert health.status_code == 200
        # Each 503 counted (one may still have been on its way when the sockets were read).
        assert len(refused) <= refused_count(served, 503) - before <= 100 - 50
        assert served.process.poll() is None
        text = served.log.read_text()
        assert "out of system resource" not in text
        refusals = [line for line in served.log_lines() if "connection refused" in str(line["msg"])]
        assert len(refusals) == 1, refusals  # one line per 10 s, however many (telemetry/logs.py)
    finally:
        for sock in sockets:
            sock.close()
        stop([served.process])


@pytest.fixture(params=["h11", "httptools"])
def http(request: pytest.FixtureRequest) -> str:
    return str(request.param)


ACCEPT_FLOOD = """
import asyncio, resource, socket, sys
from authserver.telemetry import logs

logs.configure("info")
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

async def main():
    async def handle(reader, writer):
        await asyncio.sleep(10)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = []
    for _ in range(80):  # past the 64 descriptors: accept() fails and asyncio logs it
        try:
            client = socket.socket()
        except OSError:
            break
        client.setblocking(False)
        try:
            client.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        clients.append(client)
        await asyncio.sleep(0.001)
    await asyncio.sleep(2)
    logs.flush_handlers()
    sys.stderr.flush()
    import os
    os._exit(0)

asyncio.run(main())
"""


def test_accept_out_of_resource_is_logged_once_per_interval() -> None:
    # A real asyncio server out of file descriptors, with the server's logging configuration.
    done = subprocess.run(
        [sys.executable, "-c", ACCEPT_FLOOD], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if "out of system resource" in line]
    assert len(lines) == 1, f"{len(lines)} lines: {lines[:3]}"
    assert "Traceback" not in done.stderr


# 2. Limits on the request head


def test_too_many_headers_are_answered_431_and_closed(server: Served) -> None:
    before = refused_count(server, 431)
    headers = [f"X-Many-{index}: a" for index in range(150)]
    with connect(server.port) as sock:
        sock.sendall(request_head("/healthz", "GET", *headers))
        assert_oauth_error(read_answer(sock), 431)
        assert closed_by_server(sock)
    assert refused_count(server, 431) == before + 1


def test_a_large_head_in_one_read_is_answered_431_and_closed(server: Served) -> None:
    before = refused_count(server, 431)
    headers = [f"X-Big-{index}: {'a' * 1000}" for index in range(64)]  # 64 KiB of headers
    with connect(server.port) as sock:
        sock.sendall(request_head("/healthz", "GET", *headers))
        assert_oauth_error(read_answer(sock), 431)
        assert closed_by_server(sock)
    assert refused_count(server, 431) == before + 1


def test_a_large_head_that_never_ends_is_answered_431_and_closed(server: Served) -> None:
    before = refused_count(server, 431)
    with connect(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        answer = None
        for _ in range(64):  # 1 KiB at a time, one header line that never ends
            try:
                sock.sendall(b"a" * 1024)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = read_answer(sock)
        assert_oauth_error(answer, 431)
        assert closed_by_server(sock)
    assert refused_count(server, 431) == before + 1


def test_a_long_url_is_answered_414_and_closed(server: Served) -> None:
    before = refused_count(server, 414)
    with connect(server.port) as sock:
        sock.sendall(request_head("/healthz?" + "a" * 100_000))
        assert_oauth_error(read_answer(sock), 414)
        assert closed_by_server(sock)
    assert refused_count(server, 414) == before + 1


def test_heads_within_the_limits_are_served(server: Served) -> None:
    headers = [f"X-Fine-{index}: {'a' * 100}" for index in range(90)]
    with connect(server.port) as sock:
        sock.sendall(request_head("/healthz?" + "a" * 4000, "GET", *headers))
        assert read_answer(sock).status == 200
        sock.sendall(request_head("/healthz"))  # and the connection is kept
        assert read_answer(sock).status == 200


# 3. Content-Length with Transfer-Encoding


def test_content_length_with_transfer_encoding_is_answered_400_and_closed(server: Served) -> None:
    before = refused_count(server, 400)
    # On /healthz, which answers 200 to anything it is given: a 400 can only be the framing.
    with connect(server.port) as sock:
        sock.sendall(
            request_head("/healthz", "GET", "Content-Length: 5", "Transfer-Encoding: chunked")
            + b"0\r\n\r\n"
        )
        assert_oauth_error(read_answer(sock), 400)
        assert closed_by_server(sock)
    assert refused_count(server, 400) == before + 1


# 4. No redirects, and no URL built from the Host header


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/token/"),
        ("POST", "/refresh/"),
        ("POST", "/logout/all/"),
        ("GET", "/.well-known/jwks.json/"),
        ("GET", "/healthz/"),
        ("POST", "/admin/keys/rotate/"),
    ],
)
def test_a_trailing_slash_is_not_found_and_never_redirected(
    server: Served, method: str, path: str
) -> None:
    with connect(server.port) as sock:
        sock.sendall(
            (
                f"{method} {path} HTTP/1.1\r\nHost: evil.example\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        answer = read_answer(sock)
    assert_oauth_error(answer, 404, "not_found")
    assert "location" not in answer.headers
    assert b"evil.example" not in answer.body


# 5. A client that leaves in the middle of its body


def test_a_client_gone_mid_body_is_one_quiet_access_line(server: Served) -> None:
    with connect(server.port) as sock:
        sock.sendall(
            request_head(
                "/token",
                "POST",
                "Content-Type: application/x-www-form-urlencoded",
                "Content-Length: 100",
                "X-Request-ID: gone-mid-body",
            )
            + b"grant_type=pass"
        )
        time.sleep(0.2)  # the handler is reading the body now
    lines = server.lines_of("gone-mid-body")
    [access] = [line for line in lines if line["logger"] == "authserver.access"]
    assert access["status"] == 499
    assert access["level"] == "info"
    assert "disconnected" in str(access["msg"])
    assert [line["logger"] for line in lines] == ["authserver.access"], lines
    assert_quiet(server)
    metrics = httpx.get(f"{server.url}/metrics", timeout=5, trust_env=False).text
    assert 'route="/token",status="499"' in metrics
    assert 'status="500"' not in metrics
