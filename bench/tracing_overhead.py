"""What traces cost: client_credentials/s and the workers' CPU per request with AUTHSERVER_TRACING
off and on, in the same run, alternated.

    .venv/bin/python bench/tracing_overhead.py [--rounds 5] [--duration 8] [--connections 32]
                                               [--workers 2] [--parts] [--in-process [N]]
                                               [--env NAME=VALUE ...]

Needs Postgres on 127.0.0.1:5432 (user postgres, trust auth). One fresh database, migrated and
given a confidential client with the CLI; one `authserver serve --workers N` per mode on it:

- `off`: AUTHSERVER_TRACING=off (the default);
- `on`: AUTHSERVER_TRACING=otlp at AUTHSERVER_TRACING_SAMPLE_RATIO=1 (the default ratio), every
  request traced and exported to a local OTLP/HTTP sink (a process of its own that answers
  every export 200 and counts them; it does not decode them, as a collector's cost is not ours);
- `on 0.1`: the same at ratio 0.1, a trace in ten recorded;
- `on 0`: ratio 0: the middleware runs, no span is recorded or exported: its own cost.

All run throughout; the load goes to one at a time, in turn, `--rounds` times, each load a
warm-up of 2 s and then `--duration` seconds measured. Per load: requests/s, the workers'
CPU per request (their /proc utime+stime, the exporter's thread included, over the answers)
and the 1-minute load average when it began. Per mode: the median of its per-round ratios to
that round's `off` and their spread (min-max): the machine may be shared, so the ratio within
a round is what counts, and CPU per request more than requests/s.

The load is generated here, not by wrk (not installed on every machine this runs on): one
process, uvloop, `--connections` keep-alive connections each sending the same POST /token
(client_credentials, Basic credentials) as soon as the previous answer is in; only 200s count.
It shares the machine's cores with the servers, the same for every mode.

`--parts` first measures, in this process, what a request span costs the event loop's thread
(our middleware around a bare ASGI app; CPU time of the thread) and what the exporter's thread
spends per span to encode and send batches of several sizes (OTEL_BSP_MAX_EXPORT_BATCH_SIZE).

`--in-process N` measures without servers, sockets or a load generator, so the machine's load
and the kernel's spreading of connections over workers stay out of it: each mode, as is and
with `gc.collect(); gc.freeze()` after start-up ("+freeze", what `serve` does since), is a fresh
process of its own that builds the app as a worker does, starts it, and sends N
client_credentials requests straight into it (ASGI, one at a time, after N/5 of warm-up); the
modes alternate, each round in another order. Per process: the event loop's thread's CPU per
request, the whole process's (the exporter's thread included), the garbage collector's
collections per generation and their wall time, and the resident memory before and after.

At the end the servers are stopped and the database dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from http_bench import (
    AUTHSERVER,
    basic_auth,
    db_exec,
    free_port,
    stop,
    wait_ready,
    worker_pids,
)

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
    # wait_ready gives up after 30 s, which a shared, loaded machine can exceed: up to 90 s.
    for attempt in range(3):
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", process, log, workers)
            break
        except SystemExit:
            if process.poll() is not None or attempt == 2:
                raise
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


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of `pids`, all their threads, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / ticks


def measure(port: int, pids: list[int], request: bytes, args: argparse.Namespace) -> Load:
    import uvloop

    uvloop.run(load(port, request, args.connections, 2))  # warm-up
    load_average = os.getloadavg()[0]
    cpu = cpu_seconds(pids)
    rate = uvloop.run(load(port, request, args.connections, args.duration))
    cpu = cpu_seconds(pids) - cpu
    return Load(rate, cpu / (rate * args.duration) * 1e6, load_average)


@dataclass(frozen=True)
class Load:
    rate: float  # client_credentials/s
    cpu_us: float  # the workers' CPU per answer
    load_average: float  # 1-minute, when the load began


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def parts(sink_port: int) -> None:
    """Per span, in this process: the middleware on the event loop's thread, and the exporter."""
    import asyncio

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from starlette.routing import Route

    from authserver.telemetry.tracing import TracedRequests, Tracing

    route = Route("/token", lambda request: None, methods=["POST"])
    scope = {"type": "http", "method": "POST", "path": "/token", "headers": [], "scheme": "http"}
    scope["http_version"] = "1.1"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = route
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def nothing(message: object = None) -> None:
        pass

    async def requests(traced: object, n: int) -> float:
        started = time.thread_time()
        for _ in range(n):
            await traced(dict(scope), nothing, nothing)  # type: ignore[operator]
        return (time.thread_time() - started) / n * 1e6

    n = 20_000
    bare = asyncio.run(requests(app, n))
    print(f"parts: a bare ASGI app {bare:.1f} µs a request (event loop's thread); over it:")
    kept = InMemorySpanExporter()
    cases: list[tuple[str, float, object | None]] = [
        ("not sampled (ratio 0)", 0.0, None),
        ("recorded, no processor", 1.0, None),
        ("recorded, queued to a BatchSpanProcessor", 1.0, "batch"),
        ("recorded, kept (to encode below)", 1.0, SimpleSpanProcessor(kept)),
    ]
    for name, ratio, processor in cases:
        tracing = Tracing(ratio, environ={})
        if processor == "batch":
            # Its thread would export to nowhere: a delay so long it never runs here.
            processor = BatchSpanProcessor(
                InMemorySpanExporter(),
                schedule_delay_millis=10**9,
                max_queue_size=n * 2,
                max_export_batch_size=n * 2,
            )
        if processor is not None:
            tracing.provider.add_span_processor(processor)  # type: ignore[arg-type]
        cost = asyncio.run(requests(TracedRequests(app, tracing.tracer), n)) - bare
        print(f"  {name:42} {cost:6.1f} µs")
        tracing.provider.shutdown()  # type: ignore[no-untyped-call]
    spans = list(kept.get_finished_spans())
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
    exporter = OTLPSpanExporter()
    print("parts: the exporter's thread, per request span (CPU of this thread):")
    for size in (64, 512, 2048):
        batches = [spans[i : i + size] for i in range(0, len(spans) - size + 1, size)]
        started = time.thread_time()
        for batch in batches:
            encode_spans(batch).SerializePartialToString()
        encoded = (time.thread_time() - started) / (len(batches) * size) * 1e6
        started = time.thread_time()
        for batch in batches:
            exporter.export(batch)
        sent = (time.thread_time() - started) / (len(batches) * size) * 1e6
        print(f"  batches of {size:5}: encoded {encoded:5.1f} µs, encoded and sent {sent:5.1f} µs")
    exporter.shutdown()


