"""Sign-in latency with a second factor (issue 24): password + TOTP through HTTP on a real
`authserver serve`, under a small load.

    createdb -h 127.0.0.1 -U postgres authserver_mfabench
    .venv/bin/python bench/mfa_sign_in.py \\
        --database postgresql+asyncpg://postgres@127.0.0.1:5432/authserver_mfabench \\
        [--users 400] [--concurrency 4] [--seconds 20]

Migrates the (empty) database, makes `--users` users, each with an authenticator app (one
password hash shared by all, made at the production argon2 parameters, which the server also
uses), starts one `authserver serve` (tests/races/_instances.py, settings from the
environment), then `--concurrency` browsers sign in for `--seconds`, each sign-in with a user
not signed in before in this run (a TOTP code is accepted once per step, so a user cannot sign
in twice within 30 s): GET /authorize → GET /login → POST /login (password, argon2) → GET
/login/factor → POST /login/factor (the code from pyotp) → 303 to the app with a code. Prints
p50/p90/p99 of the whole walk and of the two POSTs, and the sign-ins per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pyotp
from sqlalchemy.ext.asyncio import create_async_engine

from authserver.accounts.second_factors import STEP_SECONDS, new_totp_secret, seal_totp
from authserver.accounts.users import new_user
from authserver.app import build_services
from authserver.config import load_settings
from authserver.db import migrate
from tests.conftest import ISSUER, Registry
from tests.http.signin import CALLBACK, PASSWORD, WEB, Flow, csrf_token, form_action, web_client
from tests.races._instances import instance_env, serving

PRODUCTION_ARGON2 = {  # config.py's defaults, which `make_settings` lowers for the tests
    "ARGON2_TIME_COST": "3",
    "ARGON2_MEMORY_KIB": "65536",
    "ARGON2_PARALLELISM": "4",
}


async def seed(database: str, keys_dir: Path, users: int) -> dict[str, str]:
    """Migrates, makes the web client and `users` users with an app each: {username: secret}."""
    engine = create_async_engine(database)
    await migrate.upgrade(engine)
    settings = load_settings(instance_env(database, keys_dir, PRODUCTION_ARGON2))
    services = build_services(settings, engine)
    await services.keys.start()
    await web_client(Registry(services))
    password_hash = await services.passwords.hash(PASSWORD)
    secrets: dict[str, str] = {}
    now = int(time.time())
    for n in range(users):
        user = new_user(f"user{n}", password_hash, ["profile"], False)
        assert await services.users.create(user, now)
        secret, factor_id = new_totp_secret(), str(uuid.uuid4())
        sealed = seal_totp(services.factor_sealer, factor_id, secret)
        step = now // STEP_SECONDS - 10  # enrolled a while ago
        assert await services.second_factors.add_totp(factor_id, user.id, sealed, step, now)
        secrets[user.username] = secret
    await engine.dispose()
    return secrets


def path_of(location: str) -> str:
    """The server's own redirects name the issuer's host; the bench talks to its port."""
    return location.removeprefix(ISSUER)


async def walk(url: str, username: str, secret: str) -> tuple[float, float, float]:
    """One browser's sign-in: (the whole walk, POST /login, POST /login/factor), seconds."""
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=30) as http:
        start = time.perf_counter()
        asked = await http.get("/authorize", params=Flow.new(WEB).params)
        page = await http.get(path_of(asked.headers["location"]))
        form = {"csrf_token": csrf_token(page.text), "username": username, "password": PASSWORD}
        posted = time.perf_counter()
        answered = await http.post(form_action(page.text), data=form)
        password_done = time.perf_counter()
        assert answered.status_code == 303, answered.text
        page = await http.get(path_of(answered.headers["location"]))
        form = {"csrf_token": csrf_token(page.text), "code": pyotp.TOTP(secret).now()}
        coded = time.perf_counter()
        done = await http.post(form_action(page.text), data=form)
        end = time.perf_counter()
        assert done.status_code == 303, done.text
        assert done.headers["location"].startswith(CALLBACK + "?"), done.headers["location"]
        return end - start, password_done - posted, end - coded


def percentiles(name: str, values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    p50, p90, p99 = cuts[49], cuts[89], cuts[98]
    return (
        f"{name:<24} p50 {p50 * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="an empty Postgres database's URL")
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keys_dir, logs = Path(tmp) / "keys", Path(tmp)
        secrets = await seed(args.database, keys_dir, args.users)
        overrides = {**PRODUCTION_ARGON2, "COOKIE_SECURE": "false"}
        async with serving(1, args.database, keys_dir, logs, overrides) as [instance]:
            waiting = list(secrets.items())
            results: list[tuple[float, float, float]] = []
            deadline = time.perf_counter() + args.seconds
            began = time.perf_counter()

            async def browser() -> None:
                while waiting and time.perf_counter() < deadline:
                    username, secret = waiting.pop()
                    results.append(await walk(instance.url, username, secret))

            await asyncio.gather(*(browser() for _ in range(args.concurrency)))
            elapsed = time.perf_counter() - began
    print(f"command: python bench/mfa_sign_in.py --users {args.users} "
          f"--concurrency {args.concurrency} --seconds {args.seconds:g}")  # fmt: skip
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}; load average at the end: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(f"{len(results)} sign-ins in {elapsed:.1f} s: {len(results) / elapsed:.1f}/s")
    print(percentiles("whole walk (5 requests)", [r[0] for r in results]))
    print(percentiles("POST /login (password)", [r[1] for r in results]))
    print(percentiles("POST /login/factor", [r[2] for r in results]))


if __name__ == "__main__":
    asyncio.run(main())
