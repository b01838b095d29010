"""Does a key reload stall the event loop? JWKS GET latency across reloads, beside a ceiling.

    .venv/bin/python bench/reload_stall.py [--duration 20] [--connections 4] [--alg RS256]

Starts two real `authserver serve` processes (one worker each, an SQLite file of their own)
that differ in one setting: AUTHSERVER_JWKS_MAX_AGE=4, so the server reloads its signing keys
every second (keys/manager.py: reload_interval), and the ceiling with the default 300, which
reloads every 30 s, so not once during a run of 20 s. Each is driven in turn by the same
closed loop: `--connections` keep-alive connections, each sending GET /.well-known/jwks.json
and waiting for the answer, for `--duration` seconds. Printed per server: requests, p50, p99,
p99.9 and the worst latency. A reload that blocks the loop for 55 ms (RSA key validation)
shows in p99.9 and the worst case of the reloading server, not in the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
AUTHSERVER = str(VENV_BIN / "authserver")
REQUEST = b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: bench\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(workdir: Path, alg: str, max_age: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "AUTHSERVER_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'authserver.db'}",
        "AUTHSERVER_KEYS_DIR": str(workdir / "keys"),
        "AUTHSERVER_ISSUER": f"http://127.0.0.1:{port}",
        "AUTHSERVER_SIGNING_ALG": alg,
        "AUTHSERVER_JWKS_MAX_AGE": str(max_age),
    }
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [AUTHSERVER, "serve", "--port", str(port), "--workers", "1", "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if b" 200 " in sock.recv(4096):
                    return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"serve did not become ready; see {workdir / 'serve.log'}")


async def one_connection(port: int, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def drive(port: int, connections: int, duration: float) -> list[float]:
    latencies: list[float] = []
    until = time.perf_counter() + duration
    await asyncio.gather(*(one_connection(port, until, latencies) for _ in range(connections)))
    return sorted(latencies)


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--alg", default="RS256", choices=["RS256", "EdDSA"])
    args = parser.parse_args()
    print(f"# {platform.node()}: {os.cpu_count()} cores, {platform.python_version()}, {args.alg}")
    print(f"# {args.connections} connections x {args.duration:.0f} s of JWKS GET per server")
    print(
        f"{'server':<36} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8}"
    )
    for label, max_age in (
        ("reloading every 1 s (max-age 4)", 4),
        ("ceiling: no reload (max-age 300)", 300),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            proc, port = start(Path(tmp), args.alg, max_age)
            try:
                found = asyncio.run(drive(port, args.connections, args.duration))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        ms = [percentile(found, p) * 1000 for p in (50, 99, 99.9)]
        figures = [f"{len(found):>9}", *(f"{v:>9.2f}" for v in (*ms, found[-1] * 1000))]
        print(f"{label:<36} " + " ".join(figures))


if __name__ == "__main__":
    main()
