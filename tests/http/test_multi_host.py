"""Several hosts in AUTHSERVER_DATABASE_URL with target_session_attrs=read-write: a real `serve`
finds the primary among them by itself, and when the primary changes it drops its connections
to the old one and finds the new one, without a restart.

Two clusters of the test's own: a primary A and a streaming standby B (pg_basebackup), listed
standby first. Then a switchover as a failover manager does it: A is fenced (made read-only,
its sessions kept: the worst case for a pool, which a restarting demotion spares it), B has
caught up and is promoted. Every answer meanwhile is 200 or 503, never a 500; the refreshes go
on against B; none of the server's pooled connections is left on A, and its connection that
listens for changes (db/notify.py) moves to B.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import asyncpg
import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from authserver.app import build_services
from authserver.db import migrate
from authserver.db.notify import APPLICATION_NAME
from tests._postgres import Cluster, own_cluster, own_standby
from tests.conftest import Registry, make_settings, password_login
from tests.http.test_database_restart import errors
from tests.races._instances import serving

POOL = 2  # connections per process: few, so a handful of requests goes through all of them
AFTER = 4 * POOL  # refreshes after the switchover that must all succeed


def multi_host_url(*clusters: Cluster) -> str:
    hosts = "&".join(f"host=127.0.0.1:{c.port}" for c in clusters)
    return f"postgresql+asyncpg://postgres@/postgres?{hosts}&target_session_attrs=read-write"


async def sql(cluster: Cluster, statement: str) -> object:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", database="postgres", timeout=5
    )
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


async def caught_up(primary: Cluster, standby: Cluster) -> None:
    lsn = await sql(primary, "SELECT pg_current_wal_lsn()::text")
    with anyio.fail_after(30):
        while not await sql(standby, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"):
            await anyio.sleep(0.05)


async def prepare(cluster: Cluster, keys_dir: Path) -> None:
    engine = create_async_engine(cluster.url)
    try:
        await migrate.upgrade(engine)
        registry = Registry(build_services(make_settings(cluster.url, keys_dir), engine))
        await registry.client("spa", public=True, grant_types=("password", "refresh_token"))
        await registry.user("alice", "correct horse")
    finally:
        await engine.dispose()


async def pooled_connections_on(cluster: Cluster) -> int:
    found = await sql(
        cluster,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        f"AND pid <> pg_backend_pid() AND application_name <> '{APPLICATION_NAME}'",
    )
    assert isinstance(found, int)
    return found


async def listeners_on(cluster: Cluster) -> int:
    found = await sql(
        cluster,
        f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APPLICATION_NAME}'",
    )
    assert isinstance(found, int)
    return found


async def test_the_server_follows_the_primary_among_several_hosts(tmp_path: Path) -> None:
    async with own_cluster() as a, own_standby(a) as b:
        keys_dir = tmp_path / "keys"
        await prepare(a, keys_dir)
        assert await sql(b, "SELECT pg_is_in_recovery()") is True
        overrides = {"DB_POOL_SIZE": str(POOL), "REFRESH_REUSE_GRACE": "60"}
        async with (
            serving(1, multi_host_url(b, a), keys_dir, tmp_path, overrides) as (server,),
            httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=15) as http,
        ):
            login = await password_login(http)  # writes: only A can take them
            assert login.status_code == 200, login.text
            token = login.json()["refresh_token"]
            statuses: Counter[int] = Counter()

            async def refresh() -> httpx.Response:
                nonlocal token
                response = await http.post(
                    "/refresh", data={"refresh_token": token, "client_id": "spa"}
                )
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    token = response.json()["refresh_token"]
                else:
                    assert response.status_code == 503, response.text
                    assert response.json()["error"] == "temporarily_unavailable"
                return response

            for _ in range(POOL + 1):  # every pooled connection is A's by now
                assert (await refresh()).status_code == 200
            assert await pooled_connections_on(a) >= 1

            # The switchover: A fenced, B caught up and promoted.
            await sql(a, "ALTER SYSTEM SET default_transaction_read_only = on")
            await sql(a, "SELECT pg_reload_conf()")
            await caught_up(a, b)
            assert await sql(b, "SELECT pg_promote(wait => true)") is True

            with anyio.fail_after(20):
                while (await refresh()).status_code != 200:
                    await anyio.sleep(0.05)
            for _ in range(AFTER):
                response = await refresh()
                assert response.status_code == 200, f"{response.text}\n{errors(server.log)}"
            assert await pooled_connections_on(a) == 0, "a pooled connection is still on A"
            # The one connection that listens for changes leaves A at its next check.
            with anyio.fail_after(15):
                while await listeners_on(b) == 0:
                    await anyio.sleep(0.1)
            assert await listeners_on(a) == 0
            assert statuses.keys() <= {200, 503}, f"{statuses}\n{errors(server.log)}"
