"""`authserver serve`, `migrate` and `purge`."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
import time
from dataclasses import replace
from typing import cast

from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import build_services, prepare_schema
from authserver.cli.common import with_engine
from authserver.config import Settings
from authserver.db import migrate
from authserver.db.purge import purge
from authserver.telemetry import logs
from authserver.telemetry.logs import log_config


def add_serve(args: argparse.Namespace, settings: Settings) -> int:
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

    kid, alg = with_engine(settings, check)
    logs.configure(args.log_level)
    # One line that says what this server is: what an operator checks first after a deploy.
    logging.getLogger("authserver.serve").info(
        "serving %s on %s:%s, mail %s",
        settings.issuer,
        host,
        port,
        mail_for_humans(settings),
        extra={
            "issuer": settings.issuer,
            "database": database_for_humans(settings.database_url),
            "kid": kid,
            "alg": alg,
            "workers": args.workers,
            "mail": mail_for_humans(settings),
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


def add_migrate(args: argparse.Namespace, settings: Settings) -> int:
    # Straight to Postgres, never through a transaction pooler: the lock that lets every
    # replica migrate at once is held by one session across several transactions.
    direct = settings.database_direct_url or settings.database_url
    with_engine(replace(settings, database_url=direct), migrate.upgrade, keys=False)
    print(f"database is at revision {migrate.head_revision()}", file=sys.stderr)
    return 0


def add_purge(args: argparse.Namespace, settings: Settings) -> int:
    async def run(engine: AsyncEngine) -> str:
        await prepare_schema(engine)
        purged = await purge(engine, settings, int(time.time()))
        return "skipped: another instance is purging" if purged is None else f"purged {purged}"

    print(with_engine(settings, run, keys=False), file=sys.stderr)
    return 0


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


def mail_for_humans(settings: Settings) -> str:
    """`off`, or `on` and the server (its password as `***`, SmtpServer.__str__)."""
    return f"on via {settings.smtp_url}" if settings.smtp_url else "off (AUTHSERVER_SMTP_URL unset)"
