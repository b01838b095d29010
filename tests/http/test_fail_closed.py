"""Fail closed: with the database gone, every endpoint that needs it answers 503
temporarily_unavailable at once (never a 500, never a hang), and all recovers by itself.

On Postgres the database is taken away for real with a TCP proxy between the app and the server
(tests/_proxy.py): `cut` is the host going away (resets, refusals), `black_hole` is a host that
stops answering, which only timeouts can end. SQLite is a file in the process: what can honestly
be tested there is the translation of its real errors (a database locked past the timeout).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette

from authserver.app import build_services
from authserver.config import Settings
from authserver.db.accounts import SqlUserStore
from authserver.db.failures import fail_closed, unavailable
from authserver.errors import TemporarilyUnavailable
from authserver.services import Services
from tests._proxy import FaultyProxy, app_through_proxy
from tests.conftest import Registry, password_login

# Worst case with a silent host: a pooled connection's ping runs into command_timeout (6 s),
# then a fresh connection into the connect timeout (5 s). Anything past this is a hang.
BOUND = 14.0


@dataclass
class Rig:
    http: httpx.AsyncClient
    proxy: FaultyProxy
    app: Starlette
    secret: str
    access_token: str
    refresh_token: str


@pytest.fixture
async def rig(
    database_url: str, engine: AsyncEngine, tmp_path: Path, settings_overrides: dict[str, str]
) -> AsyncIterator[Rig]:
    overrides = settings_overrides
    async with app_through_proxy(database_url, tmp_path / "keys", **overrides) as found:
        app, http, proxy = found
        services: Services = app.state.services
        registry = Registry(services)
        await registry.client(
            "spa",
            public=True,
            grant_types=("password", "refresh_token"),
            scopes=("profile", "admin"),
        )
        secret = await registry.client("svc", scopes=("profile",))
        assert secret is not None
        await registry.user("alice", "correct horse", scopes=("profile", "admin"))
        login = await password_login(http)
        assert login.status_code == 200, login.text
        body = login.json()
        yield Rig(http, proxy, app, secret, body["access_token"], body["refresh_token"])


def requests(rig: Rig) -> dict[str, tuple[str, str, dict[str, str], dict[str, str]]]:
    """Every endpoint that needs the database: name → (method, path, form, headers)."""
    bearer = {"Authorization": f"Bearer {rig.access_token}"}
    basic = httpx.BasicAuth("svc", rig.secret)
    auth_header = {"Authorization": basic._auth_header}
    return {
        "login": (
            "POST",
            "/token",
            {
                "grant_type": "password",
                "client_id": "spa",
                "username": "alice",
                "password": "correct horse",
            },
            {},
        ),
        "client_credentials": ("POST", "/token", {"grant_type": "client_credentials"}, auth_header),
        "refresh": (
            "POST",
            "/refresh",
            {"client_id": "spa", "refresh_token": rig.refresh_token},
            {},
        ),
        "revoke": ("POST", "/revoke", {"token": rig.refresh_token}, auth_header),
        "introspect": ("POST", "/introspect", {"token": rig.access_token}, auth_header),
        "logout": ("POST", "/logout", {"refresh_token": rig.refresh_token}, bearer),
        "logout_all": ("POST", "/logout/all", {}, bearer),
        "admin_keys": ("GET", "/admin/keys", {}, bearer),
        "admin_logout_user": ("POST", "/admin/users/someone/logout-all", {}, bearer),
    }


async def hit_everything(rig: Rig) -> dict[str, tuple[httpx.Response, float]]:
    async def one(
        method: str, path: str, form: dict[str, str], headers: dict[str, str]
    ) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = await rig.http.request(method, path, data=form or None, headers=headers)
        return response, time.monotonic() - started

    named = requests(rig)
    answers = await asyncio.gather(*(one(*request) for request in named.values()))
    return dict(zip(named, answers, strict=True))


def assert_unavailable(name: str, response: httpx.Response) -> None:
    assert response.status_code == 503, f"{name}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json"), name
    assert response.headers["cache-control"] == "no-store", name
    assert response.json()["error"] == "temporarily_unavailable", name
    # Nothing about the database leaks to the client.
    assert "postgres" not in response.text.lower() and "127.0.0.1" not in response.text, name


async def assert_recovered(rig: Rig) -> None:
    """Nothing was half done in the outage: the refresh token is still live, exactly once."""
    assert (await rig.http.get("/readyz")).status_code == 200
    refreshed = await rig.http.post(
        "/refresh", data={"client_id": "spa", "refresh_token": rig.refresh_token}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert (await password_login(rig.http)).status_code == 200
    logout = await rig.http.post(
        "/logout",
        data={"refresh_token": refreshed.json()["refresh_token"]},
        headers={"Authorization": f"Bearer {rig.access_token}"},
    )
    assert logout.status_code == 204
    introspected = await rig.http.post(
        "/introspect", data={"token": rig.access_token}, auth=("svc", rig.secret)
    )
    assert introspected.json() == {"active": False}  # the revocation was not lost


async def test_a_vanished_database_gets_503_everywhere_then_recovers(rig: Rig) -> None:
    await rig.proxy.cut()

    answers = await hit_everything(rig)
    ready = await rig.http.get("/readyz")
    alive = await rig.http.get("/healthz")
    jwks = await rig.http.get("/.well-known/jwks.json")

    for name, (response, seconds) in answers.items():
        assert_unavailable(name, response)
        assert seconds < 2.0, f"{name} took {seconds:.1f} s with the connection refused"
    assert ready.status_code == 503
    assert alive.status_code == 200
    assert jwks.status_code == 200  # the keys are in memory: verifiers keep working

    await rig.proxy.restore()
    await assert_recovered(rig)


async def test_a_silent_database_gets_503_within_the_timeouts_then_recovers(rig: Rig) -> None:
    rig.proxy.black_hole()

    started = time.monotonic()
    answers = await hit_everything(rig)
    ready_started = time.monotonic()
    ready = await rig.http.get("/readyz")
    ready_seconds = time.monotonic() - ready_started
    total = time.monotonic() - started

    for name, (response, seconds) in answers.items():
        assert_unavailable(name, response)
        assert seconds < BOUND, f"{name} took {seconds:.1f} s"
    assert ready.status_code == 503 and ready_seconds < 2.0
    assert total < BOUND + 2.0
    assert (await rig.http.get("/healthz")).status_code == 200

    await rig.proxy.restore()
    await assert_recovered(rig)


async def test_a_database_starting_up_gets_503_then_recovers(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # A restart: the pool's connections are reset, and every new one is refused with 57P03
    # ("the database system is starting up"), which SQLAlchemy raises at checkout as a plain
    # DBAPIError, neither an OperationalError nor flagged as a lost connection.
    caplog.set_level(logging.INFO, "authserver")
    await rig.proxy.starting_up()

    # Twice: the first round may meet the reset connections, the second only the refusals.
    for _ in range(2):
        for name, (response, seconds) in (await hit_everything(rig)).items():
            assert_unavailable(name, response)
            assert seconds < 2.0, f"{name} took {seconds:.1f} s"
    assert (await rig.http.get("/readyz")).status_code == 503
    # At warning: where alerts look (they were logged at info, below it).
    assert any(
        "starting up" in record.getMessage() and record.levelno == logging.WARNING
        for record in caplog.records
    )

    await rig.proxy.restore()
    await assert_recovered(rig)


@pytest.mark.parametrize("settings_overrides", [{"db_pool_size": "1"}])
async def test_requests_queued_for_a_stuck_pool_get_503_too(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # A pool of 1: its connection hangs in the black hole, and the requests queued behind it
    # give up after pool_timeout rather than waiting for it.
    caplog.set_level(logging.INFO, "authserver")
    rig.proxy.black_hole()

    started = time.monotonic()
    answers = await hit_everything(rig)

    for name, (response, _) in answers.items():
        assert_unavailable(name, response)
    assert time.monotonic() - started < BOUND
    assert any("database pool exhausted" in record.getMessage() for record in caplog.records)

    await rig.proxy.restore()
    await assert_recovered(rig)


async def test_sqlite_errors_that_mean_unavailable_are_translated(tmp_path: Path) -> None:
    # Another process holds the write lock past our busy timeout: SQLite's own "database is
    # locked", the embedded database's way of saying it cannot answer now.
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE users (id TEXT)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        store = fail_closed(SqlUserStore(engine))
        with pytest.raises(TemporarilyUnavailable) as caught:
            await store.by_username("alice")
    finally:
        await engine.dispose()
        holder.execute("ROLLBACK")
        holder.close()
    assert caught.value.status == 503
    assert caught.value.detail is not None and "database is locked" in caught.value.detail


async def test_other_database_errors_are_left_alone() -> None:
    # A constraint or a bug in a statement is not an outage: clients must not be told to retry.
    class Store:
        async def create(self) -> None:
            raise IntegrityError("INSERT ...", {}, Exception("UNIQUE constraint failed"))

        async def crash(self) -> None:
            raise ValueError("a bug")

    store = fail_closed(Store())
    with pytest.raises(IntegrityError):
        await store.create()
    with pytest.raises(ValueError):
        await store.crash()


def as_sqlalchemy_raises_it(driver_error: Exception) -> DBAPIError:
    """`driver_error` wrapped as SQLAlchemy's asyncpg adapter wraps a server error it has no
    narrower class for (57P03 on connecting, for one): the adapter's Error, its SQLSTATE copied,
    raised from the driver's, inside a plain DBAPIError."""
    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)  # type: ignore[no-untyped-call]
    adapted = dbapi._asyncpg_error_translate[asyncpg.PostgresError](str(driver_error), driver_error)
    adapted.__cause__ = driver_error
    wrapped = DBAPIError.instance(None, None, adapted, dbapi.Error)
    assert isinstance(wrapped, DBAPIError)
    return wrapped


