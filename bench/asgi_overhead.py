"""CPU cost per request of the ASGI stack, in-process: no sockets, no uvicorn, no other process.

    .venv/bin/python bench/asgi_overhead.py [--requests 20000] [--rounds 5]

Counts CPU time (time.process_time, this process only), so it stays comparable while the
machine is busy, unlike wrk figures. Compares, for the same JWKS bytes:
- bare: a Starlette app with one Route returning the bytes (the wrk benchmark's ceiling);
- authserver: the real app (create_app) on a SQLite database in a temp dir, with logging and
  the multiprocess metrics configured as `authserver serve` configures them.
And client_credentials at /token (RS256 and EdDSA) against the bare signing call.
Best round of each, in microseconds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CC_BODY = b"grant_type=client_credentials"
Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope_for(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip


async def drive(app: Asgi, scope: dict[str, Any], body: bytes, count: int) -> tuple[float, int]:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    started, main_started = time.process_time(), time.thread_time()
    for _ in range(count):
        await app(dict(scope), receive, send)
    print(
        f"  {scope['path']}: main thread {(time.thread_time() - main_started) / count * 1e6:.1f} µs"
    )
    return (time.process_time() - started) / count * 1e6, status


async def lifespan(app: Asgi) -> Callable[[], Awaitable[None]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    answer = await outbox.get()
    assert answer["type"] == "lifespan.startup.complete", answer

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


def bare_app(body: bytes) -> Asgi:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def jwks(request: Any) -> Response:
        return Response(body, media_type="application/jwk-set+json")

    return Starlette(routes=[Route("/.well-known/jwks.json", jwks)])


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="asgi-overhead-"))
    os.environ.update(
        AUTHSERVER_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/db.sqlite",
        AUTHSERVER_KEYS_DIR=str(workdir / "keys"),
        AUTHSERVER_SIGNING_ALG=args.alg,
        PROMETHEUS_MULTIPROC_DIR=str(workdir),
    )
    import logging

    from authserver.app import create_app
    from authserver.config import load_settings
    from authserver.telemetry import logs

    logs.configure("info")
    logs.skip_unused_record_fields()
    # The access lines go to a file: this measures making them, not a terminal's speed.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(workdir / "log.jsonl", "w"))  # noqa: SIM115
    settings = load_settings()
    import subprocess

    env = {**os.environ}
    run = [str(Path(sys.executable).parent / "authserver")]
    subprocess.run([*run, "migrate"], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [*run, "clients", "create", "svc", "--grant", "client_credentials", "--scope", "profile"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    secret = out.strip().splitlines()[-1]
    app = create_app(settings)
    stop = await lifespan(app)
    body = app.state.services.keys.ring.jwks_body
    bare = bare_app(body)
    basic = base64.b64encode(f"svc:{secret}".encode()).decode()
    cc_headers = [
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"authorization", f"Basic {basic}".encode()),
    ]
    cases = [
        ("JWKS bare Starlette", bare, scope_for("GET", "/.well-known/jwks.json", []), b""),
        ("JWKS authserver", app, scope_for("GET", "/.well-known/jwks.json", []), b""),
        ("client_credentials", app, scope_for("POST", "/token", cc_headers), CC_BODY),
    ]  # fmt: skip
    if args.only:
        cases = [case for case in cases if args.only in case[0]]
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, target, scope, payload in cases:
            count = args.requests if "JWKS" in name else args.requests // 10
            micros, status = await drive(target, scope, payload, count)
            assert status == 200, (name, status)
            best[name] = min(best.get(name, float("inf")), micros)
    await stop()
    for name, micros in best.items():
        print(f"{name:24} {micros:8.1f} µs/request  ({1e6 / micros:>9,.0f} per CPU-second)")
    if "JWKS authserver" in best and "JWKS bare Starlette" in best:
        share = best["JWKS bare Starlette"] / best["JWKS authserver"]
        print(f"JWKS authserver / bare: {share:.0%} of the bare rate")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="the cases whose name contains this text")
    parser.add_argument("--alg", default="RS256", choices=["RS256", "EdDSA"])
    asyncio.run(main(parser.parse_args()))
