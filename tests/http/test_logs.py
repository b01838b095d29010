"""Structured logs: one JSON line per request with its request id, and never a secret.

The secrets test drives logins (good and bad), refreshes, a refresh-token theft, revocation,
introspection, logouts, malformed requests, a request with secrets in its query string and path,
an unexpected crash and a database outage whose SQL parameters carry a token; then it searches
every line the server logged (formatted exactly as in production, tracebacks included) for
the password, the tokens, the client secret, the KEK and the private signing key.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import logging.config
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy.exc import OperationalError

from authserver.db.families import SqlFamilyStore
from authserver.services import Services
from authserver.telemetry.logs import (
    ACCESS_LOGGER,
    BatchedStreamHandler,
    JsonFormatter,
    RequestIdFilter,
    log_config,
)
from tests.conftest import KEK, Registry, password_login

PASSWORD = "correct horse battery staple"


class Captured(logging.Handler):
    """Formats every record as production does and keeps the lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.parsed() if line["logger"] == "authserver.access"]


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    root, package = logging.getLogger(), logging.getLogger("authserver")
    old_level = package.level
    package.setLevel(logging.DEBUG)  # everything the package could ever say
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        package.setLevel(old_level)


def private_key_lines(services: Services) -> list[str]:
    pem = services.keys.ring.signing.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    body = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    return [line[:24] for line in body if len(line) >= 24]


async def test_no_secret_reaches_a_log_line(
    client: httpx.AsyncClient,
    registry: Registry,
    services: Services,
    spa: str,
    captured: Captured,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await registry.user("alice", PASSWORD, scopes=("profile",))
    secret = await registry.client("svc", scopes=("profile",))
    assert secret is not None
    basic = ("svc", secret)

    login = (await password_login(client, password=PASSWORD)).json()
    access, refresh1 = login["access_token"], login["refresh_token"]
    rotated = await client.post("/refresh", data={"client_id": spa, "refresh_token": refresh1})
    refresh2 = rotated.json()["refresh_token"]
    # Theft: the spent token again, which revokes the family.
    assert (
        await client.post("/refresh", data={"client_id": spa, "refresh_token": refresh1})
    ).status_code == 400
    # Wrong password, unknown user, bad client secret, malformed Basic credentials.
    assert (await password_login(client, password=PASSWORD + "!")).status_code == 400
    assert (await password_login(client, username="mallory", password=PASSWORD)).status_code == 400
    assert (
        await client.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("svc", secret + "x")
        )
    ).status_code == 401
    nul = base64.b64encode(f"svc:{secret}\0".encode()).decode()
    assert (
        await client.post(
            "/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {nul}"},
        )
    ).status_code == 401
    service = await client.post("/token", data={"grant_type": "client_credentials"}, auth=basic)
    service_token = service.json()["access_token"]
    # Introspection, revocation and logouts.
    await client.post("/introspect", data={"token": access}, auth=basic)
    await client.post("/introspect", data={"token": refresh2}, auth=basic)
    await client.post("/revoke", data={"token": service_token}, auth=basic)
    login2 = (await password_login(client, password=PASSWORD)).json()
    await client.post(
        "/logout",
        data={"refresh_token": login2["refresh_token"]},
        headers={"Authorization": f"Bearer {login2['access_token']}"},
    )
    await client.post("/logout/all", headers={"Authorization": f"Bearer {access}"})
    # Malformed requests, and secrets where they do not belong: a query string, a path, JSON.
    await client.post(
        f"/token?password={PASSWORD}&refresh_token={refresh2}&client_secret={secret}",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    await client.post(f"/refresh/{refresh2}", data={"refresh_token": refresh2})
    await client.get(f"/introspect/{access}")
    await client.post(
        "/token", json={"grant_type": "password", "password": PASSWORD, "username": 7}
    )
    await client.post(
        "/token",
        data={"grant_type": "password", "client_id": spa, "username": "a", "password": "x" * 9999},
    )

    # An unexpected crash in the middle of a refresh: a 500, logged with its traceback.
    async def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("unexpected failure in the store")

    monkeypatch.setattr(SqlFamilyStore, "spend", crash)
    login3 = (await password_login(client, password=PASSWORD)).json()
    crashed = await client.post(
        "/refresh", data={"client_id": spa, "refresh_token": login3["refresh_token"]}
    )
    assert crashed.status_code == 500
    assert crashed.json()["error"] == "server_error"

    # A database outage whose error carries the statement's parameters (SQLAlchemy's str()
    # of it does): a 503, and only the driver's first line is logged.
    async def outage(self: SqlFamilyStore, token_hash: str, *args: Any, **kwargs: Any) -> None:
        raise OperationalError(
            "UPDATE refresh_tokens ...",
            {"token_hash": token_hash, "leak": login3["refresh_token"], "pw": PASSWORD},
            ConnectionResetError("connection reset by peer"),
        )

    monkeypatch.setattr(SqlFamilyStore, "spend", outage)
    down = await client.post(
        "/refresh", data={"client_id": spa, "refresh_token": login3["refresh_token"]}
    )
    assert down.status_code == 503

    secrets = {
        "password": PASSWORD,
        "access token": access,
        "access token signature": access.rsplit(".", 1)[1],
        "service access token": service_token,
        "refresh token": refresh1,
        "rotated refresh token": refresh2,
        "third refresh token": login3["refresh_token"],
        "client secret": secret,
        "key encryption key": KEK,
        **{f"private key line {i}": line for i, line in enumerate(private_key_lines(services))},
    }
    assert len(captured.lines) > 20
    for line in captured.lines:
        for name, value in secrets.items():
            assert value not in line, f"the {name} is in a log line: {line}"

    # What should be there is: the crash with its traceback, the outage with its detail.
    parsed = captured.parsed()
    crash_lines = [p for p in parsed if p.get("exc_type") == "RuntimeError"]
    assert crash_lines and "unexpected failure in the store" in crash_lines[0]["exc"]
    assert crash_lines[0]["request_id"] == crashed.headers["x-request-id"]
    assert any("connection reset by peer" in p["msg"] for p in parsed)


async def test_one_json_line_per_request_with_its_request_id(
    client: httpx.AsyncClient, captured: Captured
) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "req-42.abc"})
    made = await client.get("/.well-known/jwks.json")
    refused = await client.get("/healthz", headers={"X-Request-ID": 'bad id "with" spaces'})
    too_long = await client.get("/healthz", headers={"X-Request-ID": "a" * 200})
    missing = await client.get("/nothing/here/at/all")

    assert given.headers["x-request-id"] == "req-42.abc"
    generated = [made, refused, too_long, missing]
    ids = [r.headers["x-request-id"] for r in generated]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == 4

    lines = captured.access()
    assert [line["request_id"] for line in lines] == [given.headers["x-request-id"], *ids]
    first = lines[0]
    assert first["method"] == "GET" and first["path"] == "/healthz"
    assert first["route"] == "/healthz" and first["status"] == 200
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["level"] == "info" and first["ts"].endswith("Z")
    assert lines[1]["route"] == "/.well-known/jwks.json"
    # An unknown path is neither a route label nor logged whole (it could be a token).
    assert lines[4]["route"] == "<unmatched>" and lines[4]["status"] == 404
    assert lines[4]["path"] == "/nothing/…"