@pytest.mark.parametrize(
    ("driver_error", "outage"),
    [
        pytest.param(
            asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
            True,
            id="57P03 starting up",
        ),
        pytest.param(
            asyncpg.exceptions.AdminShutdownError("terminating connection"),
            True,
            id="57P01 shutting down",
        ),
        pytest.param(
            asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
            True,
            id="53300 too many clients",
        ),
        pytest.param(
            asyncpg.exceptions.PostgresSyntaxError("syntax error at or near"),
            False,
            id="42601 a bug",
        ),
        pytest.param(
            asyncpg.exceptions.UniqueViolationError("duplicate key value"),
            False,
            id="23505 a constraint",
        ),
    ],
)
def test_a_wrapped_driver_error_is_judged_by_what_it_wraps(
    driver_error: Exception, outage: bool
) -> None:
    wrapped = as_sqlalchemy_raises_it(driver_error)
    assert type(wrapped) is DBAPIError  # not an OperationalError, nor flagged as lost
    assert not wrapped.connection_invalidated

    translated = unavailable(wrapped)

    assert (translated is not None) == outage
    if translated is not None:
        assert translated.status == 503
        assert translated.detail is not None and str(driver_error) in translated.detail


def layers(value: object) -> list[object]:
    """`value` and every store it wraps (fail_closed, observed_families, SigningKeys)."""
    chain = [value]
    while isinstance(getattr(chain[-1], "__dict__", None), dict) and "_store" in vars(chain[-1]):
        chain.append(vars(chain[-1])["_store"])
    return chain


