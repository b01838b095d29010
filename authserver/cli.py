"""`authserver` command line: serve, migrate, purge, users, clients, sessions, audit, keys.

Every command reads the same settings as the server and, on bad input, exits non-zero with one
clear line per problem on stderr. The lifecycle commands run the admin API's use cases
(authserver/admin.py), audited with the actor `cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

from cryptography.exceptions import InvalidTag
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver import __version__, admin
from authserver.app import (
    KekMissing,
    SchemaNotReady,
    build_services,
    prepare_schema,
    refuse_a_missing_kek,
)
from authserver.audit import AuditQuery
from authserver.config import SIGNING_ALGS, Settings, SettingsError, load_settings
from authserver.db import migrate
from authserver.db.engine import make_engine
from authserver.db.keys import SqlKeyStore
from authserver.db.purge import purge
from authserver.errors import Conflict, NotFound, OAuthError, TemporarilyUnavailable
from authserver.keys.lifecycle import KeyNotReady
from authserver.keys.manager import reload_interval
from authserver.keys.records import public_record
from authserver.keys.sealing import decode_kek, read_kek_file
from authserver.services import Services
from authserver.telemetry import logs
from authserver.telemetry.logs import log_config

T = TypeVar("T")


CLI = "cli"  # the actor of every change made from the command line, in the audit trail

# Exit statuses scripts can rely on (also in `authserver --help` and docs/operators.md).
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4
EXIT_CODES = (
    "exit status: 0 done; 1 refused (bad input, database or key problem); 2 usage or settings; "
    "3 no such user, client or session; 4 conflict (the name or id is taken)"
)


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
    except (CommandError, SchemaNotReady, KekMissing) as exc:
        print(f"authserver: {exc}", file=sys.stderr)
        return 1
    except NotFound as exc:
        print(f"authserver: {exc.description}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except Conflict as exc:
        print(f"authserver: {exc.description}", file=sys.stderr)
        return EXIT_CONFLICT
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
    parser = argparse.ArgumentParser(
        prog="authserver", description=__doc__.splitlines()[0], epilog=EXIT_CODES
    )
    parser.add_argument("--version", action="version", version=f"authserver {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="default: AUTHSERVER_HOST, else 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: AUTHSERVER_PORT, else 8000")
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
    _user_lifecycle(users)

    clients = commands.add_parser("clients", help="manage clients").add_subparsers(
        required=True, metavar="ACTION"
    )
    create_client = clients.add_parser("create", help="register a client")
    create_client.add_argument("client_id")
    create_client.add_argument("--public", action="store_true", help="a client with no secret")
    create_client.add_argument("--grant", action="append", default=[], metavar="G")
    create_client.add_argument("--scope", action="append", default=[], metavar="S")
    create_client.add_argument("--refresh-delivery", choices=["body", "cookie"], default="body")
    create_client.add_argument(
        "--redirect-uri", action="append", default=[], metavar="URI", help="for /authorize"
    )
    create_client.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        default=[],
        metavar="URI",
        help="for /end-session",
    )
    create_client.set_defaults(run=_create_client)
    _client_lifecycle(clients)

    sessions = commands.add_parser("sessions", help="users' sessions").add_subparsers(
        required=True, metavar="ACTION"
    )
    revoke_session = _command(sessions, "revoke", "end one session (refresh-token family)")
    revoke_session.add_argument("sid", help="the session id (the access tokens' sid)")
    revoke_session.set_defaults(run=_revoke_session)

    audit = _command(commands, "audit", "read the audit trail, newest first")
    audit.add_argument("--user", metavar="SUB", help="only events about this user")
    audit.add_argument("--family", metavar="SID", help="only events about this session")
    audit.add_argument("--type", metavar="TYPE", help="only this event type, e.g. user.deleted")
    audit.add_argument("--limit", type=int, default=100, help="how many events (1-500)")
    audit.add_argument("--before", type=int, metavar="ID", help="events older than this id")
    _json_flag(audit)
    audit.set_defaults(run=_audit)

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


def _command(parent: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose --help shows each option's default."""
    command: argparse.ArgumentParser = parent.add_parser(
        name,
        help=help,
        description=help,
        epilog=EXIT_CODES,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    return command


def _json_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--json", action="store_true", help="one JSON object per line, for scripts"
    )


