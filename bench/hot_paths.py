"""In-process throughput of the hot paths, without HTTP: what one worker can do at most.

    .venv/bin/python bench/hot_paths.py [DATABASE_URL] [--seconds 5] [--concurrency 32]

DATABASE_URL defaults to a fresh database on the local Postgres (made and dropped here).
Prints operations per second for: signing an access token (RS256, EdDSA), a client_credentials
grant, a refresh rotation (the compare-and-set plus the new token), and introspection.
The HTTP figures (wrk against uvicorn) belong to bench/ runs of the production issue.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable

import asyncpg

from authserver.accounts.users import new_user
from authserver.actions.grants import GrantRequest
from authserver.actions.grants.client_credentials import client_credentials_grant
from authserver.actions.introspection import introspect
from authserver.app import build_services, prepare_schema
from authserver.clients import Client, ClientCredentials, hash_secret
from authserver.config import load_settings
from authserver.db import migrate
from authserver.db.engine import make_engine
from authserver.keys.ring import KeyRing, make_key
from authserver.keys.sealing import KeySealer
from authserver.services import Services
from authserver.tokens.access_tokens import mint_access_token
from authserver.tokens.refresh import rotate, start_family


async def measure(
    name: str, op: Callable[[], Awaitable[object]], seconds: float, concurrency: int
) -> None:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await op()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(f"{name:<42} {done / (time.perf_counter() - start):>9,.0f} /s")


def signing_rate(alg: str, seconds: float, start_at: float | None = None) -> float:
    """Access tokens this process signs per second over `seconds`, from wall time `start_at`
    if given (several processes starting together: bench/http_bench.py)."""
    sealer = KeySealer(secrets.token_bytes(32))
    ring = KeyRing([make_key(alg, "active", sealer, 0).record], sealer, now=0, retired_ttl=0)
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        mint_access_token(
            ring,
            issuer="i",
            audience="a",
            ttl=900,
            now=0,
            sub="s",
            client_id="c",
            scope="profile",
            sid="x",
        )
        done += 1
    return done / (time.perf_counter() - start)


def signing(alg: str, seconds: float) -> None:
    print(f"{'sign access token ' + alg:<42} {signing_rate(alg, seconds):>9,.0f} /s")


async def database_benchmarks(url: str, seconds: float, concurrency: int) -> None:
    environ = {
        "AUTHSERVER_DATABASE_URL": url,
        "AUTHSERVER_KEY_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AUTHSERVER_DB_POOL_SIZE": str(concurrency),
    }
    settings = load_settings(environ)
    engine = make_engine(settings)
    await migrate.upgrade(engine)
    await prepare_schema(engine)
    services: Services = build_services(settings, engine)
    await services.keys.start()
    secret = "bench-secret"
    await services.clients.create(
        Client("svc", hash_secret(secret), ("client_credentials",), ("profile",)), 0
    )
    user = new_user("bench", "not-a-real-hash", ["profile"], False)
    await services.users.create(user, 0)
    creds = ClientCredentials("svc", secret)

    await measure(
        "client_credentials grant (RS256)",
        lambda: client_credentials_grant(services, GrantRequest(creds, {})),
        seconds,
        concurrency,
    )

    async def one_chain() -> Callable[[], Awaitable[object]]:
        now = int(time.time())
        first = await start_family(
            services.families,
            user_id=user.id,
            client_id="svc",
            scope="profile",
            now=now,
            refresh_ttl=3600,
            session_ttl=7200,
        )
        current = first.refresh_token

        async def step() -> None:
            nonlocal current
            rotation = await rotate(
                services.families,
                current,
                client_id="svc",
                now=int(time.time()),
                refresh_ttl=3600,
                grace=0,
            )
            current = rotation.refresh_token

        return step

    chains = [await one_chain() for _ in range(concurrency)]
    # One worker per family, so every rotation is a legitimate one.
    done = 0
    deadline = time.perf_counter() + seconds

    async def chain_worker(step: Callable[[], Awaitable[object]]) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await step()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(chain_worker(step) for step in chains))
    rate = done / (time.perf_counter() - start)
    print(f"{'refresh rotation (spend + successor)':<42} {rate:>9,.0f} /s")

    token = (await services.mint(sub=user.id, client_id="svc", scope="profile", sid=None)).token
    await measure(
        "introspect access token",
        lambda: introspect(services, creds, token, None),
        seconds,
        concurrency,
    )
    await engine.dispose()


async def fresh_postgres_database() -> tuple[str, Callable[[], Awaitable[None]]]:
    name = f"authserver_bench_{os.getpid()}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()

    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", drop


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url", nargs="?")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    for alg in ("RS256", "EdDSA"):
        signing(alg, args.seconds)
    drop = None
    url = args.database_url
    if url is None:
        url, drop = await fresh_postgres_database()
    try:
        with tempfile.TemporaryDirectory() as keys_dir:
            os.environ.setdefault("AUTHSERVER_KEYS_DIR", keys_dir)
            await database_benchmarks(url, args.seconds, args.concurrency)
    finally:
        if drop is not None:
            await drop()


if __name__ == "__main__":
    asyncio.run(main())
