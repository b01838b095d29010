"""`authserver serve --workers 2`, for real: whichever worker answers a scrape, /metrics reports
what every worker counted (prometheus-client's multiprocess mode,
authserver/telemetry/multiprocess.py).

Requests go out on a new connection each, so both workers take some; the per-worker files in
the shared directory show that they did, and that a scrape is not one worker's share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ISSUER, KEK
from tests.races._instances import ready, stop
from tests.test_cli import AUTHSERVER, free_port

REQUESTS = "authserver_http_requests_total"
HEALTHZ = {"method": "GET", "route": "/healthz", "status": "200"}
METRICS = {"method": "GET", "route": "/metrics", "status": "200"}


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    metrics_dir: Path  # the shared directory, whoever made it


def environment(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSERVER_", "PROMETHEUS_"))}
    env.update(
        {
            "AUTHSERVER_DATABASE_URL": database_url,
            "AUTHSERVER_ISSUER": ISSUER,
            "AUTHSERVER_KEY_ENCRYPTION_KEY": KEK,
            "AUTHSERVER_KEYS_DIR": str(tmp_path / "keys"),
            "TMPDIR": str(tmp_path / "tmp"),  # where `serve` makes its private directory
        }
    )
    (tmp_path / "tmp").mkdir()
    return env


@asynccontextmanager
async def serving(env: dict[str, str], tmp_path: Path) -> AsyncIterator[Server]:
    """`serve --workers 2`, yielded once it answers; stopped with SIGTERM however the block ends."""
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [AUTHSERVER, "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            with anyio.fail_after(60):
                while not await ready(http, url):
                    assert process.poll() is None, log.read_text()
                    await anyio.sleep(0.1)
        given = env.get("PROMETHEUS_MULTIPROC_DIR")
        made = list((tmp_path / "tmp").glob("authserver-metrics-*"))
        metrics_dir = Path(given) if given else made[0]
        assert len(made) == (0 if given else 1), made
        yield Server(url, process, log, metrics_dir)
    finally:
        stop([process], grace=20)


def fresh_connections() -> httpx.AsyncClient:
    # No keep-alive: every request is a new connection, which any worker may accept.
    return httpx.AsyncClient(
        trust_env=False, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    )


def scraped(text: str, name: str, labels: dict[str, str]) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def by_worker(metrics_dir: Path, name: str, labels: dict[str, str]) -> dict[int, float]:
    """What each process's own file holds for `name`: pid → value."""
    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        counts[pid] = sum(
            sample.value
            for family in merged
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )
    return counts


async def send_healthz(server: Server, at_least: int) -> int:
    """GET /healthz, one after another (a burst would be accepted whole by the first worker to
    wake), until both workers have answered some (one may still be starting); how many sent."""
    sent = 0
    async with fresh_connections() as http:
        with anyio.fail_after(60):
            while sent < at_least or len(answering(server, HEALTHZ)) < 2:
                assert (await http.get(f"{server.url}/healthz")).status_code == 200
                sent += 1
    return sent


def answering(server: Server, labels: dict[str, str]) -> set[int]:
    """The workers whose own counters show they answered such a request."""
    return {pid for pid, n in by_worker(server.metrics_dir, REQUESTS, labels).items() if n}


async def scrape_until_both_workers_answered(server: Server) -> list[float]:
    """Scrapes on new connections until each worker has answered one; returns what each
    scrape reported for /healthz."""
    seen: list[float] = []
    async with fresh_connections() as http:
        with anyio.fail_after(60):
            while len(seen) < 4 or len(answering(server, METRICS)) < 2:
                response = await http.get(f"{server.url}/metrics")
                assert response.status_code == 200, response.text
                seen.append(scraped(response.text, REQUESTS, HEALTHZ))
    return seen


