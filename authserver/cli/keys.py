"""`authserver keys ...`: list, rotate, revoke and rewrap the signing keys."""

from __future__ import annotations

import argparse
import os
import sys

from cryptography.exceptions import InvalidTag
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import build_services, prepare_schema
from authserver.cli.common import CLI, CommandError, format_time, with_engine
from authserver.config import Settings
from authserver.db.keys import SqlKeyStore
from authserver.keys.lifecycle import KeyNotReady
from authserver.keys.manager import reload_interval
from authserver.keys.records import public_record
from authserver.keys.sealing import decode_kek, read_kek_file


def add_list_keys(args: argparse.Namespace, settings: Settings) -> int:
    async def records(engine: AsyncEngine) -> list[dict[str, object]]:
        await prepare_schema(engine)
        services = build_services(settings, engine)
        await services.keys.start()  # a fresh install gets its first keys here too
        return [public_record(r) for r in await SqlKeyStore(engine).all()]

    rows = with_engine(settings, records)
    print(f"{'kid':<44} {'alg':<6} {'state':<8} {'created':<20} {'activated':<20} retired")
    for row in rows:
        print(
            f"{row['kid']!s:<44} {row['alg']!s:<6} {row['state']!s:<8} "
            f"{format_time(row['created_at']):<20} {format_time(row['activated_at']):<20} "
            f"{format_time(row['retired_at'])}"
        )
    return 0


def add_rotate_keys(args: argparse.Namespace, settings: Settings) -> int:
    async def rotate(engine: AsyncEngine) -> None:
        await prepare_schema(engine)
        keys = build_services(settings, engine).keys
        await keys.start()
        await keys.rotate(CLI, alg=args.alg, force=args.force)

    try:
        with_engine(settings, rotate)
    except KeyNotReady as exc:
        raise CommandError(
            f"the next key is not ready: verifiers may not know it for {exc.retry_after} s "
            "more; retry then, or pass --force"
        ) from None
    print(
        f"rotated; running servers sign with the new key within {reload_interval(settings)} s",
        file=sys.stderr,
    )
    return add_list_keys(args, settings)


def add_revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    async def revoke(engine: AsyncEngine) -> None:
        await prepare_schema(engine)
        keys = build_services(settings, engine).keys
        await keys.start()
        await keys.revoke(args.kid, CLI)

    with_engine(settings, revoke)
    print(
        f"revoked {args.kid}; its tokens are refused at once, and running servers drop it "
        f"from the JWKS within {reload_interval(settings)} s",
        file=sys.stderr,
    )
    return add_list_keys(args, settings)


def add_rewrap_keys(args: argparse.Namespace, settings: Settings) -> int:
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
        count = with_engine(settings, rewrap)
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
        f"rewrapped {count} signing keys and every authenticator-app secret under the new KEK, "
        "in one transaction.\n"
        f"Every instance must now run with {where} set to the new KEK; restart any that still "
        "have only the old one with the new KEK there and the old one in "
        "AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS (running instances keep the keys they loaded).\n"
        "Once all do, unset AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS and destroy the old KEK.",
        file=sys.stderr,
    )
    return 0