def _user_lifecycle(users: Any) -> None:
    listing = _command(users, "list", "list users by username")
    listing.add_argument("--username", default="", metavar="PREFIX", help="names starting so")
    listing.add_argument("--limit", type=int, default=admin.DEFAULT_PAGE, help="page size")
    listing.add_argument("--after", metavar="USERNAME", help="the page after this name")
    _json_flag(listing)
    listing.set_defaults(run=_list_users)

    show = _command(users, "show", "show one user")
    show.add_argument("user", help="a username or a sub")
    _json_flag(show)
    show.set_defaults(run=_show_user)

    change = _command(users, "update", "change a user's scopes, admin flag or state")
    change.add_argument("user", help="a username or a sub")
    change.add_argument(
        "--scope", action="append", metavar="S", help="the new scopes (repeat; replaces them)"
    )
    change.add_argument("--no-scopes", action="store_true", help="remove every scope")
    flags = change.add_mutually_exclusive_group()
    flags.add_argument("--admin", action="store_true", default=None, help="grant admin")
    flags.add_argument("--no-admin", dest="admin", action="store_false", help="take admin away")
    state = change.add_mutually_exclusive_group()
    state.add_argument(
        "--disable", dest="disabled", action="store_true", default=None,
        help="no more logins; every session ends",
    )  # fmt: skip
    state.add_argument("--enable", dest="disabled", action="store_false", help="re-enable")
    _json_flag(change)
    change.set_defaults(run=_update_user)

    password = _command(users, "set-password", "set a user's password (the password policy)")
    password.add_argument("user", help="a username or a sub")
    password.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin"
    )
    password.add_argument(
        "--keep-sessions", action="store_true", help="leave the user's sessions running"
    )
    password.set_defaults(run=_set_password)

    delete = _command(users, "delete", "delete a user: sessions end, the username is freed")
    delete.add_argument("user", help="a username or a sub")
    delete.set_defaults(run=_delete_user)

    sessions = _command(users, "sessions", "list a user's live sessions")
    sessions.add_argument("user", help="a username or a sub")
    _json_flag(sessions)
    sessions.set_defaults(run=_user_sessions)


def _client_lifecycle(clients: Any) -> None:
    listing = _command(clients, "list", "list clients by client_id")
    listing.add_argument("--limit", type=int, default=admin.DEFAULT_PAGE, help="page size")
    listing.add_argument("--after", metavar="CLIENT_ID", help="the page after this id")
    _json_flag(listing)
    listing.set_defaults(run=_list_clients)

    show = _command(clients, "show", "show one client (never its secret)")
    show.add_argument("client_id")
    _json_flag(show)
    show.set_defaults(run=_show_client)

    change = _command(clients, "update", "change a client's grants, scopes, delivery or state")
    change.add_argument("client_id")
    change.add_argument(
        "--grant", action="append", metavar="G",
        help="the new grant types (repeat; replaces them): password, refresh_token, "
        "client_credentials",
    )  # fmt: skip
    change.add_argument(
        "--scope", action="append", metavar="S", help="the new scopes (repeat; replaces them)"
    )
    change.add_argument("--no-scopes", action="store_true", help="remove every scope")
    change.add_argument(
        "--refresh-delivery", choices=["body", "cookie"], help="where refresh tokens go"
    )
    state = change.add_mutually_exclusive_group()
    state.add_argument(
        "--disable", dest="disabled", action="store_true", default=None,
        help="refuse the client; its sessions and access tokens end now",
    )  # fmt: skip
    state.add_argument(
        "--enable", dest="disabled", action="store_false", help="accept it again (no old token)"
    )
    _json_flag(change)
    change.set_defaults(run=_update_client)

    rotate = _command(clients, "rotate-secret", "give a confidential client a new secret")
    rotate.add_argument("client_id")
    rotate.add_argument(
        "--old-secret-ttl", type=int, default=admin.DEFAULT_OLD_SECRET_TTL, metavar="SECONDS",
        help="how long the old secret keeps working (0: not at all)",
    )  # fmt: skip
    rotate.set_defaults(run=_rotate_client_secret)

    delete = _command(clients, "delete", "delete a client: its sessions and tokens end")
    delete.add_argument("client_id")
    delete.set_defaults(run=_delete_client)