async def test_oauth_errors_are_logged_with_their_private_detail_and_request_id(
    client: httpx.AsyncClient, spa: str, captured: Captured
) -> None:
    response = await client.post(
        "/refresh",
        data={"client_id": spa, "refresh_token": "never-issued"},
        headers={"X-Request-ID": "trace-1"},
    )

    assert response.status_code == 400
    details = [p for p in captured.parsed() if p["logger"] != "authserver.access"]
    assert any(
        "unknown refresh token" in p["msg"] and p["request_id"] == "trace-1" for p in details
    )
    assert "unknown refresh token" not in response.text  # the detail stays on the server


@contextmanager
def server_logging() -> Iterator[logging.Handler]:
    """Logging set up as `serve` sets it up (its one handler yielded), then as it was."""
    names = ["authserver", "uvicorn", "uvicorn.error", "uvicorn.access"]
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, [logging.getLogger(n).level for n in names])
    logging.config.dictConfig(log_config("info"))
    try:
        [handler] = root.handlers
        yield handler
        handler.flush()  # lines are written in batches
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in zip(names, saved[2], strict=True):
            logging.getLogger(name).setLevel(level)


def test_the_server_log_config_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with server_logging():
        logging.getLogger("authserver.test").info("hello %s", "there", extra={"answer": 42})
        logging.getLogger("uvicorn.error").info("started", extra={"color_message": "\x1b[1m"})
        logging.getLogger("uvicorn.access").info("uvicorn's own access line")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    ours = next(line for line in lines if line["logger"] == "authserver.test")
    assert ours["msg"] == "hello there" and ours["answer"] == 42 and ours["level"] == "info"
    uvicorn = next(line for line in lines if line["logger"] == "uvicorn.error")
    assert uvicorn["msg"] == "started" and "color_message" not in uvicorn
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]


