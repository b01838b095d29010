"""CPU cost per request of the ASGI stack, in-process: no sockets, no uvicorn, no other process.

    .venv/bin/python bench/asgi_overhead.py [--requests 20000] [--rounds 5]

Counts CPU time (time.process_time, this process only), so it stays comparable while the
machine is busy, unlike wrk figures. Compares, for the same JWKS bytes:
- bare: a Starlette app with one Route returning the bytes (the wrk benchmark's ceiling);
- authserver: the real app (create_app) on a SQLite database in a temp dir, with logging and
  the multiprocess metrics configured as `authserver serve` configures them.
And client_credentials at /token (RS256 and EdDSA) against the bare signing call, and refresh
rotation (one family, each request spending the token the one before was handed; on Postgres
with --database, where the rotation runs straight through asyncpg as deployed). Best round of
each, in microseconds per request; --cprofile then profiles each case.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
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


class Chain:
    """The body of a refresh: each request spends the token the one before it was handed."""

    PREFIX = b"grant_type=refresh_token&client_id=app&refresh_token="

    def __init__(self, first: bytes) -> None:
        self.first: bytes | None = first  # the login that starts the family
        self.token = b""

    def body(self) -> bytes:
        if self.first is not None:
            first, self.first = self.first, None
            return first
        return self.PREFIX + self.token

    def answered(self, body: bytes) -> None:
        if found := re.search(rb'"refresh_token":"([^"]+)"', body):
            self.token = found.group(1)


async def drive(
    app: Asgi, scope: dict[str, Any], body: bytes | Chain, count: int
) -> tuple[float, int]:
    status = 0

    async def receive() -> dict[str, Any]:
        payload = body.body() if isinstance(body, Chain) else body
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif isinstance(body, Chain) and message["type"] == "http.response.body":
            body.answered(message.get("body", b""))

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


async def chain(app: Asgi, password: str) -> Chain:
    """A refresh family, started by one password login through the app."""
    family = Chain(f"grant_type=password&client_id=app&username=bench&password={password}".encode())
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    await drive(app, scope_for("POST", "/token", form), family, 1)
    assert family.token, "the login gave no refresh token"
    return family


def bare_app(body: bytes) -> Asgi:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def jwks(request: Any) -> Response:
        return Response(body, media_type="application/jwk-set+json")

    return Starlette(routes=[Route("/.well-known/jwks.json", jwks)])


async def profiled(cases: list[Any], args: argparse.Namespace) -> None:
    """cProfile over each case's requests (after the timed rounds): where the µs go, the
    top --top by --sort. cProfile inflates small Python calls; read it for ranking, not for µs."""
    import cProfile
    import pstats

    for name, target, scope, payload in cases:
        profile = cProfile.Profile()
        profile.enable()
        await drive(target, scope, payload, args.requests // 10)
        profile.disable()
        print(f"--- {name}: cProfile, {args.requests // 10} requests, by own time")
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="asgi-overhead-"))
    os.environ.update(
        AUTHSERVER_DATABASE_URL=args.database or f"sqlite+aiosqlite:///{workdir}/db.sqlite",
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
    password = "correct horse battery staple"
    user = ["users", "create", "bench", "--scope", "profile", "--password-stdin"]
    subprocess.run([*run, *user], env=env, check=True, capture_output=True, input=password.encode())
    public = ["clients", "create", "app", "--public", "--grant", "password"]
    public += ["--grant", "refresh_token", "--scope", "profile"]
    subprocess.run([*run, *public], env=env, check=True, capture_output=True)
    app = create_app(settings)
    stop = await lifespan(app)
    body = app.state.services.keys.ring.jwks_body
    bare = bare_app(body)
    basic = base64.b64encode(f"svc:{secret}".encode()).decode()
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    cc_headers = [
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"authorization", f"Basic {basic}".encode()),
    ]
    listed: list[tuple[str, Asgi, dict[str, Any], bytes | None]] = [
        ("JWKS bare Starlette", bare, scope_for("GET", "/.well-known/jwks.json", []), b""),
        ("JWKS authserver", app, scope_for("GET", "/.well-known/jwks.json", []), b""),
        ("client_credentials", app, scope_for("POST", "/token", cc_headers), CC_BODY),
        ("refresh rotation", app, scope_for("POST", "/token", form), None),
    ]  # fmt: skip
    if args.only:
        listed = [case for case in listed if args.only in case[0]]
    # The family is started by a password login (argon2): only when the case runs.
    cases: list[tuple[str, Asgi, dict[str, Any], bytes | Chain]] = [
        (n, a, s, await chain(app, password) if p is None else p) for n, a, s, p in listed
    ]
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, target, scope, payload in cases:
            count = args.requests if "JWKS" in name else args.requests // 10
            count = count // 4 if isinstance(payload, Chain) else count
            micros, status = await drive(target, scope, payload, count)
            assert status == 200, (name, status)
            best[name] = min(best.get(name, float("inf")), micros)
    if args.cprofile:
        await profiled(cases, args)
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
    parser.add_argument(
        "--database", help="AUTHSERVER_DATABASE_URL of an empty database (default: SQLite)"
    )
    parser.add_argument("--cprofile", action="store_true", help="then profile each case")
    parser.add_argument("--sort", default="tottime", help="cProfile's sort key")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--alg", default="RS256", choices=["RS256", "EdDSA"])
    asyncio.run(main(parser.parse_args()))
