"""What traces cost: client_credentials/s with AUTHSERVER_TRACING off and on, in the same run.

    .venv/bin/python bench/tracing_overhead.py [--rounds 3] [--duration 10] [--connections 32]
                                               [--workers 2]

Needs Postgres on 127.0.0.1:5432 (user postgres, trust auth). One fresh database, migrated and
given a confidential client with the CLI; three `authserver serve --workers N` on it:

- `off`: AUTHSERVER_TRACING=off (the default);
- `on`: AUTHSERVER_TRACING=otlp, every request traced and exported to a local OTLP/HTTP sink (a
  process of its own that answers every export 200 and counts them; it does not decode them,
  as a collector's cost is not ours);
- `unsampled`: the same with OTEL_TRACES_SAMPLER=always_off: the instrumentation runs, no span
  is recorded or exported. The gap to `off` is the instrumentation's own cost, the gap to `on`
  recording and exporting.

All run throughout; the load goes to one at a time, in turn, `--rounds` times, each load a
warm-up of 2 s and then `--duration` seconds measured.

The load is generated here, not by wrk (not installed on every machine this runs on): one
process, uvloop, `--connections` keep-alive connections each sending the same POST /token
(client_credentials, Basic credentials) as soon as the previous answer is in; only 200s count.
It shares the machine's cores with the servers, the same for both modes.

Printed: each load's requests/s, and the median per mode against `off`. At the end the servers are
stopped and the database dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from http_bench import AUTHSERVER, basic_auth, db_exec, free_port, stop, wait_ready

SINK = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

exports = spans_bytes = 0

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global exports, spans_bytes
        spans_bytes += len(self.rfile.read(int(self.headers["content-length"])))
        exports += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        body = f"{exports} {spans_bytes}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


def serve(
    env: dict[str, str], workdir: Path, name: str, workers: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = workdir / f"{name}.log"
    env = {**env, "AUTHSERVER_ISSUER": f"http://127.0.0.1:{port}"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [AUTHSERVER, "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    wait_ready(f"http://127.0.0.1:{port}/healthz", process, log, workers)
    return process, port


async def load(port: int, request: bytes, connections: int, seconds: float) -> float:
    """Successful answers per second over `seconds`, from `connections` keep-alive loops."""
    ok = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200 "):
                    ok += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(connections)))
    return ok / (time.monotonic() - started)


def measure(port: int, request: bytes, args: argparse.Namespace) -> float:
    import uvloop

    uvloop.run(load(port, request, args.connections, 2))  # warm-up
    return uvloop.run(load(port, request, args.connections, args.duration))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    db = f"authserver_tracebench_{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="tracebench-"))
    sink_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AUTHSERVER_", "OTEL_"))},
        "AUTHSERVER_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{db}",
        "AUTHSERVER_KEY_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AUTHSERVER_KEYS_DIR": str(workdir / "keys"),
        "AUTHSERVER_SIGNING_ALG": "EdDSA",
        "AUTHSERVER_PURGE_INTERVAL": "0",
    }
    traced = {
        **env,
        "AUTHSERVER_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
    }
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    db_exec(f"CREATE DATABASE {db}")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)])
        processes.append(sink)

        def cli(*argv: str) -> str:
            done = subprocess.run([AUTHSERVER, *argv], env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"authserver {' '.join(argv)}: {done.stderr}")
            return done.stdout.strip()

        cli("migrate")
        secret = cli(
            "clients", "create", "svc", "--grant", "client_credentials", "--scope", "profile"
        )
        off, off_port = serve(env, workdir, "off", args.workers)
        processes.append(off)
        on, on_port = serve(traced, workdir, "on", args.workers)
        processes.append(on)
        unsampled_env = {**traced, "OTEL_TRACES_SAMPLER": "always_off"}
        unsampled, unsampled_port = serve(unsampled_env, workdir, "unsampled", args.workers)
        processes.append(unsampled)
        ports = {"off": off_port, "on": on_port, "unsampled": unsampled_port}
        body = b"grant_type=client_credentials"
        request = (
            b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: {basic_auth('svc', secret)}\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        rates: dict[str, list[float]] = {mode: [] for mode in ports}
        for round_ in range(1, args.rounds + 1):
            for mode, port in ports.items():
                rate = measure(port, request, args)
                rates[mode].append(rate)
                print(f"round {round_} tracing {mode:9}: {rate:8,.0f} client_credentials/s")
        with urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/") as answer:
            exports, size = answer.read().decode().split()
        off = statistics.median(rates["off"])
        for mode in ports:
            median = statistics.median(rates[mode])
            print(
                f"median {mode:9} {median:8,.0f}/s: {median / off:.3f} of off "
                f"({(1 - median / off) * 100:.1f} % fewer)"
            )
        print(f"the sink took {exports} exports, {int(size):,} bytes")
    finally:
        for process in reversed(processes):
            stop(process)
        db_exec(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