async def test_access_lines_skip_the_log_record_and_come_out_as_logging_would_write_them(
    client: httpx.AsyncClient,
) -> None:
    """With logging as `serve` sets it up, the access line is handed to its handler without a
    LogRecord (telemetry/logs.py log_access); with any other set-up (here a second handler) it
    goes through logging. Either way the line is the same, member for member, in order."""
    made: list[str] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        made.append(record.name)
        return record

    stream = io.StringIO()
    logging.setLogRecordFactory(counting)
    try:
        with server_logging() as handler:
            cast(logging.StreamHandler, handler).setStream(stream)  # type: ignore[type-arg]
            await client.get("/healthz", headers={"X-Request-ID": "without-a-record"})
            assert ACCESS_LOGGER not in made
            second = logging.NullHandler()
            logging.getLogger().addHandler(second)
            await client.get("/healthz", headers={"X-Request-ID": "through-logging"})
            assert ACCESS_LOGGER in made
            logging.getLogger().removeHandler(second)
    finally:
        logging.setLogRecordFactory(factory)

    fast, slow = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (fast["request_id"], slow["request_id"]) == ("without-a-record", "through-logging")
    assert list(fast) == list(slow)
    for line in (fast, slow):
        del line["ts"], line["duration_ms"], line["request_id"]
    assert (
        fast
        == slow
        == {
            "level": "info",
            "logger": ACCESS_LOGGER,
            "msg": "GET /healthz 200",
            "method": "GET",
            "path": "/healthz",
            "route": "/healthz",
            "status": 200,
        }
    )


def test_access_lines_are_batched_and_every_other_line_written_at_once() -> None:
    stream = io.StringIO()
    handler = BatchedStreamHandler(stream, interval=0.05)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access, other = logging.getLogger(ACCESS_LOGGER), logging.getLogger("authserver.test.other")
    saved = [(logger, logger.propagate, logger.level) for logger in (access, other)]
    for logger in (access, other):
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    try:
        access.info("GET /one 200")
        other.info("started")  # written at once, after the access line that waited
        assert stream.getvalue() == "GET /one 200\nstarted\n"
        access.info("GET /two 200")
        deadline = time.monotonic() + 2
        while "two" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue().endswith("started\nGET /two 200\n")  # by the background writer
        handler.interval = 3600
        access.info("GET /three 200")
        assert "three" not in stream.getvalue()
        handler.flush()  # what the lifespan does at shutdown
        assert stream.getvalue().endswith("GET /two 200\nGET /three 200\n")
    finally:
        handler.close()
        for logger, propagate, level in saved:
            logger.removeHandler(handler)
            logger.propagate, logger.level = propagate, level


@pytest.mark.parametrize(
    "value",
    ["lone \ud800 surrogate", 2**70, {"nested": ["é", 1.5, None]}],
    ids=["lone-surrogate", "big-int", "nested"],
)
def test_a_line_orjson_refuses_is_still_written_whole(value: object) -> None:
    """orjson makes the lines, and refuses what the standard library writes (a lone surrogate
    from a hostile header, an int past 64 bits): such a line must not be lost."""
    record = logging.LogRecord("authserver.test", logging.INFO, "", 0, "odd %s", ("x",), None)
    record.detail = value

    line = json.loads(JsonFormatter().format(record))

    assert line["msg"] == "odd x"
    assert line["detail"] == value


def test_closing_the_handler_while_its_writer_runs_stops_the_writer_cleanly() -> None:
    # logging.Handler.close() sets its own `_closed = True`; the writer once kept its stop
    # event under that name, so a writer between two waits met a bool and died with
    # "'bool' object has no attribute 'wait'" (seen when a test server shut down under load).
    failures: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)
    try:
        for _ in range(200):
            handler = BatchedStreamHandler(io.StringIO(), interval=0.00001)
            handler.setFormatter(logging.Formatter("%(message)s"))
            handler.emit_line("GET /one 200", batched=True)  # starts the writer
            time.sleep(0.0005)
            handler.close()
            assert handler._writer is not None
            handler._writer.join(timeout=2)
            assert not handler._writer.is_alive()
    finally:
        threading.excepthook = hook
    assert failures == []
