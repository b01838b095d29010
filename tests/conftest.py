"""Shared fixtures: every database test runs on SQLite and on a real Postgres.

The schema comes from the migrations (once per database per session); each test starts from
empty tables (signing keys are kept: making RSA keys per test would dominate the run). Requests
go through the real ASGI app with httpx, its lifespan run as in production.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette

from authserver.accounts.profiles import profile_from
from authserver.accounts.users import UserChanges, new_user
from authserver.app import create_app
from authserver.clients import Client, hash_secret, new_secret
from authserver.config import Settings, load_settings
from authserver.db import migrate
from authserver.services import Services
from tests._pgbouncer import direct_url_for, pgbouncer_in_front_of
from tests._postgres import postgres_database
from tests._smtp import SmtpServer, smtp_server, unused_port

ISSUER = "http://authserver.test"
KEK = base64.b64encode(b"k" * 32).decode()
# Tables emptied before every test, children first.
TABLES = (
    "dpop_proofs",
    "initial_access_tokens",
    "link_tokens",
    "reset_requests",
    "page_requests",
    "authorization_codes",
    "login_sessions",
    "refresh_tokens",
    "spent_refresh_tokens",
    "refresh_families",
    "denied_access_tokens",
    "second_factors",
    "recovery_codes",
    "pending_sign_ins",
    "passkeys",
    "webauthn_challenges",
    "users",
    "clients",
    "audit_events",
    "login_throttle",
    "mail_outbox",
    "resources",
    "console_sessions",
)


# What starts a real server, a browser, node, Patroni, Postgres clusters of its own or the
# `authserver` command, or bursts of deliberately slow argon2: marked `slow` by path, so
# `scripts/test -m "not slow"` is the quick loop (docs/architecture.md).
SLOW = (
    "tests/races/",
    "tests/e2e/",
    "tests/interop/",
    "tests/examples/",
    "tests/http/test_schemathesis.py",
    "tests/http/test_live_server.py",
    "tests/http/test_server.py",
    "tests/http/test_verify_live.py",
    "tests/http/test_database_restart.py",
    "tests/http/test_multi_host.py",
    "tests/test_metrics_workers.py",
    "tests/test_key_revocation_workers.py",
    "tests/test_verifier_distribution.py",
    "tests/test_cli.py",
    "tests/test_cli_keys.py",
    "tests/test_cli_lifecycle.py",
    "tests/test_dockerfile.py::test_the_build_steps_install_a_working_server",
    "tests/test_rewrap.py::test_the_rewrap_command",  # both: the `authserver` command
    "tests/test_purge.py::test_the_purge_command",
    # Bursts of logins with an argon2 made slow enough that they overlap: 80 s of a quick
    # loop at load 6 (the throttle's other tests stay in it).
    "tests/http/test_throttle.py::TestBursts",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Every `async def test_*` runs under anyio, without a marker on each."""
    if name.startswith("test") and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # Session scope: one event loop for the whole run, so session fixtures can share engines.
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'authserver.db'}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Database tests run on SQLite and Postgres; those marked `pgbouncer` also on Postgres
    through PgBouncer in transaction mode (tests/_pgbouncer.py)."""
    if "database_url" in metafunc.fixturenames:
        # postgres_only: what SQLite has no counterpart of (other connections, a server to lose).
        only_postgres = metafunc.definition.get_closest_marker("postgres_only")
        backends = ["postgres"] if only_postgres else ["sqlite", "postgres"]
        if metafunc.definition.get_closest_marker("pgbouncer"):
            backends.append("pgbouncer")
        metafunc.parametrize("database_url", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def pgbouncer_url(postgres_url: str | None) -> Iterator[str]:
    if postgres_url is None:
        pytest.skip("no Postgres could be found or started (set AUTHSERVER_TEST_DATABASE_URL)")
    with pgbouncer_in_front_of(postgres_url) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest, sqlite_url: str, postgres_url: str | None) -> str:
    """A migrated database URL, once per backend. Through PgBouncer, the database is
    Postgres's own, migrated straight there (as `authserver migrate` does)."""
    url = sqlite_url if request.param == "sqlite" else postgres_url
    if url is None:
        pytest.skip("no Postgres could be found or started (set AUTHSERVER_TEST_DATABASE_URL)")

    async def upgrade() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        await migrate.upgrade(engine)
        await engine.dispose()

    asyncio.run(upgrade())
    if request.param == "pgbouncer":
        pooled: str = request.getfixturevalue("pgbouncer_url")
        return pooled
    return url


