"""What DPoP costs (issue 26): the same grants with and without a proof, in one run, and the
verifier kit's proof check against a bare signature verify.

    createdb -h 127.0.0.1 -U postgres authserver_dpopbench
    .venv/bin/python bench/dpop_bench.py \\
        --database postgresql+asyncpg://postgres@127.0.0.1:5432/authserver_dpopbench \\
        [--seconds 5] [--rounds 2] [--concurrency 8] [--checks 3000] [--check-rounds 7]

Part 1, HTTP: one real `authserver serve` (tests/races/_instances.py, settings from the
environment, nonces off as by default) on the (empty, migrated here) Postgres database, driven
from this machine by `--concurrency` httpx connections. Bearer and DPoP take turns, `--rounds`
times, `--seconds` each:

- client_credentials: POST /token of a confidential client; with DPoP each request carries a
  new proof, so the server checks it and records its `jti` (one INSERT, shared by instances);
- refresh: POST /token, grant_type=refresh_token, of a public client: each connection keeps a
  chain, spending its token and presenting the successor; the DPoP chains were started with a
  proof, so their tokens are bound and rotate only with a proof of the same key.

The proofs (ES256, PyJWT) are made before each DPoP turn, outside its clock, so the client's
signing does not take the shared cores from the server; a pool that runs dry is topped up inline
and counted. Requests/s count 200s; anything else is an error and printed.

With each rate, the CPU time (utime + stime, /proc/PID/stat) the turn cost the server's
process and the database's Postgres backends, per 200: on a shared machine this holds up far
better than the rate. `--grants refresh` runs the refresh turns only.

Part 2, in process, one thread: `authserver_verify.dpop.check_proof` on `--checks` distinct
proofs (with the ReplayCache a service keeps), per second, for ES256 and EdDSA, next to its
ceiling: a bare signature verify of the same alg with the key already parsed (cryptography).
Best of `--check-rounds` (the two take turns in each).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
from cpu_budget import TICK, cpu_ticks  # bench/ is on sys.path: this file runs as a script
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from sqlalchemy.ext.asyncio import create_async_engine

import authserver
from authserver.app import build_services
from authserver.config import load_settings
from authserver.db import migrate
from authserver_verify import dpop
from tests.conftest import ISSUER, Registry
from tests.races._instances import instance_env, serving

TOKEN_URL = ISSUER + "/token"
PASSWORD = "correct horse"


class Key:
    """A client's DPoP key and its proofs."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        if alg == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
            self.jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
            self.jwk = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)

    def proof(self, url: str = TOKEN_URL, method: str = "POST") -> str:
        claims = {"jti": uuid.uuid4().hex, "htm": method, "htu": url, "iat": int(time.time())}
        headers = {"typ": "dpop+jwt", "jwk": self.jwk}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)


async def seed(database: str, keys_dir: Path) -> str:
    """Migrates; one user, a confidential client (client_credentials) and a public one
    (password and refresh_token, body delivery). Returns the confidential client's secret."""
    engine = create_async_engine(database)
    await migrate.upgrade(engine)
    services = build_services(load_settings(instance_env(database, keys_dir, {})), engine)
    await services.keys.start()
    registry = Registry(services)
    await registry.user("alice", PASSWORD)
    secret = await registry.client("svc", scopes=("profile",))
    await registry.client("app", public=True, grant_types=("password", "refresh_token"))
    await engine.dispose()
    assert secret is not None
    return secret


def server_pids(url: str) -> list[int]:
    """The `authserver serve --port N` process serving `url`, and its children."""
    port = url.rsplit(":", 1)[1].encode()
    found: list[int] = []
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rpartition(")")[2].split()[1]
            )
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if b"serve" in args and b"--port" in args and port in args:
            found.append(int(entry.name))
    found += [pid for pid, parent in parents.items() if parent in found]
    return found