def _as_admin(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    """Runs one of the admin API's use cases, on the server's database and settings."""

    async def run(engine: AsyncEngine) -> T:
        await prepare_schema(engine)
        return await work(build_services(settings, engine))

    return _with_engine(settings, run)


def _print_rows(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """JSON lines with --json; else a table with one row per item (times in UTC)."""
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True, ensure_ascii=False))
        return
    cells = [[_cell(name, row.get(name)) for name in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    for line in [columns, *cells]:
        padded = (text.ljust(width) for text, width in zip(line, widths, strict=True))
        print("  ".join(padded).rstrip())


def _print_one(args: argparse.Namespace, item: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(item, sort_keys=True, ensure_ascii=False))
        return
    width = max(len(name) for name in item)
    for name, value in item.items():
        print(f"{name:<{width}}  {_cell(name, value)}")


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and (name.endswith("_at") or name == "at"):
        return _when(value)
    if isinstance(value, list):
        return " ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


USER_COLUMNS = ["sub", "username", "scopes", "admin", "disabled", "created_at", "last_login_at"]
CLIENT_COLUMNS = [
    "client_id", "public", "grant_types", "scopes", "refresh_delivery", "disabled",
    "created_at", "secret_rotated_at",
]  # fmt: skip
SESSION_COLUMNS = ["sid", "client_id", "created_at", "last_used_at", "expires_at", "user_agent"]
AUDIT_COLUMNS = ["id", "at", "actor", "type", "target", "user", "family", "detail"]


def _list_users(args: argparse.Namespace, settings: Settings) -> int:
    page = _as_admin(settings, lambda s: admin.list_users(s, args.limit, args.after, args.username))
    _print_rows(args, page.items, USER_COLUMNS)
    if page.next_after and not args.json:
        print(f"more: --after {page.next_after}", file=sys.stderr)
    return 0


def _show_user(args: argparse.Namespace, settings: Settings) -> int:
    async def show(services: Services) -> dict[str, Any]:
        return admin.user_view(await admin.find_user(services, args.user))

    _print_one(args, _as_admin(settings, show))
    return 0


def _update_user(args: argparse.Namespace, settings: Settings) -> int:
    body: dict[str, Any] = {}
    if args.scope is not None or args.no_scopes:
        body["scopes"] = args.scope or []
    if args.admin is not None:
        body["admin"] = args.admin
    if args.disabled is not None:
        body["disabled"] = args.disabled
    if not body:
        raise CommandError("nothing to change: give --scope, --admin, --disable or --enable")

    async def update(services: Services) -> dict[str, Any]:
        user = await admin.find_user(services, args.user)
        return await admin.update_user(services, CLI, user.id, body)

    _print_one(args, _as_admin(settings, update))
    return 0


def _set_password(args: argparse.Namespace, settings: Settings) -> int:
    if not args.password_stdin:
        raise CommandError("pass the password on stdin with --password-stdin")
    password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise CommandError("the password on stdin is empty")
    body = {"password": password, "revoke_sessions": not args.keep_sessions}

    async def set_it(services: Services) -> str:
        user = await admin.find_user(services, args.user)
        await admin.set_password(services, CLI, user.id, body)
        return user.username

    username = _as_admin(settings, set_it)
    ended = "its sessions kept" if args.keep_sessions else "every session ended"
    print(f"password of {username} set; {ended}", file=sys.stderr)
    return 0


def _delete_user(args: argparse.Namespace, settings: Settings) -> int:
    async def delete(services: Services) -> str:
        user = await admin.find_user(services, args.user)
        await admin.delete_user(services, CLI, user.id)
        return user.id

    sub = _as_admin(settings, delete)
    print(f"deleted user {sub}; its sessions ended and its username is free", file=sys.stderr)
    return 0


def _user_sessions(args: argparse.Namespace, settings: Settings) -> int:
    async def sessions(services: Services) -> list[dict[str, Any]]:
        user = await admin.find_user(services, args.user)
        return await admin.user_sessions(services, user.id)

    rows = [
        {k: v for k, v in row.items() if k != "current"} for row in _as_admin(settings, sessions)
    ]
    _print_rows(args, rows, SESSION_COLUMNS)
    return 0


def _revoke_session(args: argparse.Namespace, settings: Settings) -> int:
    _as_admin(settings, lambda s: admin.revoke_session(s, CLI, args.sid))
    print(f"revoked session {args.sid}", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.limit <= 500:
        raise CommandError("--limit must be from 1 to 500")
    query = AuditQuery(args.limit, args.before, args.user, args.family, args.type)

    async def page(services: Services) -> list[dict[str, Any]]:
        return [
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "type": e.action,
                "target": e.target,
                "user": e.user,
                "family": e.family,
                "detail": e.detail,
            }  # fmt: skip
            for e in await services.audit.page(query)
        ]

    _print_rows(args, _as_admin(settings, page), AUDIT_COLUMNS)
    return 0


def _list_clients(args: argparse.Namespace, settings: Settings) -> int:
    page = _as_admin(settings, lambda s: admin.list_clients(s, args.limit, args.after))
    _print_rows(args, page.items, CLIENT_COLUMNS)
    if page.next_after and not args.json:
        print(f"more: --after {page.next_after}", file=sys.stderr)
    return 0


def _show_client(args: argparse.Namespace, settings: Settings) -> int:
    _print_one(args, _as_admin(settings, lambda s: admin.show_client(s, args.client_id)))
    return 0


def _update_client(args: argparse.Namespace, settings: Settings) -> int:
    body: dict[str, Any] = {}
    if args.grant is not None:
        body["grant_types"] = args.grant
    if args.scope is not None or args.no_scopes:
        body["scopes"] = args.scope or []
    if args.refresh_delivery is not None:
        body["refresh_delivery"] = args.refresh_delivery
    if args.disabled is not None:
        body["disabled"] = args.disabled
    if not body:
        raise CommandError(
            "nothing to change: give --grant, --scope, --refresh-delivery, --disable or --enable"
        )
    updated = _as_admin(settings, lambda s: admin.update_client(s, CLI, args.client_id, body))
    _print_one(args, updated)
    return 0


def _rotate_client_secret(args: argparse.Namespace, settings: Settings) -> int:
    body = {"old_secret_ttl": args.old_secret_ttl}
    rotated = _as_admin(
        settings, lambda s: admin.rotate_client_secret(s, CLI, args.client_id, body)
    )
    print(
        f"rotated the secret of {args.client_id}; the old one works until "
        f"{_when(rotated.old_secret_expires_at)} UTC. The new one, shown only now, is on stdout",
        file=sys.stderr,
    )
    print(rotated.client_secret)
    return 0


def _delete_client(args: argparse.Namespace, settings: Settings) -> int:
    _as_admin(settings, lambda s: admin.delete_client(s, CLI, args.client_id))
    print(
        f"deleted client {args.client_id}; its sessions and access tokens are revoked",
        file=sys.stderr,
    )
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from authserver.http.server import protocol, raise_open_files_limit
    from authserver.keys.epoch import shared_epoch
    from authserver.telemetry.multiprocess import shared_directory

    host = settings.host if args.host is None else args.host
    port = settings.port if args.port is None else args.port
    if not os.environ.get("AUTHSERVER_ISSUER", "").strip():
        # Unset, the issuer follows the address bound, not a default port nobody listens on;
        # the workers read their settings from the environment, so it goes there too.
        settings = replace(settings, issuer=bound_issuer(host, port))
        os.environ["AUTHSERVER_ISSUER"] = settings.issuer

    async def check(engine: AsyncEngine) -> tuple[str, str]:
        # Once, before any worker starts: migrate (SQLite) or check the schema (Postgres), and
        # open the signing keys (made here on first start), so a wrong KEK is one line, not a
        # traceback from every worker.
        await prepare_schema(engine)
        keys = build_services(settings, engine).keys
        await keys.start()
        return keys.ring.signing.kid, keys.ring.signing.alg

    kid, alg = _with_engine(settings, check)
    logs.configure(args.log_level)
    # One line that says what this server is: what an operator checks first after a deploy.
    logging.getLogger("authserver.serve").info(
        "serving %s on %s:%s",
        settings.issuer,
        host,
        port,
        extra={
            "issuer": settings.issuer,
            "database": database_for_humans(settings.database_url),
            "kid": kid,
            "alg": alg,
            "workers": args.workers,
        },
    )
    # Every connection is a file descriptor: take all the OS allows (the workers inherit it),
    # and cap connections below it (AUTHSERVER_MAX_CONNECTIONS, http/server.py).
    open_files = raise_open_files_limit()
    # Several workers share their metrics and the key epoch (a key changed in one reloads the
    # others before they sign again) through files; set up before uvicorn spawns them.
    with shared_directory(args.workers), shared_epoch(args.workers):
        uvicorn.run(
            "authserver.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
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
    _with_engine(replace(settings, database_url=direct), migrate.upgrade, keys=False)
    print(f"database is at revision {migrate.head_revision()}", file=sys.stderr)
    return 0


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    async def run(engine: AsyncEngine) -> str:
        await prepare_schema(engine)
        purged = await purge(engine, settings, int(time.time()))
        return "skipped: another instance is purging" if purged is None else f"purged {purged}"

    print(_with_engine(settings, run, keys=False), file=sys.stderr)
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
        "redirect_uris": args.redirect_uri,
        "post_logout_redirect_uris": args.post_logout_redirect_uri,
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


def bound_issuer(host: str, port: int) -> str:
    """The issuer of a server listening on host:port; a wildcard address is not one a client
    can call, so loopback stands in for it."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"http://{host}:{port}"
    if address.is_unspecified:
        return f"http://127.0.0.1:{port}"
    return f"http://[{address}]:{port}" if address.version == 6 else f"http://{address}:{port}"


def database_for_humans(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _connect_or_explain(engine: AsyncEngine, settings: Settings) -> None:
    """Opens one connection; on failure a CommandError naming the setting and the host (the
    driver alone says "[Errno -2] Name or service not known" and nothing of where)."""
    try:
        async with engine.connect():
            pass
    except (OSError, DBAPIError) as exc:
        driver_error: BaseException = exc
        if isinstance(exc, DBAPIError):
            driver_error = (exc.orig.__cause__ if exc.orig else None) or exc.orig or exc
        problem = str(driver_error).strip().partition("\n")[0] or type(driver_error).__name__
        url = make_url(settings.database_url)
        if url.get_backend_name() == "sqlite":
            where = f"cannot open the SQLite database {url.database}"
        else:
            where = (
                f"cannot connect to {url.host or 'localhost'}:{url.port or 5432} "
                f"(database {url.database}, user {url.username})"
            )
        raise CommandError(f"AUTHSERVER_DATABASE_URL: {where}: {problem}") from None


def _with_engine(
    settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]], *, keys: bool = True
) -> T:
    """Runs `work` with an engine; `keys`: the work opens the signing keys."""

    async def run() -> T:
        engine = make_engine(settings)
        try:
            await _connect_or_explain(engine, settings)
            if keys:
                await refuse_a_missing_kek(settings, engine)
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())
