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
        """The log lines of one request, waiting for the batched access line (logs.py)."""
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


def request_head(path: str = "/healthz", method: str = "GET", *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_oauth_error(answer: Answer, status: int, error: str = "invalid_request") -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("application/json"), answer
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]
    assert answer.headers.get("cache-control") == "no-store"


def assert_quiet(served: Served) -> None:
    """Nothing the server logged so far is an error or carries a traceback."""
    for line in served.log_lines():
        assert line.get("level") not in ("error", "critical"), line
        assert "exc" not in line and "Traceback" not in str(line.get("msg")), line


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
