"""A Postgres restart and a kill -9 of its postmaster, under refreshes through a real `serve`:
every answer is 200 or 503, never a 500, and the refreshes go on once the database is back.

The cluster is the test's own (tests/_postgres.py `own_cluster`), so it can be restarted and
killed for real. Between going down and being ready Postgres refuses connections in several
ways: reset, refused, "the database system is shutting down" and "... is starting up" (both
57P03, which SQLAlchemy raises at checkout as a plain DBAPIError), and after the kill -9 for as
long as crash recovery lasts. Each must be a 503.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from authserver.app import build_services
from authserver.db import migrate
from tests._postgres import Cluster, own_cluster
from tests.conftest import Registry, make_settings, password_login
from tests.races._instances import serving

SESSIONS = 6  # refresh chains running at once: a bounded load for a shared 2-core machine
PAUSE_AFTER_503 = 0.01  # seconds; a client retries soon, but does not spin
SETTLE = 1.0  # seconds of load before each fault and after each recovery


async def prepare(cluster: Cluster, keys_dir: Path) -> None:
    """The schema, a user and the SPA's public client, as an operator would make them."""
    engine = create_async_engine(cluster.url)
    try:
        await migrate.upgrade(engine)
        registry = Registry(build_services(make_settings(cluster.url, keys_dir), engine))
        await registry.client("spa", public=True, grant_types=("password", "refresh_token"))
        await registry.user("alice", "correct horse")
    finally:
        await engine.dispose()


def errors(log: Path) -> str:
    """The server's unhandled errors, the last line of each traceback, a few of them."""
    lines = [
        line[-300:]
        for line in log.read_text(errors="replace").splitlines()
        if "unhandled error" in line
    ]
    return "\n".join(lines[:5])


async def test_a_restart_and_a_killed_postmaster_get_503_never_500(tmp_path: Path) -> None:
    async with own_cluster() as cluster:
        keys_dir = tmp_path / "keys"
        await prepare(cluster, keys_dir)
        # Grace: a refresh the database committed but whose answer was lost to the fault is
        # re-presented by its client, which is then tolerated instead of revoking the family
        # (an invalid_grant, not what this test is about).
        overrides = {"REFRESH_REUSE_GRACE": "60"}
        async with (
            serving(1, cluster.url, keys_dir, tmp_path, overrides) as (server,),
            httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=15) as http,
        ):
            tokens = []
            for _ in range(SESSIONS):
                login = await password_login(http)
                assert login.status_code == 200, login.text
                tokens.append(login.json()["refresh_token"])

            statuses: Counter[int] = Counter()
            unexpected: list[str] = []
            last: dict[int, int] = {}  # chain → its last status
            stopping = anyio.Event()

            async def refresh_chain(index: int) -> None:
                token = tokens[index]
                while not stopping.is_set():
                    response = await http.post(
                        "/refresh", data={"client_id": "spa", "refresh_token": token}
                    )
                    statuses[response.status_code] += 1
                    last[index] = response.status_code
                    if response.status_code == 200:
                        token = response.json()["refresh_token"]
                    elif response.status_code == 503:
                        await anyio.sleep(PAUSE_AFTER_503)
                    else:
                        unexpected.append(f"{response.status_code} {response.text}")

            async def faults() -> None:
                # A restart (a fast shutdown, started again at once), then the postmaster
                # killed, twice: crash recovery at each start, and 57P03 while it lasts.
                for end in (cluster.stop, cluster.kill, cluster.kill):
                    await anyio.sleep(SETTLE)
                    await anyio.to_thread.run_sync(end)
                    cluster.start()
                    await anyio.to_thread.run_sync(cluster.wait_ready)
                await anyio.sleep(SETTLE)
                stopping.set()

            started = time.monotonic()
            with anyio.fail_after(40):
                async with anyio.create_task_group() as tasks:
                    for index in range(SESSIONS):
                        tasks.start_soon(refresh_chain, index)
                    tasks.start_soon(faults)

    assert statuses[500] == 0, f"{statuses}; the server's errors:\n{errors(server.log)}"
    assert not unexpected, f"{statuses}: {unexpected[:5]}"
    assert statuses[503] > 0, f"no outage was seen: {statuses}"
    assert statuses[200] > SESSIONS
    # Every chain refreshed again after the last fault: nothing was revoked or left broken.
    assert set(last.values()) == {200}, last
    assert time.monotonic() - started < 30
