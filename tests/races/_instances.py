"""Real `authserver serve` processes on one database, started and stopped as an operator would.

Each gets its own port and log file; the settings come from the environment only, like a
deployment's, so every instance reads the same keys, KEK and database.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from tests._pgbouncer import direct_url_for
from tests.conftest import ISSUER, KEK
from tests.test_cli import AUTHSERVER, free_port


@dataclass(frozen=True)
class Instance:
    url: str
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def instance_env(database_url: str, keys_dir: Path, overrides: Mapping[str, str]) -> dict[str, str]:
    """The process environment: ours without any AUTHSERVER_ setting, then the instance's.
    `overrides` are named without the prefix, e.g. {"JWKS_MAX_AGE": "2"}."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        {
            "AUTHSERVER_DATABASE_URL": database_url,
            # Set only through the test PgBouncer: migrations and LISTEN go straight to Postgres.
            "AUTHSERVER_DATABASE_DIRECT_URL": direct_url_for(database_url) or "",
            "AUTHSERVER_ISSUER": ISSUER,
            "AUTHSERVER_KEY_ENCRYPTION_KEY": KEK,
            "AUTHSERVER_KEYS_DIR": str(keys_dir),
            # Cheap argon2, as in make_settings: logins are not what these tests measure.
            "AUTHSERVER_ARGON2_TIME_COST": "1",
            "AUTHSERVER_ARGON2_MEMORY_KIB": "1024",
            "AUTHSERVER_ARGON2_PARALLELISM": "1",
        }
    )
    env.update({f"AUTHSERVER_{name}": value for name, value in overrides.items()})
    return env


@asynccontextmanager
async def serving(
    count: int,
    database_url: str,
    keys_dir: Path,
    logs_dir: Path,
    overrides: Mapping[str, str] | None = None,
) -> AsyncIterator[list[Instance]]:
    """Starts `count` instances at once, yields them when every one answers /readyz, and
    stops them with SIGTERM (SIGKILL after 15 s) however the block ends."""
    env = instance_env(database_url, keys_dir, overrides or {})
    processes: list[subprocess.Popen[bytes]] = []
    instances: list[Instance] = []
    try:
        for index in range(count):
            port = free_port()
            instance = Instance(f"http://127.0.0.1:{port}", logs_dir / f"instance-{index}.log")
            with instance.log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [AUTHSERVER, "serve", "--port", str(port)],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            instances.append(instance)
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            for instance, process in zip(instances, processes, strict=True):
                with anyio.fail_after(60):
                    while not await ready(http, instance.url):
                        assert process.poll() is None, instance.log_tail()
                        await anyio.sleep(0.1)
        yield instances
    finally:
        stop(processes)


async def ready(http: httpx.AsyncClient, url: str) -> bool:
    """Whether the server at `url` answers /readyz with 200 (not yet listening: False)."""
    try:
        return (await http.get(f"{url}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


def stop(processes: list[subprocess.Popen[bytes]], grace: float = 15) -> None:
    """SIGTERM to every process at once, then SIGKILL to any still there after `grace` s."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
