"""`authserver clients ...`: the admin API's client use cases
(actions/admin/clients.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.actions import admin, registration
from authserver.actions.admin import clients as admin_clients
from authserver.app import build_services, prepare_schema
from authserver.cli.common import (
    CLI,
    CommandError,
    add_command,
    add_json_flag,
    as_admin,
    format_time,
    print_one,
    print_page,
    print_rows,
    with_engine,
)
from authserver.config import Settings
from authserver.errors import NotFound
from authserver.services import Services


def add_client_lifecycle(clients: Any) -> None:
    listing = add_command(clients, "list", "list clients by client_id")
    listing.add_argument("--limit", type=int, default=admin.DEFAULT_PAGE, help="page size")
    listing.add_argument("--after", metavar="CLIENT_ID", help="the page after this id")
    add_json_flag(listing)
    listing.set_defaults(run=_list_clients)

    show = add_command(clients, "show", "show one client (never its secret)")
    show.add_argument("client_id")
    add_json_flag(show)
    show.set_defaults(run=_show_client)

    change = add_command(
        clients, "update", "change a client's grants, scopes, delivery, URIs, name, origins, state"
    )
    change.add_argument("client_id")
    add_registration_flags(change, replacing=True)
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
    add_json_flag(change)
    change.set_defaults(run=_update_client)

    rotate = add_command(clients, "rotate-secret", "give a confidential client a new secret")
    rotate.add_argument("client_id")
    rotate.add_argument(
        "--old-secret-ttl", type=int,
        default=admin_clients.DEFAULT_OLD_SECRET_TTL, metavar="SECONDS",
        help="how long the old secret keeps working (0: not at all)",
    )  # fmt: skip
    rotate.set_defaults(run=_rotate_client_secret)

    delete = add_command(clients, "delete", "delete a client: its sessions and tokens end")
    delete.add_argument("client_id")
    delete.set_defaults(run=_delete_client)

    token = add_command(
        clients, "registration-token",
        "make an initial access token for POST /register (AUTHSERVER_REGISTRATION=token)",
    )  # fmt: skip
    token.add_argument(
        "--expires-in", type=int, default=86_400, metavar="SECONDS",
        help="how long it works (60 to 31536000; default a day)",
    )  # fmt: skip
    uses = token.add_mutually_exclusive_group()
    uses.add_argument(
        "--uses", type=int, default=1, metavar="N", help="how many registrations (default 1)"
    )
    uses.add_argument(
        "--multi-use", dest="uses", action="store_const", const=None,
        help="any number of registrations until it expires",
    )  # fmt: skip
    token.set_defaults(run=_registration_token)

    tokens = add_command(
        clients, "registration-tokens",
        "list the initial access tokens that still register (newest first, at most "
        f"{registration.LISTED_TOKENS})",
    )  # fmt: skip
    add_json_flag(tokens)
    tokens.set_defaults(run=_registration_tokens)

    revoke = add_command(
        clients, "revoke-registration-token",
        "end an initial access token now (the clients it registered stay)",
    )  # fmt: skip
    revoke.add_argument("id", help="its ID, as `clients registration-tokens` lists it")
    revoke.set_defaults(run=_revoke_registration_token)


# Flag -> field of the admin API: repeatable flags give a list, --client-name a string.
REGISTRATION_FLAGS = {
    "redirect_uri": "redirect_uris",
    "post_logout_redirect_uri": "post_logout_redirect_uris",
    "allowed_origin": "allowed_origins",
    "client_name": "client_name",
    "require_mfa": "require_mfa",
    "resource": "resources",
}


def add_registration_flags(parser: argparse.ArgumentParser, *, replacing: bool = False) -> None:
    """The browser registration fields, as `clients create` and `clients update` take them
    (API.md, "Clients, added"); on update, a repeatable flag given replaces its whole list."""
    each = " (repeat; replaces the list)" if replacing else " (repeat)"
    for flag, metavar, purpose in (
        ("--redirect-uri", "URI", "where /authorize may send the browser back"),
        ("--post-logout-redirect-uri", "URI", "where /end-session may send it"),
        ("--allowed-origin", "ORIGIN", "a browser origin (https://app.example) of the client"),
        ("--resource", "URI", "a registered resource the client may name (none: any)"),
    ):
        parser.add_argument(flag, action="append", metavar=metavar, help=purpose + each)
    if replacing:
        parser.add_argument(
            "--no-resources", action="store_true",
            help="clear the resources: the client may name any registered one",
        )  # fmt: skip
    parser.add_argument(
        "--client-name", metavar="NAME",
        help='what the sign-in page shows ("to continue to NAME")'
        + ('; "" removes it' if replacing else ""),
    )  # fmt: skip
    mfa = parser.add_mutually_exclusive_group()
    mfa.add_argument(
        "--require-mfa", dest="require_mfa", action="store_true", default=None,
        help="sessions with a second factor only (a user without one: access_denied)",
    )  # fmt: skip
    if replacing:
        mfa.add_argument(
            "--no-require-mfa", dest="require_mfa", action="store_false",
            help="sessions signed in with the password alone too",
        )  # fmt: skip
    parser.add_argument(
        "--dpop-bound-access-tokens", action=argparse.BooleanOptionalAction, default=None,
        help="require a DPoP proof at /token (RFC 9449): every token bound to a key",
    )  # fmt: skip


def registration_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The registration flags given, as admin API fields."""
    fields = {
        field: getattr(args, flag)
        for flag, field in REGISTRATION_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if args.dpop_bound_access_tokens is not None:
        fields["dpop_bound_access_tokens"] = args.dpop_bound_access_tokens
    if getattr(args, "no_resources", False):
        if args.resource:
            raise CommandError("give --resource or --no-resources, not both")
        fields["resources"] = []
    return fields


CLIENT_COLUMNS = [
    "client_id", "public", "grant_types", "scopes", "refresh_delivery", "disabled",
    "created_at", "secret_rotated_at", "registration",
]  # fmt: skip


def _list_clients(args: argparse.Namespace, settings: Settings) -> int:
    page = as_admin(settings, lambda s: admin_clients.list_clients(s, args.limit, args.after))
    print_page(args, page, CLIENT_COLUMNS)
    return 0


def _show_client(args: argparse.Namespace, settings: Settings) -> int:
    print_one(args, as_admin(settings, lambda s: admin_clients.show_client(s, args.client_id)))
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
    body.update(registration_fields(args))
    if not body:
        raise CommandError(
            "nothing to change: give --grant, --scope, --refresh-delivery, --redirect-uri, "
            "--post-logout-redirect-uri, --client-name, --allowed-origin, --resource, "
            "--no-resources, --disable or --enable"
        )
    updated = as_admin(
        settings, lambda s: admin_clients.update_client(s, CLI, args.client_id, body)
    )
    print_one(args, updated)
    return 0


def _rotate_client_secret(args: argparse.Namespace, settings: Settings) -> int:
    body = {"old_secret_ttl": args.old_secret_ttl}
    rotated = as_admin(
        settings, lambda s: admin_clients.rotate_client_secret(s, CLI, args.client_id, body)
    )
    print(
        f"rotated the secret of {args.client_id}; the old one works until "
        f"{format_time(rotated.old_secret_expires_at)} UTC. "
        "The new one, shown only now, is on stdout",
        file=sys.stderr,
    )
    print(rotated.client_secret)
    return 0


def _delete_client(args: argparse.Namespace, settings: Settings) -> int:
    as_admin(settings, lambda s: admin_clients.delete_client(s, CLI, args.client_id))
    print(
        f"deleted client {args.client_id}; its sessions and access tokens are revoked",
        file=sys.stderr,
    )
    return 0


def _registration_token(args: argparse.Namespace, settings: Settings) -> int:
    token, expires_at = as_admin(
        settings, lambda s: registration.make_initial_token(s, CLI, args.expires_in, args.uses)
    )
    uses = "any number of registrations" if args.uses is None else f"{args.uses} registration(s)"
    print(
        f"an initial access token for {uses} until {format_time(expires_at)} UTC; "
        "shown only now, it is on the next line of stdout (send it as a bearer token to "
        "POST /register)",
        file=sys.stderr,
    )
    print(token)
    return 0


TOKEN_COLUMNS = ["id", "created_at", "expires_at", "registrations"]


def _registration_tokens(args: argparse.Namespace, settings: Settings) -> int:
    tokens = as_admin(settings, registration.live_initial_tokens)
    rows = [
        {
            "id": registration.initial_token_id(token.token_hash),
            "created_at": token.created_at,
            "expires_at": token.expires_at,
            "uses": token.uses,
            "max_uses": token.max_uses,  # null: any number
            "registrations": f"{token.uses} of {token.max_uses or 'any number'}",
        }
        for token in tokens
    ]
    if args.json:
        for row in rows:
            del row["registrations"]  # the table's; scripts have uses and max_uses
    print_rows(args, rows, TOKEN_COLUMNS)
    if len(rows) == registration.LISTED_TOKENS and not args.json:
        print(f"only the newest {len(rows)} are listed", file=sys.stderr)
    return 0


def _revoke_registration_token(args: argparse.Namespace, settings: Settings) -> int:
    async def revoke(services: Services) -> None:
        # The ID names the live token to end; the revoke itself is one guarded UPDATE, so a
        # token that dies in between is NotFound there, never revoked twice.
        for token in await registration.live_initial_tokens(services):
            if registration.initial_token_id(token.token_hash) == args.id:
                await registration.revoke_initial_token(services, CLI, token.token_hash)
                return
        raise NotFound("No registration token that still works has this id.")

    as_admin(settings, revoke)
    print(
        f"revoked registration token {args.id}; it registers no client from now on "
        "(the clients it registered stay)",
        file=sys.stderr,
    )
    return 0


def add_create_client(args: argparse.Namespace, settings: Settings) -> int:
    body = {
        "client_id": args.client_id,
        "public": args.public,
        "grant_types": args.grant or [],
        "scopes": args.scope,
        "refresh_delivery": args.refresh_delivery,
        **registration_fields(args),
    }

    async def create(engine: AsyncEngine) -> admin_clients.CreatedClient:
        await prepare_schema(engine)
        return await admin_clients.create_client(build_services(settings, engine), CLI, body)

    created = with_engine(settings, create)
    client, secret = created.client, created.secret
    kind = "public" if args.public else "confidential"
    grants_text = " ".join(client.grant_types)
    print(f"created {kind} client {args.client_id} ({grants_text})", file=sys.stderr)
    if secret:
        print("its secret, shown only now, is on the next line of stdout", file=sys.stderr)
        print(secret)
    return 0
