"""The composition root for the HTTP server: settings → engine → stores → services → routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.config import Settings, load_settings
from authserver.db import migrate
from authserver.db.engine import make_engine
from authserver.db.stores import SqlClientStore, SqlKeyStore, SqlSessionStore, SqlUserStore, ping
from authserver.http.errors import HANDLERS
from authserver.http.routes import routes
from authserver.keys import KeySealer, key_encryption_key
from authserver.passwords import Passwords
from authserver.services import Services, wall_clock
from authserver.signing import SigningKeys


class SchemaNotReady(RuntimeError):
    pass


def build_services(
    settings: Settings, engine: AsyncEngine, clock: Callable[[], int] = wall_clock
) -> Services:
    sealer = KeySealer(key_encryption_key(settings))
    return Services(
        settings=settings,
        users=SqlUserStore(engine),
        clients=SqlClientStore(engine),
        sessions=SqlSessionStore(engine),
        keys=SigningKeys(SqlKeyStore(engine), sealer, settings, clock),
        passwords=Passwords(settings),
        clock=clock,
    )


async def prepare_schema(engine: AsyncEngine) -> None:
    """The embedded SQLite default migrates itself; Postgres must be migrated by the operator
    (`authserver migrate`), once, before any replica serves."""
    if engine.dialect.name == "sqlite":
        await migrate.upgrade(engine)
        return
    current, head = await migrate.current_revision(engine), migrate.head_revision()
    if current != head:
        raise SchemaNotReady(
            f"the database schema is at {current or 'nothing'}, not {head}: "
            "run `authserver migrate` first"
        )


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], int] = wall_clock
) -> Starlette:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = make_engine(settings)
        try:
            await prepare_schema(engine)
            services = build_services(settings, engine, clock)
            await services.keys.start()
            await services.passwords.prepare()

            async def readiness() -> None:
                await ping(engine)
                if not services.keys.loaded:
                    raise LookupError("no active signing key loaded")

            app.state.services = services
            app.state.readiness = readiness
            yield
        finally:
            await engine.dispose()

    return Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan)


def app_from_environment() -> Starlette:
    """The factory uvicorn calls in each worker (`authserver serve`)."""
    return create_app(load_settings())
