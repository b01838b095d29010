"""The composition root for the HTTP server: settings → engine → stores → services → routes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware

from authserver.accounts.passwords import Passwords
from authserver.actions import password_reset
from authserver.actions.console.client import register_console_client
from authserver.clients import CachedClients
from authserver.config import Settings, load_settings
from authserver.db import migrate
from authserver.db.accounts import SqlClientStore, SqlUserStore
from authserver.db.audit import SqlAuditLog
from authserver.db.codes import SqlCodeStore
from authserver.db.consents import SqlConsentStore
from authserver.db.console_sessions import SqlConsoleSessionStore
from authserver.db.denylist import SqlDenylist
from authserver.db.dpop import SqlProofStore
from authserver.db.engine import is_postgres, make_engine, ping
from authserver.db.failures import fail_closed
from authserver.db.families import SqlFamilyStore
from authserver.db.keys import SqlKeyStore
from authserver.db.links import SqlLinkStore
from authserver.db.login_sessions import SqlLoginSessionStore
from authserver.db.notify import Reactions, listen_for_changes
from authserver.db.outbox import SqlOutbox
from authserver.db.page_limits import SqlPageLimitStore
from authserver.db.passkeys import SqlPasskeyStore
from authserver.db.pending_sign_ins import SqlPendingSignInStore
from authserver.db.purge import purge_periodically
from authserver.db.registration import SqlRegistrationStore
from authserver.db.resources import SqlResourceStore
from authserver.db.second_factors import SqlSecondFactorStore
from authserver.db.throttle import SqlThrottleStore
from authserver.http.cors import cors_middleware
from authserver.http.dpop_nonce import DPoPNonceHeader
from authserver.http.errors import HANDLERS
from authserver.http.fast_path import HotRoutes, JwksShortcut
from authserver.http.headers import security_headers
from authserver.http.observe import Observe
from authserver.http.params import StorableParams
from authserver.http.routes import routes
from authserver.http.server import BodyDeadline
from authserver.i18n import translations
from authserver.keys.epoch import KeyEpoch, epoch_from_environment
from authserver.keys.manager import SigningKeys
from authserver.keys.sealing import derived_keys, key_sealer
from authserver.mail.compose import NoOutbox
from authserver.mail.sender import MailSender, NudgingOutbox
from authserver.services import Services, wall_clock
from authserver.telemetry import logs
from authserver.telemetry.metrics import (
    observed_codes,
    observed_families,
    observed_keys,
    observed_login_sessions,
    observed_mail,
)
from authserver.tokens.dpop import Nonces


class SchemaNotReady(RuntimeError):
    pass


class KekMissing(RuntimeError):
    """The database holds sealed keys, and no KEK is set or in its file."""


async def refuse_a_missing_kek(settings: Settings, engine: AsyncEngine) -> None:
    """With no KEK set and no kek file, opening the keys would make a new KEK file and then
    fail to open the keys the database holds: say what is missing instead, and write nothing."""
    kek_file = Path(settings.keys_dir) / "kek"
    if settings.key_encryption_key is not None or kek_file.exists():
        return
    try:
        count = len(await SqlKeyStore(engine).all())
    except DBAPIError:  # no schema yet: a first start, which makes its KEK
        return
    if count:
        raise KekMissing(
            f"the database holds {count} signing keys sealed under a key-encryption key, but "
            f"AUTHSERVER_KEY_ENCRYPTION_KEY is not set and {kek_file} does not exist: set "
            "AUTHSERVER_KEY_ENCRYPTION_KEY (or _FILE) to the KEK they were sealed with, or "
            "AUTHSERVER_KEYS_DIR to the folder of its kek file"
        )


def build_services(
    settings: Settings,
    engine: AsyncEngine,
    clock: Callable[[], int] = wall_clock,
    key_epoch: KeyEpoch | None = None,
) -> Services:
    sealer = key_sealer(settings)
    key_store = observed_keys(fail_closed(SqlKeyStore(engine)))
    return Services(
        settings=settings,
        # fail_closed: a database outage reaches the use cases as TemporarilyUnavailable (503).
        users=fail_closed(SqlUserStore(engine)),
        # Remembered for 5 s: one lookup per client, not per request (clients.CachedClients).
        clients=CachedClients(fail_closed(SqlClientStore(engine)), clock),
        families=observed_families(fail_closed(SqlFamilyStore(engine))),
        denylist=fail_closed(SqlDenylist(engine)),
        # key_epoch: shared by the workers of one `serve` (keys/epoch.py); else this process's.
        keys=SigningKeys(key_store, sealer, settings, clock, key_epoch),
        passwords=Passwords(settings),
        audit=fail_closed(SqlAuditLog(engine)),
        throttle=fail_closed(SqlThrottleStore(engine)),
        login_sessions=observed_login_sessions(fail_closed(SqlLoginSessionStore(engine))),
        codes=observed_codes(fail_closed(SqlCodeStore(engine))),
        second_factors=fail_closed(SqlSecondFactorStore(engine)),
        pending_sign_ins=fail_closed(SqlPendingSignInStore(engine)),
        factor_sealer=sealer,
        links=fail_closed(SqlLinkStore(engine)),
        page_limits=fail_closed(SqlPageLimitStore(engine)),
        passkeys=fail_closed(SqlPasskeyStore(engine)),
        resources=fail_closed(SqlResourceStore(engine)),
        registrations=fail_closed(SqlRegistrationStore(engine)),
        consents=fail_closed(SqlConsentStore(engine)),
        console_sessions=fail_closed(SqlConsoleSessionStore(engine)),
        clock=clock,
        csrf_keys=derived_keys(sealer, b"authserver csrf token"),
        outbox=fail_closed(SqlOutbox(engine)) if settings.mail_enabled else NoOutbox(),
        dpop_proofs=fail_closed(SqlProofStore(engine)),
        dpop_nonces=(
            Nonces(derived_keys(sealer, b"authserver dpop nonce"))
            if settings.dpop_nonce == "on"
            else None
        ),
    )


def mail_sender(settings: Settings, engine: AsyncEngine, clock: Callable[[], int]) -> MailSender:
    """The sender that drains the outbox (mail/sender.py); only with mail on."""
    assert settings.smtp_url is not None and settings.mail_from is not None
    queue = observed_mail(fail_closed(SqlOutbox(engine)))
    return MailSender(queue, settings.smtp_url, settings.mail_from, clock)


async def prepare_schema(engine: AsyncEngine) -> None:
    """The embedded SQLite default migrates itself; Postgres must be migrated by the operator
    (`authserver migrate`), once, before any replica serves."""
    current, head = await migrate.current_revision(engine), migrate.head_revision()
    if engine.dialect.name == "sqlite":
        if current != head:  # alembic's own run costs more than this check, at every start
            await migrate.upgrade(engine)
        return
    if current != head:
        raise SchemaNotReady(
            f"the database schema is at {current or 'nothing'}, not {head}: "
            "run `authserver migrate` first"
        )


def _reactions(services: Services) -> Reactions:
    """What this process does when it hears of a change made elsewhere (db/notify.py)."""
    keys, clients = services.keys, services.clients

    def client_changed(client_id: str | None) -> None:
        if isinstance(clients, CachedClients):  # the only store here that remembers
            clients.forget(client_id)

    def anything_changed() -> None:
        keys.changed_elsewhere()
        client_changed(None)

    return Reactions(keys.changed_elsewhere, client_changed, anything_changed)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], int] = wall_clock,
    key_epoch: KeyEpoch | None = None,
    freeze_start_up: bool = False,
) -> Starlette:
    """`freeze_start_up`: once started, take what start-up made out of the garbage collector's
    reach (`freeze_heap`); for a serving process, not for a test that builds many apps."""
    settings = settings or load_settings()
    tracing = None
    if settings.tracing == "otlp":  # else not even imported: off costs nothing
        from authserver.telemetry.tracing import TracedRequests, Tracing

        tracing = Tracing(settings.tracing_sample_ratio)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = make_engine(settings)
        if tracing is not None:
            # Here, in the process that serves (each worker of `serve --workers N`): the
            # exporter's thread is this process's own.
            from authserver.db.statement_spans import trace_statements

            trace_statements(engine.sync_engine, tracing.tracer)
            tracing.start()
            app.state.tracing = tracing
        app.state.engine = engine  # for tests/http/test_tracing.py: what is listening on it
        try:
            await prepare_schema(engine)
            await refuse_a_missing_kek(settings, engine)
            services = build_services(settings, engine, clock, key_epoch)
            async with anyio.create_task_group() as background:
                if is_postgres(engine):
                    # Hears at once of key and client changes other instances make
                    # (db/notify.py); listening before the keys load, so none falls between.
                    await background.start(
                        listen_for_changes,
                        engine,
                        settings.database_direct_url or settings.database_url,
                        _reactions(services),
                    )
                await services.keys.start()
                await services.passwords.prepare()
                # The admin console's own client, its redirect URI this issuer's.
                await register_console_client(services)
                # The pages' message catalogs, read now rather than by the first page.
                translations.languages(settings.templates_dir)

                async def readiness() -> None:
                    await ping(engine)
                    if not services.keys.loaded:
                        raise LookupError("no active signing key loaded")

                app.state.services = services
                app.state.readiness = readiness
                # Picks up key changes unheard of (bound: signing.reload_interval).
                background.start_soon(services.keys.keep_fresh)
                # Cleanup every AUTHSERVER_PURGE_INTERVAL s; one instance at a time (db/purge.py).
                background.start_soon(purge_periodically, engine, settings, clock)
                if settings.key_rotation_interval:
                    background.start_soon(services.keys.rotate_on_schedule)
                if settings.mail_enabled:
                    # Drains the outbox: every instance and worker does, claims keep each
                    # mail to one sender (mail/sender.py); a mail queued here wakes it.
                    sender = mail_sender(settings, engine, clock)
                    services.outbox = NudgingOutbox(services.outbox, sender)
                    background.start_soon(sender.run)
                    # Reset requests become links and mail off the request path.
                    resolver = password_reset.Resolver(services)
                    services.wake_resolver = resolver.wake
                    background.start_soon(resolver.run)
                if freeze_start_up:
                    freeze_heap()
                yield
                background.cancel_scope.cancel()
        finally:
            await engine.dispose()
            if tracing is not None:
                tracing.stop()
            logs.flush_handlers()  # the access lines of the last requests (telemetry/logs.py)

    # Outermost first. Observe (access log, request id, metrics, security headers) times and
    # sees everything else, CORS preflights and its own 500 answer included; so it logs the
    # 408 of a body that did not arrive in time (BodyDeadline).
    middleware = [
        Middleware(Observe, headers=security_headers(settings)),
        # Every path and query value storable (NUL: a 500 on Postgres), for every route.
        Middleware(StorableParams),
        Middleware(JwksShortcut, routes=routes),
        Middleware(BodyDeadline, seconds=settings.body_timeout),
        # Outside HotRoutes, which answers /token itself; only with nonces on.
        *([Middleware(DPoPNonceHeader)] if settings.dpop_nonce == "on" else []),
        Middleware(HotRoutes, routes=routes),
        cors_middleware(settings),
    ]
    if tracing is not None:
        # Outermost: the request's span covers all of it, Observe's own 500 included.
        middleware.insert(0, Middleware(TracedRequests, tracer=tracing.tracer))
    app = Starlette(
        routes=routes, exception_handlers=HANDLERS, lifespan=lifespan, middleware=middleware
    )
    # No "/token/" -> "/token" redirect: its Location is built from the Host header, and a
    # client following a 307 re-posts its credentials there. Such paths are a plain 404.
    app.router.redirect_slashes = False
    return app


def app_from_environment() -> Starlette:
    """The factory uvicorn calls in each worker (`authserver serve`)."""
    logs.skip_unused_record_fields()
    return create_app(load_settings(), key_epoch=epoch_from_environment(), freeze_start_up=True)


def freeze_heap() -> None:
    """What start-up made (modules, routes, settings, keys, caches) lives as long as the
    process: moved out of the collector's generations, it is no longer walked by every full
    collection, which then costs what the requests' own objects cost (bench/RESULTS.md, "Tracing:
    the unsampled request and gc.freeze"). Frozen objects are still freed when their last
    reference goes; only a frozen reference cycle dropped later stays, at most what start-up
    made."""
    gc.collect()  # start-up's garbage first: frozen, it would stay
    gc.freeze()