async def test_every_store_the_server_uses_fails_closed(
    settings: Settings, engine: AsyncEngine
) -> None:
    # A store added to build_services without fail_closed would answer an outage with a 500.
    services = build_services(settings, engine)
    stores = 0
    for field in dataclasses.fields(services):
        chain = layers(getattr(services, field.name))
        if type(chain[-1]).__module__.startswith("authserver.db."):
            stores += 1
            kinds = [type(layer).__name__ for layer in chain]
            assert "_FailClosed" in kinds, f"Services.{field.name} is {kinds}: not fail_closed"
    assert stores >= 4  # users, clients, sessions, keys at least


async def test_an_outages_503_is_logged_at_warning_and_a_clients_400_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from authserver.errors import InvalidRequest, TemporarilyUnavailable
    from authserver.http.errors import HANDLERS

    async def down(request: Request) -> None:
        raise TemporarilyUnavailable(detail="database unreachable: ConnectionRefusedError")

    async def bad(request: Request) -> None:
        raise InvalidRequest(detail="a field is missing")

    app = Starlette(routes=[Route("/down", down), Route("/bad", bad)], exception_handlers=HANDLERS)
    url = "postgresql+asyncpg://auth:s3cret@db.internal:6432/auth"
    app.state.services = SimpleNamespace(settings=Settings(database_url=url))
    caplog.set_level(logging.INFO, "authserver")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/down")).status_code == 503
        assert (await client.get("/bad")).status_code == 400
    levels = {r.getMessage().split(": ")[1]: r.levelno for r in caplog.records}
    assert levels == {"temporarily_unavailable": logging.WARNING, "invalid_request": logging.INFO}
    # The outage's line names where the database is, as the setting does, never its password.
    outage = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert outage.endswith("(AUTHSERVER_DATABASE_URL: db.internal:6432)"), outage
    assert "s3cret" not in outage