FREEZE = "+freeze"


def child(count: int, basic: str, freeze: bool) -> dict[str, float]:
    """In a process of its own: the app as a worker builds it, started, then `count`
    client_credentials requests sent into it; what they cost this process."""
    import gc
    import logging

    import uvloop

    from authserver.app import create_app
    from authserver.config import load_settings
    from authserver.keys.epoch import epoch_from_environment
    from authserver.telemetry import logs

    # As `serve` has it: JSON access lines (to a file: making them is measured, not a terminal).
    logs.configure("info")
    logs.skip_unused_record_fields()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    app = create_app(load_settings(), key_epoch=epoch_from_environment())
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"authorization", basic.encode()),
    ]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/token", "raw_path": b"/token", "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    collections = [0, 0, 0]
    gc_seconds = [0.0]
    began = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            collections[info["generation"]] += 1
            gc_seconds[0] += time.perf_counter() - began[0]

    async def run() -> dict[str, float]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        lifespan = asyncio.create_task(app(lifespan_scope, inbox.get, outbox.put))
        started = await outbox.get()
        assert started["type"] == "lifespan.startup.complete", started
        if freeze:
            gc.collect()
            gc.freeze()
        statuses: dict[int, int] = {}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"grant_type=client_credentials"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        for _ in range(count // 5):  # warm-up: caches, the client, the first batches
            await app(dict(scope), receive, send)
        rss_before = _rss_kib()
        gc.callbacks.append(timed)
        thread, process = time.thread_time(), time.process_time()
        for _ in range(count):
            await app(dict(scope), receive, send)
        thread, process = time.thread_time() - thread, time.process_time() - process
        gc.callbacks.remove(timed)
        rss_after = _rss_kib()
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan
        assert set(statuses) == {200}, statuses
        return {
            "loop_us": thread / count * 1e6,
            "process_us": process / count * 1e6,
            "gen0": collections[0] / count * 1000,
            "gen1": collections[1] / count * 1000,
            "gen2": collections[2] / count * 1000,
            "gc_us": gc_seconds[0] / count * 1e6,
            "rss_before_mib": rss_before / 1024,
            "rss_growth_kib": rss_after - rss_before,
            "frozen": gc.get_freeze_count(),
        }

    return uvloop.run(run())


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def in_process(env: dict[str, str], basic: str, args: argparse.Namespace) -> None:
    modes = [m + f for m in MODES for f in ("", FREEZE)]
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for round_ in range(1, args.rounds + 1):
        order = modes[round_ % len(modes) :] + modes[: round_ % len(modes)]
        for mode in order:
            load_average = os.getloadavg()[0]
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(args.in_process), basic, mode],
                env={**env, **MODES[mode.removesuffix(FREEZE)]},
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise SystemExit(f"{mode}: {done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results[mode].append(result)
            print(
                f"round {round_} {mode:14}: loop {result['loop_us']:6.1f} µs, process "
                f"{result['process_us']:6.1f} µs a request; gc per 1000 requests "
                f"{result['gen0']:.0f}/{result['gen1']:.1f}/{result['gen2']:.2f}, "
                f"{result['gc_us']:5.1f} µs a request in gc; RSS {result['rss_before_mib']:.0f} "
                f"MiB +{result['rss_growth_kib']:.0f} KiB; load {load_average:.1f}"
            )
    for mode, runs in results.items():
        base = results["off"]
        loops = [r["loop_us"] / o["loop_us"] for r, o in zip(runs, base, strict=True)]
        procs = [r["process_us"] / o["process_us"] for r, o in zip(runs, base, strict=True)]
        print(
            f"{mode:14} median loop {statistics.median(r['loop_us'] for r in runs):6.1f} µs, "
            f"process {statistics.median(r['process_us'] for r in runs):6.1f} µs, "
            f"gc {statistics.median(r['gc_us'] for r in runs):5.1f} µs, "
            f"gen2 per 1000 {statistics.median(r['gen2'] for r in runs):.2f}; of off: "
            f"loop {spread(loops)}, process {spread(procs)}"
        )


MODES: dict[str, dict[str, str]] = {
    "off": {},
    "on": {"AUTHSERVER_TRACING": "otlp"},
    "on 0.1": {"AUTHSERVER_TRACING": "otlp", "AUTHSERVER_TRACING_SAMPLE_RATIO": "0.1"},
    "on 0": {"AUTHSERVER_TRACING": "otlp", "AUTHSERVER_TRACING_SAMPLE_RATIO": "0"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parts", action="store_true")
    parser.add_argument("--in-process", type=int, nargs="?", const=5000, metavar="N")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for every mode's process, e.g. OTEL_BSP_MAX_EXPORT_BATCH_SIZE=128",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # N, Basic, mode
    args = parser.parse_args()
    if args.child:
        count, basic, mode = args.child
        print(json.dumps(child(int(count), basic, mode.endswith(FREEZE))))
        return

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
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
        **dict(extra.split("=", 1) for extra in args.env),
    }
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    processes: list[subprocess.Popen[bytes]] = []
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)])
    processes.append(sink)
    db_exec(f"CREATE DATABASE {db}")
    try:
        if args.parts:
            time.sleep(0.5)  # the sink listening
            parts(sink_port)

        def cli(*argv: str) -> str:
            done = subprocess.run([AUTHSERVER, *argv], env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"authserver {' '.join(argv)}: {done.stderr}")
            return done.stdout.strip()

        cli("migrate")
        secret = cli(
            "clients", "create", "svc", "--grant", "client_credentials", "--scope", "profile"
        )
        if args.in_process:
            in_process(env, basic_auth("svc", secret), args)
            return
        servers: dict[str, tuple[int, list[int]]] = {}
        for mode, extra in MODES.items():
            process, port = serve({**env, **extra}, workdir, mode, args.workers)
            processes.append(process)
            servers[mode] = (port, worker_pids(process.pid, args.workers))
        body = b"grant_type=client_credentials"
        request = (
            b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: {basic_auth('svc', secret)}\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        loads: dict[str, list[Load]] = {mode: [] for mode in servers}
        for round_ in range(1, args.rounds + 1):
            # Each round in another order, so no mode always follows the same one.
            order = list(servers)[round_ % len(servers) :] + list(servers)[: round_ % len(servers)]
            for mode in order:
                port, pids = servers[mode]
                done = measure(port, pids, request, args)
                loads[mode].append(done)
                print(
                    f"round {round_} {mode:7}: {done.rate:7,.0f} client_credentials/s, "
                    f"{done.cpu_us:5.0f} µs CPU a request (workers), load {done.load_average:.1f}"
                )
        with urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/") as answer:
            exports, size = answer.read().decode().split()
        off = loads["off"]
        for mode, runs in loads.items():
            rates = [d.rate / o.rate for d, o in zip(runs, off, strict=True)]
            cpus = [d.cpu_us / o.cpu_us for d, o in zip(runs, off, strict=True)]
            print(
                f"{mode:7} median {statistics.median(d.rate for d in runs):7,.0f}/s, "
                f"{statistics.median(d.cpu_us for d in runs):5.0f} µs CPU; "
                f"of off: rate {spread(rates)}, CPU {spread(cpus)}"
            )
        averages = [d.load_average for runs in loads.values() for d in runs]
        print(f"load average during the loads: {min(averages):.1f}-{max(averages):.1f}")
        print(f"the sink took {exports} exports, {int(size):,} bytes")
    finally:
        for process in reversed(processes):
            stop(process)
        db_exec(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
