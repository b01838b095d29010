"""`authserver resources ...`: the admin API's resource server use cases
(actions/admin/resources.py), audited with the actor `cli`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from authserver.actions import admin
from authserver.actions.admin import resources as admin_resources
from authserver.cli.common import (
    CLI,
    CommandError,
    add_command,
    add_json_flag,
    as_admin,
    print_one,
    print_page,
)
from authserver.config import Settings

COLUMNS = ["resource", "scopes", "access_token_ttl"]


def add_resources_command(commands: Any) -> None:
    resources = commands.add_parser(
        "resources", help="resource servers (RFC 8707): the audiences of access tokens"
    ).add_subparsers(required=True, metavar="ACTION")

    create = add_command(resources, "create", "register a resource server")
    create.add_argument("resource", help="its identifier, an absolute URI: the tokens' aud")
    _add_fields(create, default_ttl="AUTHSERVER_ACCESS_TOKEN_TTL")
    add_json_flag(create)
    create.set_defaults(run=_create)

    listing = add_command(resources, "list", "list resource servers by identifier")
    listing.add_argument("--limit", type=int, default=admin.DEFAULT_PAGE, help="page size")
    listing.add_argument("--after", metavar="RESOURCE", help="the page after this identifier")
    add_json_flag(listing)
    listing.set_defaults(run=_list)

    show = add_command(resources, "show", "show one resource server")
    show.add_argument("resource")
    add_json_flag(show)
    show.set_defaults(run=_show)

    update = add_command(resources, "update", "change a resource's scopes or token lifetime")
    update.add_argument("resource")
    _add_fields(update, default_ttl=None)
    update.add_argument("--no-scopes", action="store_true", help="remove every scope")
    add_json_flag(update)
    update.set_defaults(run=_update)

    delete = add_command(resources, "delete", "delete a resource: no token is issued for it")
    delete.add_argument("resource")
    delete.set_defaults(run=_delete)


def _add_fields(parser: argparse.ArgumentParser, default_ttl: str | None) -> None:
    parser.add_argument(
        "--scope", action="append", metavar="S",
        help="a scope its tokens may carry (repeat" + ("" if default_ttl else "; replaces them")
        + ")",
    )  # fmt: skip
    default = f" (default: {default_ttl})" if default_ttl else ""
    parser.add_argument(
        "--access-token-ttl", type=int, metavar="SECONDS",
        help="lifetime of its access tokens" + default,
    )  # fmt: skip


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.scope is not None or getattr(args, "no_scopes", False):
        body["scopes"] = args.scope or []
    if args.access_token_ttl is not None:
        body["access_token_ttl"] = args.access_token_ttl
    return body


def _create(args: argparse.Namespace, settings: Settings) -> int:
    body = {"resource": args.resource, **_fields(args)}
    print_one(args, as_admin(settings, lambda s: admin_resources.create_resource(s, CLI, body)))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    page = as_admin(settings, lambda s: admin_resources.list_resources(s, args.limit, args.after))
    print_page(args, page, COLUMNS)
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    print_one(args, as_admin(settings, lambda s: admin_resources.show_resource(s, args.resource)))
    return 0


def _update(args: argparse.Namespace, settings: Settings) -> int:
    body = _fields(args)
    if not body:
        raise CommandError("nothing to change: give --scope, --no-scopes or --access-token-ttl")
    updated = as_admin(
        settings, lambda s: admin_resources.update_resource(s, CLI, args.resource, body)
    )
    print_one(args, updated)
    return 0


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    as_admin(settings, lambda s: admin_resources.delete_resource(s, CLI, args.resource))
    print(f"deleted resource {args.resource}; no token is issued for it now", file=sys.stderr)
    return 0
