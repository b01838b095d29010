"""`authserver` command line: serve, migrate, purge, users, clients, sessions, audit, keys, mail.

Every command reads the same settings as the server and, on bad input, exits non-zero with one
clear line per problem on stderr. The lifecycle commands (and `resources`, the RFC 8707 resource
servers) run the admin API's use cases (authserver/actions/admin/), audited with the actor `cli`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from sqlalchemy.exc import DBAPIError

from authserver import __version__
from authserver.app import KekMissing, SchemaNotReady
from authserver.cli.audit import add_audit_command
from authserver.cli.clients import add_client_lifecycle, add_create_client, add_registration_flags
from authserver.cli.common import EXIT_CODES, CommandError, add_command, add_json_flag
from authserver.cli.keys import add_list_keys, add_revoke_key, add_rewrap_keys, add_rotate_keys
from authserver.cli.mail import add_mail_test
from authserver.cli.resources import add_resources_command
from authserver.cli.server import add_migrate, add_purge, add_serve
from authserver.cli.sessions import add_revoke_session
from authserver.cli.users import add_create_user, add_profile_flags, add_user_lifecycle
from authserver.config import SIGNING_ALGS, SettingsError, load_settings
from authserver.errors import Conflict, NotFound, OAuthError, TemporarilyUnavailable

# Exit statuses scripts can rely on (also in `authserver --help` and docs/operators.md).
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4


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
    serve.set_defaults(run=add_serve)

    migrate_help = "bring the database schema to the latest version"
    commands.add_parser("migrate", help=migrate_help).set_defaults(run=add_migrate)

    purge_help = "delete expired sessions, denylist entries, throttle counters and old audit"
    commands.add_parser("purge", help=purge_help).set_defaults(run=add_purge)

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
    add_profile_flags(create_user)
    create_user.set_defaults(run=add_create_user)
    add_user_lifecycle(users)

    clients = commands.add_parser("clients", help="manage clients").add_subparsers(
        required=True, metavar="ACTION"
    )
    create_client = clients.add_parser("create", help="register a client")
    create_client.add_argument("client_id")
    create_client.add_argument("--public", action="store_true", help="a client with no secret")
    create_client.add_argument("--grant", action="append", default=[], metavar="G")
    create_client.add_argument("--scope", action="append", default=[], metavar="S")
    create_client.add_argument("--refresh-delivery", choices=["body", "cookie"], default="body")
    add_registration_flags(create_client)
    create_client.set_defaults(run=add_create_client)
    add_client_lifecycle(clients)

    add_resources_command(commands)

    sessions = commands.add_parser("sessions", help="users' sessions").add_subparsers(
        required=True, metavar="ACTION"
    )
    revoke_session = add_command(sessions, "revoke", "end one session (refresh-token family)")
    revoke_session.add_argument("sid", help="the session id (the access tokens' sid)")
    revoke_session.set_defaults(run=add_revoke_session)

    audit = add_command(commands, "audit", "read the audit trail, newest first")
    audit.add_argument("--user", metavar="SUB", help="only events about this user")
    audit.add_argument("--family", metavar="SID", help="only events about this session")
    audit.add_argument("--type", metavar="TYPE", help="only this event type, e.g. user.deleted")
    audit.add_argument("--limit", type=int, default=100, help="how many events (1-500)")
    audit.add_argument("--before", type=int, metavar="ID", help="events older than this id")
    add_json_flag(audit)
    audit.set_defaults(run=add_audit_command)

    mail = commands.add_parser("mail", help="mail").add_subparsers(required=True, metavar="ACTION")
    mail_test = add_command(mail, "test", "queue a test mail, which a running serve sends")
    mail_test.add_argument("address", help="where to send it")
    mail_test.add_argument("--locale", help="the language to write it in (a language tag)")
    mail_test.set_defaults(run=add_mail_test)

    keys = commands.add_parser("keys", help="signing keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    keys.add_parser("list", help="list every signing key").set_defaults(run=add_list_keys)
    rotate = keys.add_parser("rotate", help="promote the next key and publish a new one")
    rotate.add_argument("--alg", choices=list(SIGNING_ALGS), help="for the new next key")
    rotate.add_argument(
        "--force", action="store_true", help="promote a next key verifiers may not know yet"
    )
    rotate.set_defaults(run=add_rotate_keys)
    revoke = keys.add_parser("revoke", help="withdraw a key at once (compromise)")
    revoke.add_argument("kid")
    revoke.set_defaults(run=add_revoke_key)
    rewrap = keys.add_parser(
        "rewrap",
        help="re-encrypt every private key under a new KEK (AUTHSERVER_NEW_KEY_ENCRYPTION_KEY)",
    )
    rewrap.add_argument(
        "--new-kek-file", type=Path, help="read the new KEK (base64, mode 0600) from this file"
    )
    rewrap.set_defaults(run=add_rewrap_keys)
    return parser