async def backend_ticks(database: str) -> dict[int, int]:
    """CPU ticks of every Postgres backend connected to `database` (the server's pool)."""
    import asyncpg

    conn = await asyncpg.connect(database.replace("postgresql+asyncpg", "postgresql"))
    try:
        name = database.rsplit("/", 1)[1]
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
    return {row["pid"]: cpu_ticks(row["pid"]) for row in rows}


class Turn:
    """One timed turn: `concurrency` connections sending `request` until the clock runs out."""

    def __init__(self) -> None:
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []

    async def run(self, request: Callable[[int], Any], concurrency: int, seconds: float) -> float:
        deadline = time.perf_counter() + seconds
        began = time.perf_counter()

        async def connection(n: int) -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                answer = await request(n)
                self.latencies.append(time.perf_counter() - start)
                if answer.status_code == 200:
                    self.ok += 1
                else:
                    key = f"{answer.status_code} {answer.text[:80]}"
                    self.errors[key] = self.errors.get(key, 0) + 1

        await asyncio.gather(*(connection(n) for n in range(concurrency)))
        return self.ok / (time.perf_counter() - began)

    def line(self, name: str, rate: float) -> str:
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        errors = sum(self.errors.values())
        return (
            f"{name:<34} {rate:>7,.0f} /s   p50 {cuts[49] * 1000:6.1f} ms"
            f"   p99 {cuts[98] * 1000:6.1f} ms   errors {errors}"
        )


class Proofs:
    """Proofs made ahead of a DPoP turn, one key per connection (a chain's key for refresh)."""

    def __init__(self, keys: list[Key], per_key: int) -> None:
        self.keys = keys
        self.pools = [[key.proof() for _ in range(per_key)] for key in keys]
        self.inline = 0

    def take(self, n: int) -> str:
        if self.pools[n]:
            return self.pools[n].pop()
        self.inline += 1
        return self.keys[n].proof()


