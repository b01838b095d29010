"""What each operation costs Postgres: WAL bytes, rows and bytes stored, and CPU, per request.

    .venv/bin/python bench/capacity.py [--count 300] [--pgbouncer]

Starts a Postgres cluster of its own (nothing else runs on it, so every byte of WAL and every
CPU tick of its processes is this run's), migrates it, and drives the real ASGI app in this
process through httpx, one request at a time: logins (argon2 at the production defaults),
refresh rotations, introspections, client_credentials tokens, logouts. For each kind it prints
per request: WAL bytes written, rows added to each table, bytes the tables and their indexes
grew, Postgres CPU (all its processes, from /proc), this process's CPU (the app, plus the
httpx client that drives it: an over-estimate of the server's own) and the wall time of one
request. With --pgbouncer the app's pool goes through PgBouncer in transaction mode
(tests/_pgbouncer.py), to see what the pooler costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from authserver.app import build_services, create_app
from authserver.config import load_settings
from authserver.db import migrate
from tests._pgbouncer import pgbouncer_in_front_of
from tests._postgres import Cluster, own_cluster
from tests.conftest import KEK, Registry

TABLES = (
    "refresh_families",
    "refresh_tokens",
    "spent_refresh_tokens",
    "denied_access_tokens",
    "login_throttle",
    "audit_events",
    "users",
    "clients",
)
TICKS = os.sysconf("SC_CLK_TCK")


def postgres_cpu(cluster: Cluster) -> float:
    """Seconds of CPU used by the cluster's processes so far (the postmaster and its children,
    live ones; ended backends' time is added to the postmaster's as it reaps them)."""
    assert cluster.process is not None
    root = cluster.process.pid
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root or ppid == root:
            # utime, stime, and for the postmaster its reaped children's cutime, cstime
            own = int(fields[11]) + int(fields[12])
            reaped = int(fields[13]) + int(fields[14]) if pid == root else 0
            total += (own + reaped) / TICKS
    return total


async def snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    rows = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}  # noqa: S608
    size = {t: await conn.fetchval("SELECT pg_total_relation_size($1)", t) for t in TABLES}
    wal = await conn.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
    return {"rows": rows, "size": size, "wal": int(wal)}


async def main(count: int, pgbouncer: bool) -> None:
    async with own_cluster() as cluster:
        with contextlib.ExitStack() as stack:
            pooled = stack.enter_context(pgbouncer_in_front_of(cluster.url)) if pgbouncer else None
            await measure(cluster, count, pooled)


async def measure(cluster: Cluster, count: int, pooled: str | None) -> None:
    url = cluster.url
    engine = create_async_engine(url)
    await migrate.upgrade(engine)
    keys = Path(f"/tmp/authserver-capacity-keys-{os.getpid()}")
    settings = load_settings(
        {
            "AUTHSERVER_DATABASE_URL": pooled or url,
            "AUTHSERVER_DATABASE_DIRECT_URL": url,
            "AUTHSERVER_KEY_ENCRYPTION_KEY": KEK,
            "AUTHSERVER_KEYS_DIR": str(keys),
            "AUTHSERVER_PURGE_INTERVAL": "0",
        }
    )
    registry = Registry(build_services(replace(settings, database_url=url), engine))
    await registry.client("spa", public=True, grant_types=("password", "refresh_token"))
    secret = await registry.client("svc", scopes=("profile",))
    logins = max(count // 10, 10)  # argon2 at 64 MiB, t=3: slow on purpose
    for n in range(logins):
        await registry.user(f"user{n}", "correct horse")
    await engine.dispose()

    app = create_app(settings)
    conn = await asyncpg.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", database="postgres"
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
            state: dict[str, list[dict[str, Any]]] = {"sessions": []}

            async def login(n: int) -> None:
                data = {
                    "grant_type": "password",
                    "username": f"user{n % logins}",
                    "password": "correct horse",
                    "client_id": "spa",
                }
                response = await http.post("/token", data=data)
                assert response.status_code == 200, response.text
                state["sessions"].append(response.json())

            async def refresh(n: int) -> None:
                sessions = state["sessions"]
                body = sessions[n % len(sessions)]
                data = {"refresh_token": body["refresh_token"], "client_id": "spa"}
                response = await http.post("/refresh", data=data)
                assert response.status_code == 200, response.text
                sessions[n % len(sessions)] = response.json()

            async def introspect(n: int) -> None:
                body = state["sessions"][n % len(state["sessions"])]
                response = await http.post(
                    "/introspect", data={"token": body["access_token"]}, auth=("svc", secret)
                )
                assert response.status_code == 200 and response.json()["active"]

            async def client_credentials(n: int) -> None:
                response = await http.post(
                    "/token",
                    data={"grant_type": "client_credentials", "scope": "profile"},
                    auth=("svc", secret),
                )
                assert response.status_code == 200, response.text

            async def logout(n: int) -> None:
                body = state["sessions"].pop()
                response = await http.post(
                    "/logout",
                    data={"refresh_token": body["refresh_token"]},
                    headers={"Authorization": f"Bearer {body['access_token']}"},
                )
                assert response.status_code == 204, response.text

            plan: list[tuple[str, Callable[[int], Awaitable[None]], int]] = [
                ("login (argon2id 64 MiB, t=3)", login, logins),
                ("refresh rotation", refresh, count),
                ("introspection", introspect, count),
                ("client_credentials", client_credentials, count),
                ("logout", logout, logins),
            ]
            print(
                f"machine: {platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}, load {os.getloadavg()}"
            )
            print(f"through PgBouncer (transaction mode): {pooled is not None}")
            print(
                f"{'operation':32} {'n':>5} {'WAL B':>7} {'stored B':>9} "
                f"{'PG CPU ms':>10} {'app CPU ms':>11} {'wall ms':>8}  rows added"
            )
            for name, operation, n_ops in plan:
                await asyncio.sleep(0.5)  # let the background writer settle
                before, pg0, app0 = (
                    await snapshot(conn),
                    postgres_cpu(cluster),
                    time.process_time(),
                )
                started = time.monotonic()
                for n in range(n_ops):
                    await operation(n)
                wall = (time.monotonic() - started) / n_ops * 1000
                after, pg1, app1 = (
                    await snapshot(conn),
                    postgres_cpu(cluster),
                    time.process_time(),
                )
                wal = (after["wal"] - before["wal"]) / n_ops
                grown = sum(after["size"][t] - before["size"][t] for t in TABLES) / n_ops
                rows = {
                    t: round((after["rows"][t] - before["rows"][t]) / n_ops, 2)
                    for t in TABLES
                    if after["rows"][t] != before["rows"][t]
                }
                print(
                    f"{name:32} {n_ops:>5} {wal:>7.0f} {grown:>9.0f} "
                    f"{(pg1 - pg0) / n_ops * 1000:>10.2f} {(app1 - app0) / n_ops * 1000:>11.2f}"
                    f" {wall:>8.2f}  {rows}"
                )
    await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--pgbouncer", action="store_true")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.count, arguments.pgbouncer))