def plant_stale_count(metrics_dir: Path) -> Path:
    """A counter file an earlier run left, claiming 1000 /healthz requests."""
    path = metrics_dir / "counter_4194304.db"  # past any pid this run can have (pid_max)
    stale = MmapedDict(str(path))  # type: ignore[no-untyped-call]
    key = mmap_key(REQUESTS, REQUESTS, list(HEALTHZ), list(HEALTHZ.values()), "HTTP requests.")
    stale.write_value(key, 1000.0, 0.0)  # type: ignore[no-untyped-call]
    stale.close()  # type: ignore[no-untyped-call]
    return path


@pytest.mark.parametrize("directory", ["private", "operator's"])
async def test_a_scrape_reports_every_workers_requests_whichever_worker_answers(
    database_url: str, tmp_path: Path, directory: str
) -> None:
    env = environment(database_url, tmp_path)
    stale = None
    if directory == "operator's":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
        (tmp_path / "prom").mkdir()
        stale = plant_stale_count(tmp_path / "prom")

    async with serving(env, tmp_path) as server:
        if stale is not None:
            assert not stale.exists()  # cleared before the workers started
        else:
            assert server.metrics_dir.stat().st_mode & 0o777 == 0o700
        sent = await send_healthz(server, at_least=40)  # until both workers took some

        assert sum(by_worker(server.metrics_dir, REQUESTS, HEALTHZ).values()) == sent
        # Every scrape, whichever worker answers it, has all of them.
        assert set(await scrape_until_both_workers_answered(server)) == {sent}

    assert server.process.returncode == 0, server.log.read_text()
    # The private directory goes with the server; the operator's stays theirs.
    assert server.metrics_dir.exists() == (directory == "operator's")


async def test_a_killed_worker_keeps_its_counts_and_drops_its_live_gauges(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(environment(database_url, tmp_path), tmp_path) as server:
        sent = await send_healthz(server, at_least=40)
        per_worker = by_worker(server.metrics_dir, REQUESTS, HEALTHZ)
        victim, survivor = sorted(per_worker, key=lambda pid: per_worker[pid])[-2:]
        live_gauges = server.metrics_dir / f"gauge_livesum_{victim}.db"
        assert live_gauges.exists()

        os.kill(victim, signal.SIGKILL)  # no cleanup of its own can run
        async with fresh_connections() as http:
            with anyio.fail_after(30):
                while True:  # uvicorn reaps and replaces it; a scrape then forgets it
                    response = await http.get(f"{server.url}/metrics")
                    if response.status_code == 200 and not live_gauges.exists():
                        break
                    await anyio.sleep(0.2)
            # Its counts stay in every scrape: counters never go back.
            assert scraped(response.text, REQUESTS, HEALTHZ) == sent
        assert (server.metrics_dir / f"gauge_livesum_{survivor}.db").exists()  # still alive
        assert server.process.poll() is None, server.log.read_text()


FORKED = """
import os, sys
from authserver.telemetry import metrics
metrics.LOGINS_FAILED.inc()
child = os.fork()
if child == 0:
    metrics.LOGINS_FAILED.inc()
    os._exit(0)
os.waitpid(child, 0)
print(child)
"""


def test_a_forked_process_counts_in_files_of_its_own(tmp_path: Path) -> None:
    """The values know their process by a pid remembered in memory (telemetry/multiprocess.py,
    not os.getpid() per increment): a fork must still renew it, or the child would write into
    its parent's files and a scrape that merges them per pid would lose one of the two."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", FORKED], env=env, capture_output=True, text=True, check=True
    )
    child = int(done.stdout)

    files = sorted(path.name for path in tmp_path.glob("counter_*.db"))
    assert f"counter_{child}.db" in files and len(files) == 2
    merged = MultiProcessCollector(None, str(tmp_path))  # type: ignore[no-untyped-call]
    failed = [
        sample.value
        for family in merged.collect()  # type: ignore[no-untyped-call]
        for sample in family.samples
        if sample.name == "authserver_logins_failed_total"
    ]
    assert failed == [2.0]
