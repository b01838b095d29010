"""`authserver` command line: serve, migrate, purge, users, clients, keys.

Every command reads the same settings as the server and, on bad input, exits non-zero with one
clear line per problem on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar, cast

from cryptography.exceptions import InvalidTag
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver import __version__, admin
from authserver.app import SchemaNotReady, build_services, prepare_schema
from authserver.config import SIGNING_ALGS, Settings, SettingsError, load_settings
from authserver.db import migrate
from authserver.db.engine import make_engine
from authserver.db.keys import SqlKeyStore
from authserver.db.purge import purge
from authserver.errors import OAuthError, TemporarilyUnavailable
from authserver.keys.lifecycle import KeyNotReady
from authserver.keys.manager import reload_interval
from authserver.keys.records import public_record
from authserver.keys.sealing import decode_kek, read_kek_file
from authserver.telemetry.logs import log_config

T = TypeVar("T")


CLI = "cli"  # the actor of every change made from the command line, in the audit trail


class CommandError(Exception):
    """A problem to report as one line, exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(_kid_as_operand(list(sys.argv[1:] if argv is None else argv)))
    try:
        settings = load_settings()
        return int(args.run(args, settings) or 0)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"authserver: {problem}", file=sys.stderr)
        return 2
    except (CommandError, SchemaNotReady) as exc:
        print(f"authserver: {exc}", file=sys.stderr)
        return 1
    except TemporarilyUnavailable as exc:  # the operator needs the driver's words here
        print(
            f"authserver: AUTHSERVER_DATABASE_URL: {exc.detail or exc.description}", file=sys.stderr
        )
        return 1
    except OAuthError as exc:
        print(f"authserver: {exc.description}", file=sys.stderr)
        return 1
    except OSError as exc:  # database unreachable, key file unreadable, ...
        print(f"authserver: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:  # no such database or file, login refused, ...: the driver's words
        # asyncpg's own error sits under SQLAlchemy's adapter; only its first line is the problem.
        driver_error = (exc.orig.__cause__ if exc.orig is not None else None) or exc.orig or exc
        problem = str(driver_error).strip().partition("\n")[0] or type(driver_error).__name__
        print(f"authserver: AUTHSERVER_DATABASE_URL: {problem}", file=sys.stderr)
        return 1
    except InvalidTag:  # AES-GCM: the signing keys were sealed under another KEK
        print(
            "authserver: the signing keys cannot be decrypted: AUTHSERVER_KEY_ENCRYPTION_KEY "
            "(or the kek file in AUTHSERVER_KEYS_DIR) is not the key they were sealed with",
            file=sys.stderr,
        )
        return 1


def _kid_as_operand(argv: list[str]) -> list[str]:
    """A kid is base64url and may begin with "-", which argparse would take for an option:
    `keys revoke -abc…` means the key -abc…, not a flag."""
    if len(argv) == 3 and argv[:2] == ["keys", "revoke"] and argv[2] not in ("-h", "--help"):
        return [*argv[:2], "--", argv[2]]
    return argv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authserver", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"authserver {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--http",
        default="auto",
        choices=["auto", "h11", "httptools"],
        help="HTTP/1.1 parser (auto: httptools when installed, else h11)",
    )
    serve.set_defaults(run=_serve)

    migrate_help = "bring the database schema to the latest version"
    commands.add_parser("migrate", help=migrate_help).set_defaults(run=_migrate)

    purge_help = "delete expired sessions, denylist entries, throttle counters and old audit"
    commands.add_parser("purge", help=purge_help).set_defaults(run=_purge)

    users = commands.add_parser("users", help="manage users").add_subparsers(
        required=True, metavar="ACTION"
    )
    create_user = users.add_parser("create", help="create a user")
    create_user.add_argument("username")
    create_user.add_argument("--admin", action="store_true", help="grant the admin scope")
    create_user.add_argument("--scope", action="append", default=[], metavar="S")
    create_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin"
    )
    create_user.set_defaults(run=_create_user)

    clients = commands.add_parser("clients", help="manage clients").add_subparsers(
        required=True, metavar="ACTION"
    )
    create_client = clients.add_parser("create", help="register a client")
    create_client.add_argument("client_id")
    create_client.add_argument("--public", action="store_true", help="a client with no secret")
    create_client.add_argument("--grant", action="append", default=[], metavar="G")
    create_client.add_argument("--scope", action="append", default=[], metavar="S")
    create_client.add_argument("--refresh-delivery", choices=["body", "cookie"], default="body")
    create_client.set_defaults(run=_create_client)

    keys = commands.add_parser("keys", help="signing keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    keys.add_parser("list", help="list every signing key").set_defaults(run=_list_keys)
    rotate = keys.add_parser("rotate", help="promote the next key and publish a new one")
    rotate.add_argument("--alg", choices=list(SIGNING_ALGS), help="for the new next key")
    rotate.add_argument(
        "--force", action="store_true", help="promote a next key verifiers may not know yet"
    )
    rotate.set_defaults(run=_rotate_keys)
    revoke = keys.add_parser("revoke", help="withdraw a key at once (compromise)")
    revoke.add_argument("kid")
    revoke.set_defaults(run=_revoke_key)
    rewrap = keys.add_parser(
        "rewrap",
        help="re-encrypt every private key under a new KEK (AUTHSERVER_NEW_KEY_ENCRYPTION_KEY)",
    )
    rewrap.add_argument(
        "--new-kek-file", type=Path, help="read the new KEK (base64, mode 0600) from this file"
    )
    rewrap.set_defaults(run=_rewrap_keys)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from authserver.http.server import protocol, raise_open_files_limit
    from authserver.keys.epoch import shared_epoch
    from authserver.telemetry.multiprocess import shared_directory

    async def check(engine: AsyncEngine) -> None:
        # Once, before any worker starts: migrate (SQLite) or check the schema (Postgres), and
        # open the signing keys (made here on first start), so a wrong KEK is one line, not a
        # traceback from every worker.
        await prepare_schema(engine)
        await build_services(settings, engine).keys.start()

    _with_engine(settings, check)
    # Every connection is a file descriptor: take all the OS allows (the workers inherit it),
    # and cap connections below it (AUTHSERVER_MAX_CONNECTIONS, http/server.py).
    open_files = raise_open_files_limit()
    # Several workers share their metrics and the key epoch (a key changed in one reloads the
    # others before they sign again) through files; set up before uvicorn spawns them.
    with shared_directory(args.workers), shared_epoch(args.workers):
        uvicorn.run(
            "authserver.app:app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            # uvicorn's protocols with time and size bounds on requests and a connection cap
            # (http/server.py); uvicorn calls it as it would a protocol class.
            http=cast("type[asyncio.Protocol]", protocol(args.http, settings, open_files)),
            proxy_headers=False,
            server_header=False,
            # JSON lines on stderr, one per request, from authserver.logs; uvicorn's own access
            # log is off: ours replaces it, and it would print query strings.
            log_config=log_config(args.log_level),
            access_log=False,
            # On SIGTERM, requests in flight get this long to finish; then they are closed.
            timeout_graceful_shutdown=settings.shutdown_timeout,
        )
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    # Straight to Postgres, never through a transaction pooler: the lock that lets every
    # replica migrate at once is held by one session across several transactions.
    direct = settings.database_direct_url or settings.database_url
    _with_engine(replace(settings, database_url=direct), migrate.upgrade)
    print(f"database is at revision {migrate.head_revision()}", file=sys.stderr)
    return 0


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    async def run(engine: AsyncEngine) -> str:
        await prepare_schema(engine)
        purged = await purge(engine, settings, int(time.time()))
        return "skipped: another instance is purging" if purged is None else f"purged {purged}"

    print(_with_engine(settings, run), file=sys.stderr)
    return 0


def _create_user(args: argparse.Namespace, settings: Settings) -> int:
    if not args.password_stdin:
        raise CommandError("pass the password on stdin with --password-stdin")
    password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise CommandError("the password on stdin is empty")
    body = {"username": args.username, "password": password, "scopes": args.scope}
    body["admin"] = args.admin

    async def create(engine: AsyncEngine) -> admin.CreatedUser:
        await prepare_schema(engine)
        # The admin API's use case: the same input rules, and audited with the actor `cli`.
        return await admin.create_user(build_services(settings, engine), CLI, body)

    print(_with_engine(settings, create).sub)
    return 0


def _create_client(args: argparse.Namespace, settings: Settings) -> int:
    body = {
        "client_id": args.client_id,
        "public": args.public,
        "grant_types": args.grant or [],
        "scopes": args.scope,
        "refresh_delivery": args.refresh_delivery,
    }

    async def create(engine: AsyncEngine) -> admin.CreatedClient:
        await prepare_schema(engine)
        return await admin.create_client(build_services(settings, engine), CLI, body)

    created = _with_engine(settings, create)
    client, secret = created.client, created.secret
    kind = "public" if args.public else "confidential"
    grants_text = " ".join(client.grant_types)
    print(f"created {kind} client {args.client_id} ({grants_text})", file=sys.stderr)
    if secret:
        print("its secret, shown only now, is on the next line of stdout", file=sys.stderr)
        print(secret)
    return 0


def _list_keys(args: argparse.Namespace, settings: Settings) -> int:
    async def records(engine: AsyncEngine) -> list[dict[str, object]]:
        await prepare_schema(engine)
        services = build_services(settings, engine)
        await services.keys.start()  # a fresh install gets its first keys here too
        return [public_record(r) for r in await SqlKeyStore(engine).all()]

    rows = _with_engine(settings, records)
    print(f"{'kid':<44} {'alg':<6} {'state':<8} {'created':<20} {'activated':<20} retired")
    for row in rows:
        print(
            f"{row['kid']!s:<44} {row['alg']!s:<6} {row['state']!s:<8} "
            f"{_when(row['created_at']):<20} {_when(row['activated_at']):<20} "
            f"{_when(row['retired_at'])}"
        )
    return 0


def _rotate_keys(args: argparse.Namespace, settings: Settings) -> int:
    async def rotate(engine: AsyncEngine) -> None:
        await prepare_schema(engine)
        keys = build_services(settings, engine).keys
        await keys.start()
        await keys.rotate(CLI, alg=args.alg, force=args.force)

    try:
        _with_engine(settings, rotate)
    except KeyNotReady as exc:
        raise CommandError(
            f"the next key is not ready: verifiers may not know it for {exc.retry_after} s "
            "more; retry then, or pass --force"
        ) from None
    print(
        f"rotated; running servers sign with the new key within {reload_interval(settings)} s",
        file=sys.stderr,
    )
    return _list_keys(args, settings)


def _revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    async def revoke(engine: AsyncEngine) -> None:
        await prepare_schema(engine)
        keys = build_services(settings, engine).keys
        await keys.start()
        await keys.revoke(args.kid, CLI)

    _with_engine(settings, revoke)
    print(
        f"revoked {args.kid}; its tokens are refused at once, and running servers drop it "
        f"from the JWKS within {reload_interval(settings)} s",
        file=sys.stderr,
    )
    return _list_keys(args, settings)


def _rewrap_keys(args: argparse.Namespace, settings: Settings) -> int:
    if args.new_kek_file is not None:
        new_kek = read_kek_file(args.new_kek_file)
    else:
        raw = os.environ.get("AUTHSERVER_NEW_KEY_ENCRYPTION_KEY")
        if not raw:
            raise CommandError(
                "give the new KEK in AUTHSERVER_NEW_KEY_ENCRYPTION_KEY or --new-kek-file"
            )
        try:
            new_kek = decode_kek(raw.encode())
        except ValueError as exc:
            raise CommandError(f"AUTHSERVER_NEW_KEY_ENCRYPTION_KEY: {exc}") from None

    async def rewrap(engine: AsyncEngine) -> int:
        await prepare_schema(engine)
        return await build_services(settings, engine).keys.rewrap(new_kek, CLI)

    try:
        count = _with_engine(settings, rewrap)
    except InvalidTag:
        raise CommandError(
            "a signing key opens under none of AUTHSERVER_KEY_ENCRYPTION_KEY (or the kek file), "
            "AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS and the new KEK; nothing was changed"
        ) from None
    where = (
        "AUTHSERVER_KEY_ENCRYPTION_KEY"
        if settings.key_encryption_key is not None
        else f"the kek file in {settings.keys_dir} (or AUTHSERVER_KEY_ENCRYPTION_KEY)"
    )
    print(
        f"rewrapped {count} signing keys under the new KEK, in one transaction.\n"
        f"Every instance must now run with {where} set to the new KEK; restart any that still "
        "have only the old one with the new KEK there and the old one in "
        "AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS (running instances keep the keys they loaded).\n"
        "Once all do, unset AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS and destroy the old KEK.",
        file=sys.stderr,
    )
    return 0


def _when(epoch: object) -> str:
    if not isinstance(epoch, int):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def _with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = make_engine(settings)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())