def make_settings(database_url: str, keys_dir: Path, **overrides: str) -> Settings:
    environ = {
        "AUTHSERVER_DATABASE_URL": database_url,
        # Set only through the test PgBouncer: migrations and LISTEN go straight to Postgres.
        "AUTHSERVER_DATABASE_DIRECT_URL": direct_url_for(database_url) or "",
        "AUTHSERVER_ISSUER": ISSUER,
        "AUTHSERVER_KEY_ENCRYPTION_KEY": KEK,
        "AUTHSERVER_KEYS_DIR": str(keys_dir),
        # Cheap argon2 keeps the suite fast; test_passwords covers the real parameters.
        "AUTHSERVER_ARGON2_TIME_COST": "1",
        "AUTHSERVER_ARGON2_MEMORY_KIB": "1024",
        "AUTHSERVER_ARGON2_PARALLELISM": "1",
    }
    environ.update({f"AUTHSERVER_{name.upper()}": value for name, value in overrides.items()})
    return load_settings(environ)


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    """Override in a module to change settings, e.g. {"refresh_reuse_grace": "5"}."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, str]) -> Settings:
    return make_settings(database_url, tmp_path / "keys", **settings_overrides)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    # The tests' own statements go straight to the database (past any PgBouncer).
    engine = create_async_engine(
        settings.database_direct_url or settings.database_url, poolclass=NullPool
    )
    # DELETE, not TRUNCATE, on Postgres too: on tables this small TRUNCATE's new files cost
    # ~0.2 s a test against ~0.02 s (measured on a 2-core machine), most of the quick loop's
    # Postgres setup. The rows go all the same, children first.
    async with engine.begin() as conn:
        for table in TABLES:
            await conn.execute(text(f"DELETE FROM {table}"))
    yield engine
    await engine.dispose()


async def reset_keys(engine: AsyncEngine) -> None:
    """Forgets every signing key (and the audit rows about them)."""
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_events"))
        await conn.execute(text("DELETE FROM signing_keys"))


@pytest.fixture
async def fresh_keys(engine: AsyncEngine) -> AsyncIterator[None]:
    """For tests that make, rotate or revoke keys (keys are otherwise kept across tests).
    Request it before `app` (or with usefixtures), so the app starts by making new keys; it
    clears them again afterwards, so later tests never meet a rotated or revoked set."""
    await reset_keys(engine)
    yield
    await reset_keys(engine)


class Clock:
    """The server's clock, which a test can move; starts at the real time."""

    def __init__(self) -> None:
        self.now = int(time.time())

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def app(settings: Settings, engine: AsyncEngine, clock: Clock) -> AsyncIterator[Starlette]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def services(app: Starlette) -> Services:
    found: Services = app.state.services
    return found


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield http


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 that keeps what it receives (tests/_smtp.py)."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def dead_smtp_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connecting is refused at once."""
    return unused_port()


def assert_oauth_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An OAuth-style error (RFC 6749 section 5.2) as http/errors.py renders every one: the
    status, a JSON body with `error` and a non-empty `error_description`, never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["error_description"], str) and body["error_description"]
    return body


@dataclass
class Registry:
    """Makes users and clients through the same stores the server reads."""

    services: Services

    async def user(
        self,
        username: str = "alice",
        password: str = "correct horse",
        scopes: tuple[str, ...] = ("profile",),
        admin: bool = False,
    ) -> str:
        password_hash = await self.services.passwords.hash(password)
        user = new_user(username, password_hash, list(scopes), admin)
        assert await self.services.users.create(user, self.services.clock())
        return user.id

    async def profile(self, username: str, **fields: Any) -> None:
        """Gives a user profile fields (profiles.py), as PATCH /admin/users would."""
        user = await self.services.users.by_username(username)
        assert user is not None, username
        changes = UserChanges(profile=profile_from(fields))
        assert await self.services.users.update(user.id, changes, []) is not None

    async def client(
        self,
        client_id: str,
        *,
        public: bool = False,
        grant_types: tuple[str, ...] = ("client_credentials",),
        scopes: tuple[str, ...] = ("profile",),
        refresh_delivery: str = "body",
        redirect_uris: tuple[str, ...] = (),
        post_logout_redirect_uris: tuple[str, ...] = (),
        client_name: str | None = None,
        allowed_origins: tuple[str, ...] = (),
        require_mfa: bool = False,
    ) -> str | None:
        """Registers a client; returns its secret (None for a public one)."""
        secret = None if public else new_secret()
        client = Client(
            client_id=client_id,
            secret_hash=hash_secret(secret) if secret else None,
            grant_types=grant_types,
            scopes=scopes,
            refresh_delivery=refresh_delivery,  # type: ignore[arg-type]
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris,
            client_name=client_name,
            allowed_origins=allowed_origins,
            require_mfa=require_mfa,
        )
        assert await self.services.clients.create(client, self.services.clock())
        return secret


@pytest.fixture
def registry(services: Services) -> Registry:
    return Registry(services)


@dataclass
class Login:
    access_token: str
    refresh_token: str
    body: dict[str, Any]


@pytest.fixture
async def spa(registry: Registry) -> str:
    """A first-party public client allowed the password grant; returns its client_id."""
    await registry.client(
        "spa", public=True, grant_types=("password", "refresh_token"), scopes=("profile", "admin")
    )
    return "spa"


async def password_login(
    http: httpx.AsyncClient,
    username: str = "alice",
    password: str = "correct horse",
    client_id: str = "spa",
    **extra: str,
) -> httpx.Response:
    """POST /token with the password grant, as the SPA's login form does."""
    return await http.post(
        "/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": password,
            "client_id": client_id,
            **extra,
        },
    )


@pytest.fixture
async def login(client: httpx.AsyncClient, registry: Registry, spa: str) -> Login:
    """alice, logged in through the spa client."""
    await registry.user("alice", "correct horse")
    response = await password_login(client, client_id=spa)
    assert response.status_code == 200, response.text
    body = response.json()
    return Login(body["access_token"], body["refresh_token"], body)
