"""`authserver users ...`: the admin API's user use cases (actions/admin/users.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.actions import admin
from authserver.actions.admin import sessions as admin_sessions
from authserver.actions.admin import users as admin_users
from authserver.app import build_services, prepare_schema
from authserver.cli.common import (
    CLI,
    CommandError,
    add_command,
    add_json_flag,
    as_admin,
    print_one,
    print_page,
    print_rows,
    with_engine,
)
from authserver.config import Settings
from authserver.services import Services


def add_user_lifecycle(users: Any) -> None:
    listing = add_command(users, "list", "list users by username")
    listing.add_argument("--username", default="", metavar="PREFIX", help="names starting so")
    listing.add_argument("--limit", type=int, default=admin.DEFAULT_PAGE, help="page size")
    listing.add_argument("--after", metavar="USERNAME", help="the page after this name")
    add_json_flag(listing)
    listing.set_defaults(run=_list_users)

    show = add_command(users, "show", "show one user")
    show.add_argument("user", help="a username or a sub")
    add_json_flag(show)
    show.set_defaults(run=_show_user)

    change = add_command(
        users, "update", "change a user's scopes, admin flag, state, profile or roles"
    )
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
    add_profile_flags(change)
    add_json_flag(change)
    change.set_defaults(run=_update_user)

    password = add_command(users, "set-password", "set a user's password (the password policy)")
    password.add_argument("user", help="a username or a sub")
    password.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin"
    )
    password.add_argument(
        "--keep-sessions", action="store_true", help="leave the user's sessions running"
    )
    password.set_defaults(run=_set_password)

    delete = add_command(users, "delete", "delete a user: sessions end, the username is freed")
    delete.add_argument("user", help="a username or a sub")
    delete.set_defaults(run=_delete_user)

    reset = add_command(
        users, "reset-factors", "remove a user's second factors and recovery codes; sessions end"
    )
    reset.add_argument("user", help="a username or a sub")
    reset.set_defaults(run=_reset_factors)

    sessions = add_command(users, "sessions", "list a user's live sessions")
    sessions.add_argument("user", help="a username or a sub")
    add_json_flag(sessions)
    sessions.set_defaults(run=_user_sessions)


def add_profile_flags(parser: argparse.ArgumentParser) -> None:
    """The profile of `users create` and `users update` (API.md "Accounts"); an empty value
    clears a field."""
    for flag, what in [
        ("--email", "the address (a new one is unverified unless --email-verified)"),
        ("--name", "the full name"),
        ("--given-name", "the given name"),
        ("--family-name", "the family name"),
        ("--locale", "a BCP 47 tag, e.g. en-GB"),
    ]:
        parser.add_argument(
            flag, metavar=flag.removeprefix("--").upper().replace("-", "_"), help=what
        )
    verified = parser.add_mutually_exclusive_group()
    verified.add_argument(
        "--email-verified", dest="email_verified", action="store_true", default=None,
        help="the address is the user's",
    )  # fmt: skip
    verified.add_argument(
        "--no-email-verified", dest="email_verified", action="store_false",
        help="the address is not verified",
    )  # fmt: skip
    parser.add_argument(
        "--role", action="append", metavar="R", help="the roles (repeat; replaces them)"
    )
    parser.add_argument("--no-roles", action="store_true", help="remove every role")


def profile_body(args: argparse.Namespace) -> dict[str, Any]:
    """The admin API's profile members the flags give."""
    body: dict[str, Any] = {}
    for name in ("email", "name", "given_name", "family_name", "locale"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value or None  # `--name ''` clears it
    if args.email_verified is not None:
        body["email_verified"] = args.email_verified
    if args.role is not None or args.no_roles:
        body["roles"] = args.role or []
    return body


USER_COLUMNS = ["sub", "username", "scopes", "admin", "disabled", "created_at", "last_login_at"]


SESSION_COLUMNS = ["sid", "client_id", "created_at", "last_used_at", "expires_at", "user_agent"]


def _list_users(args: argparse.Namespace, settings: Settings) -> int:
    page = as_admin(
        settings, lambda s: admin_users.list_users(s, args.limit, args.after, args.username)
    )
    print_page(args, page, USER_COLUMNS)
    return 0


def _show_user(args: argparse.Namespace, settings: Settings) -> int:
    async def show(services: Services) -> dict[str, Any]:
        user = await admin_users.find_user(services, args.user)
        return await admin_users.show_user(services, user.id)  # as GET /admin/users/{sub}

    print_one(args, as_admin(settings, show))
    return 0


def _update_user(args: argparse.Namespace, settings: Settings) -> int:
    body: dict[str, Any] = {}
    if args.scope is not None or args.no_scopes:
        body["scopes"] = args.scope or []
    if args.admin is not None:
        body["admin"] = args.admin
    if args.disabled is not None:
        body["disabled"] = args.disabled
    body.update(profile_body(args))
    if not body:
        raise CommandError(
            "nothing to change: give --scope, --admin, --disable, --enable, a profile field"
            " (--email, --name, ...) or --role"
        )

    async def update(services: Services) -> dict[str, Any]:
        user = await admin_users.find_user(services, args.user)
        return await admin_users.update_user(services, CLI, user.id, body)

    print_one(args, as_admin(settings, update))
    return 0


def _set_password(args: argparse.Namespace, settings: Settings) -> int:
    if not args.password_stdin:
        raise CommandError("pass the password on stdin with --password-stdin")
    password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise CommandError("the password on stdin is empty")
    body = {"password": password, "revoke_sessions": not args.keep_sessions}

    async def set_it(services: Services) -> str:
        user = await admin_users.find_user(services, args.user)
        await admin_users.set_password(services, CLI, user.id, body)
        return user.username

    username = as_admin(settings, set_it)
    ended = "its sessions kept" if args.keep_sessions else "every session ended"
    print(f"password of {username} set; {ended}", file=sys.stderr)
    return 0


def _delete_user(args: argparse.Namespace, settings: Settings) -> int:
    async def delete(services: Services) -> str:
        user = await admin_users.find_user(services, args.user)
        await admin_users.delete_user(services, CLI, user.id)
        return user.id

    sub = as_admin(settings, delete)
    print(f"deleted user {sub}; its sessions ended and its username is free", file=sys.stderr)
    return 0


def _reset_factors(args: argparse.Namespace, settings: Settings) -> int:
    async def reset(services: Services) -> tuple[str, int]:
        user = await admin_users.find_user(services, args.user)
        return user.username, await admin_users.reset_factors(services, CLI, user.id)

    username, removed = as_admin(settings, reset)
    print(
        f"removed {removed} second factor(s) of {username}, with their recovery codes;"
        " every session ended",
        file=sys.stderr,
    )
    return 0


def _user_sessions(args: argparse.Namespace, settings: Settings) -> int:
    async def sessions(services: Services) -> list[dict[str, Any]]:
        user = await admin_users.find_user(services, args.user)
        return await admin_sessions.user_sessions(services, user.id)

    rows = [
        {k: v for k, v in row.items() if k != "current"} for row in as_admin(settings, sessions)
    ]
    print_rows(args, rows, SESSION_COLUMNS)
    return 0


def add_create_user(args: argparse.Namespace, settings: Settings) -> int:
    if not args.password_stdin:
        raise CommandError("pass the password on stdin with --password-stdin")
    password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise CommandError("the password on stdin is empty")
    body = {"username": args.username, "password": password, "scopes": args.scope}
    body["admin"] = args.admin
    body.update(profile_body(args))

    async def create(engine: AsyncEngine) -> admin_users.CreatedUser:
        await prepare_schema(engine)
        # The admin API's use case: the same input rules, and audited with the actor `cli`.
        return await admin_users.create_user(build_services(settings, engine), CLI, body)

    print(with_engine(settings, create).sub)
    return 0