async def http_part(args: argparse.Namespace, url: str, secret: str) -> None:
    pids = server_pids(url)
    assert pids, f"no server process found for {url}"
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=30, limits=limits) as http:
        cc_form = {"grant_type": "client_credentials", "client_id": "svc", "client_secret": secret}
        keys = [Key() for _ in range(args.concurrency)]

        async def chains(bound: bool) -> list[str]:
            """A refresh token per connection, from a password grant (bound: with a proof)."""
            tokens = []
            for n in range(args.concurrency):
                form = {"grant_type": "password", "client_id": "app", "username": "alice"}
                headers = {"DPoP": keys[n].proof()} if bound else {}
                answer = await http.post(
                    "/token", data={**form, "password": PASSWORD}, headers=headers
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["token_type"] == ("DPoP" if bound else "Bearer")
                tokens.append(answer.json()["refresh_token"])
            return tokens

        bearer_chains, dpop_chains = await chains(False), await chains(True)
        expected = {"client_credentials": 1500.0, "refresh": 1000.0}  # /s, until measured

        async def turn(grant: str, bound: bool) -> None:
            proofs = None
            if bound:  # ahead of the clock: 1.5x the rate seen without, per connection
                per_key = int(expected[grant] * args.seconds * 1.5 / args.concurrency) + 10
                proofs = Proofs(keys, per_key)
            chain = dpop_chains if bound else bearer_chains

            async def request(n: int) -> httpx.Response:
                headers = {"DPoP": proofs.take(n)} if proofs is not None else {}
                if grant == "client_credentials":
                    return await http.post("/token", data=cc_form, headers=headers)
                form = {"grant_type": "refresh_token", "client_id": "app"}
                answer = await http.post(
                    "/token", data={**form, "refresh_token": chain[n]}, headers=headers
                )
                if answer.status_code == 200:
                    chain[n] = answer.json()["refresh_token"]
                return answer

            timed = Turn()
            server_before = sum(cpu_ticks(pid) for pid in pids)
            pg_before = await backend_ticks(args.database)
            rate = await timed.run(request, args.concurrency, args.seconds)
            server = sum(cpu_ticks(pid) for pid in pids) - server_before
            pg_after = await backend_ticks(args.database)
            pg = sum(ticks - pg_before.get(pid, 0) for pid, ticks in pg_after.items())
            per = 1e6 / TICK / max(timed.ok, 1)
            if not bound:
                expected[grant] = max(rate, 1.0)
            name = f"{grant} {'DPoP' if bound else 'Bearer'}"
            inline = f"   (proofs made inline: {proofs.inline})" if proofs and proofs.inline else ""
            cpu = f"   CPU/req server {server * per:5.0f} µs  postgres {pg * per:5.0f} µs"
            load = "   load " + " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(timed.line(name, rate) + cpu + load + inline, flush=True)
            for error, count in timed.errors.items():
                print(f"    {count} x {error}")

        for _ in range(args.rounds):
            for grant in args.grants.split(","):
                await turn(grant, False)
                await turn(grant, True)


def check_rates(alg: str, checks: int, rounds: int) -> tuple[float, float]:
    """(the kit's check_proof per second, a bare verify of the same signatures per second)."""
    key = Key(alg)
    proofs = [key.proof() for _ in range(checks)]
    public = key.private.public_key()
    bare: list[tuple[bytes, bytes]] = []
    for proof in proofs:
        head, payload, signature = proof.split(".")
        raw = jwt.utils.base64url_decode(signature)
        if alg == "ES256":
            raw = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
        bare.append((f"{head}.{payload}".encode(), raw))

    def kit() -> None:
        replays = dpop.ReplayCache()
        for proof in proofs:
            checked = dpop.check_proof(proof, method="POST", url=TOKEN_URL, algs={alg})
            assert replays.first_use(checked.replay_key, checked.expires_at)

    def ceiling() -> None:
        for signing_input, signature in bare:
            if alg == "ES256":
                public.verify(signature, signing_input, ec.ECDSA(hashes.SHA256()))
            else:
                public.verify(signature, signing_input)

    best = {"kit": 0.0, "bare": 0.0}
    for _ in range(rounds):
        for name, run in (("kit", kit), ("bare", ceiling)):
            start = time.perf_counter()
            run()
            best[name] = max(best[name], len(proofs) / (time.perf_counter() - start))
    return best["kit"], best["bare"]


def check_part(args: argparse.Namespace) -> None:
    """The kit's check_proof per second against a bare verify of the same signatures."""
    for alg in ("ES256", "EdDSA"):
        kit, bare = check_rates(alg, args.checks, args.check_rounds)
        print(
            f"{alg:<6} check_proof + ReplayCache {kit:>8,.0f} /s   bare verify "
            f"{bare:>8,.0f} /s   kit/bare {kit / bare:.2f}",
            flush=True,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="an empty Postgres database's URL")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--checks", type=int, default=3000)
    parser.add_argument("--check-rounds", type=int, default=7)
    parser.add_argument("--grants", default="client_credentials,refresh")
    parser.add_argument("--no-checks", action="store_true", help="skip part 2")
    args = parser.parse_args()
    if args.seconds > 45:
        parser.error("--seconds at most 45: a proof made ahead must still be in the 60 s window")
    print(
        f"command: python bench/dpop_bench.py --seconds {args.seconds:g} --rounds {args.rounds} "
        f"--concurrency {args.concurrency} --checks {args.checks} --grants {args.grants}"
        + (" --no-checks" if args.no_checks else "")
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}; load average at the start: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        flush=True,
    )
    print(f"code: {Path(authserver.__file__).parent}", flush=True)
    if not args.no_checks:
        check_part(args)
    with tempfile.TemporaryDirectory() as tmp:
        keys_dir, logs = Path(tmp) / "keys", Path(tmp)
        secret = await seed(args.database, keys_dir)
        async with serving(1, args.database, keys_dir, logs) as [instance]:
            await http_part(args, instance.url, secret)
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    asyncio.run(main())
