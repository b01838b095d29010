"""What the commands share: the exit statuses' help, errors, the database, the
runner of the admin use cases and the output (a table, or JSON lines)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.actions.admin import Page
from authserver.app import build_services, prepare_schema, refuse_a_missing_kek
from authserver.config import Settings
from authserver.db.engine import make_engine
from authserver.services import Services

T = TypeVar("T")


CLI = "cli"  # the actor of every change made from the command line, in the audit trail


EXIT_CODES = (
    "exit status: 0 done; 1 refused (bad input, database or key problem); 2 usage or settings; "
    "3 no such user, client, session, resource or live registration token; "
    "4 conflict (the name or id is taken)"
)


class CommandError(Exception):
    """A problem to report as one line, exit status 1."""


def add_command(parent: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose --help shows each option's default."""
    command: argparse.ArgumentParser = parent.add_parser(
        name,
        help=help,
        description=help,
        epilog=EXIT_CODES,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    return command


def add_json_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--json", action="store_true", help="one JSON object per line, for scripts"
    )


def as_admin(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    """Runs one of the admin API's use cases, on the server's database and settings."""

    async def run(engine: AsyncEngine) -> T:
        await prepare_schema(engine)
        return await work(build_services(settings, engine))

    return with_engine(settings, run)


def print_rows(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
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


def print_page(args: argparse.Namespace, page: Page, columns: list[str]) -> None:
    """A page of a list: its rows, and when it is full, where the next starts (stderr)."""
    print_rows(args, page.items, columns)
    if page.next_after and not args.json:
        print(f"more: --after {page.next_after}", file=sys.stderr)


def print_one(args: argparse.Namespace, item: dict[str, Any]) -> None:
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
        return format_time(value)
    if isinstance(value, list):
        return " ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def format_time(epoch: object) -> str:
    if not isinstance(epoch, int):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


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


def with_engine(
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
